"""Settings.from_env: defaults, parsing, one clear error for bad values, docs in step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.kernel.settings import Settings, SettingsError
from pipeline.local.settings import StackSettings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_without_any_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # relative folders come from the checkout, from anywhere
    settings = StackSettings.from_env({})
    assert settings.kafka_bootstrap == "127.0.0.1:19092"
    assert (settings.kafka_host, settings.kafka_port) == ("127.0.0.1", 19092)
    assert settings.kafka_controller_port == 19093
    assert settings.database_url == "postgresql://tollgate:tollgate@127.0.0.1:5432/tollgate"
    assert settings.partitions == 4
    assert settings.topic_prefix == "tollgate."
    assert settings.run_dir == ROOT / ".run"
    assert settings.state_dir == ROOT / ".run" / "state"
    assert settings.log_dir == ROOT / ".run" / "logs"


def test_values_are_parsed() -> None:
    settings = StackSettings.from_env(
        {
            "TOLLGATE_KAFKA_BOOTSTRAP": " 127.0.0.1:29092, other:9092 ",
            "TOLLGATE_KAFKA_CONTROLLER_PORT": "29093",
            "TOLLGATE_PARTITIONS": "8",
            "TOLLGATE_TOPIC_PREFIX": "t1-",
            "TOLLGATE_RUN_DIR": "/tmp/elsewhere",
            "TOLLGATE_CACHE_DIR": "relative/cache",
            "TOLLGATE_STARTUP_TIMEOUT": "2.5",
            "TOLLGATE_DATABASE_URL": "postgres://u:p@db:5433/x",
            "TOLLGATE_KAFKA_HEAP": "512m",
            "UNRELATED": "ignored",
        }
    )
    assert settings.kafka_bootstrap == "127.0.0.1:29092,other:9092"
    assert settings.kafka_port == 29092
    assert settings.kafka_controller_port == 29093
    assert settings.partitions == 8
    assert settings.topic_prefix == "t1-"
    assert settings.run_dir == Path("/tmp/elsewhere")
    assert settings.cache_dir == ROOT / "relative" / "cache"
    assert settings.startup_timeout == 2.5
    assert settings.database_url == "postgres://u:p@db:5433/x"
    assert settings.kafka_heap == "512m"


def test_empty_variables_keep_the_default() -> None:
    assert Settings.from_env({"TOLLGATE_PARTITIONS": ""}).partitions == 4


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("TOLLGATE_PARTITIONS", "four", "expected an integer"),
        ("TOLLGATE_PARTITIONS", "0", "from 1 to 1000"),
        ("TOLLGATE_KAFKA_CONTROLLER_PORT", "70000", "TCP port"),
        ("TOLLGATE_KAFKA_BOOTSTRAP", "localhost", "host:port"),
        ("TOLLGATE_KAFKA_BOOTSTRAP", "a:1,,b:2", "host:port"),
        ("TOLLGATE_DATABASE_URL", "mysql://x", "postgresql://"),
        ("TOLLGATE_TOPIC_PREFIX", "bad prefix/", "characters"),
        ("TOLLGATE_KAFKA_VERSION", "latest", "version"),
        ("TOLLGATE_STARTUP_TIMEOUT", "-1", "seconds"),
        ("TOLLGATE_KAFKA_HEAP", "lots", "heap"),
    ],
)
def test_bad_values_are_rejected_with_a_clear_message(name: str, value: str, expected: str) -> None:
    with pytest.raises(SettingsError) as caught:
        StackSettings.from_env({name: value})
    message = str(caught.value)
    assert name in message and repr(value) in message and expected in message
    assert "\n" not in message


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingsError, match=r"TOLLGATE_PARTITIONS.*TOLLGATE_METRICS_PORT"):
        Settings.from_env({"TOLLGATE_METRICS_PORT": "y", "TOLLGATE_PARTITIONS": "x"})


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})
    with pytest.raises(AttributeError):
        settings.partitions = 2  # type: ignore[misc]


def test_every_variable_is_documented() -> None:
    table = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `(TOLLGATE_[A-Z_]+)` \|", table, flags=re.MULTILINE))
    assert documented == set(StackSettings.variables())


def test_pom_pins_the_default_kafka_version() -> None:
    pom = (ROOT / "deploy" / "kafka" / "pom.xml").read_text()
    assert f"<kafka.version>{StackSettings().kafka_version}</kafka.version>" in pom


def test_the_local_stack_knobs_are_not_deployment_settings() -> None:
    local = set(StackSettings.variables()) - set(Settings.variables())
    assert local == {
        "TOLLGATE_KAFKA_CONTROLLER_PORT",
        "TOLLGATE_KAFKA_VERSION",
        "TOLLGATE_KAFKA_HEAP",
        "TOLLGATE_CACHE_DIR",
        "TOLLGATE_STARTUP_TIMEOUT",
    }
    Settings.from_env({"TOLLGATE_KAFKA_HEAP": "lots"})  # a deployment never reads them
