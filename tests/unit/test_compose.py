"""docker-compose.yml: valid YAML, and every TOLLGATE_ variable is one that Settings reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.kernel.settings import Settings
from pipeline.local.settings import StackSettings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): str(value) for key, value in env.items()}


def _anchored_environment(compose: dict[str, Any]) -> dict[str, str]:
    shared = compose.get("x-tollgate-environment") or {}
    return {str(key): str(value) for key, value in shared.items()}


def test_every_tollgate_variable_is_known_to_settings() -> None:
    compose = _compose()
    known = set(Settings.variables())
    seen: set[str] = set()
    for name, service in compose["services"].items():
        used = {key for key in _environment(service) if key.startswith("TOLLGATE_")}
        unknown = used - known
        assert not unknown, f"service {name} sets unknown variables {sorted(unknown)}"
        seen |= used
    seen |= {key for key in _anchored_environment(compose) if key.startswith("TOLLGATE_")}
    assert seen <= known
    assert {"TOLLGATE_KAFKA_BOOTSTRAP", "TOLLGATE_DATABASE_URL"} <= seen


def test_pipeline_services_run_tollgate_commands() -> None:
    services = _compose()["services"]
    commands = {name: service.get("command") for name, service in services.items()}
    assert ["tollgate", "intake"] in commands.values()
    assert ["tollgate", "worker"] in commands.values()
    assert ["tollgate", "sink", "invoices"] in commands.values()
    assert ["tollgate", "sink", "webhooks"] in commands.values()


def test_kafka_image_matches_the_local_stack_version() -> None:
    services = _compose()["services"]
    assert services["kafka"]["image"] == f"apache/kafka:{StackSettings().kafka_version}"
    assert services["postgres"]["image"].startswith("postgres:15")


def test_prometheus_config_is_valid_yaml() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    assert targets


def test_metrics_and_health_are_reachable_from_other_containers() -> None:
    shared = _anchored_environment(_compose())
    assert Settings.from_env(shared).metrics_host == "0.0.0.0"
