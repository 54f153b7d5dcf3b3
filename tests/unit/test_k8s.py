"""deploy/k8s: the kustomize manifests agree with the code, as docker-compose.yml does
(test_compose.py): every TOLLGATE_ variable is one Settings reads and parses, every command is
a `tollgate` command, ports and probe paths are those the processes serve, the worker keeps
its state on a persistent volume at the run folder."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import yaml

from pipeline.cli import main as tollgate
from pipeline.kernel.health import LIVENESS_PATH, READINESS_PATH
from pipeline.kernel.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
WORKLOADS = ("Deployment", "StatefulSet")

# The worker's HTTP API port (issue 14: TOLLGATE_API_PORT, default 8000).
API_PORT_DEFAULT = 8000


def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return loaded


def resources() -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for name in kustomization()["resources"]:
        documents += [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]
    return documents


def of_kind(*kinds: str) -> list[dict[str, Any]]:
    return [doc for doc in resources() if doc["kind"] in kinds]


def named(kind: str, name: str) -> dict[str, Any]:
    (found,) = [doc for doc in of_kind(kind) if doc["metadata"]["name"] == name]
    return found


def containers(workload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def configured() -> dict[str, str]:
    """The variables the containers get: the ConfigMap and the Secrets (database, API keys)."""
    (config,) = of_kind("ConfigMap")
    secrets = [secret["stringData"] for secret in of_kind("Secret")]
    return {**config["data"], **{k: v for data in secrets for k, v in data.items()}}


def settings() -> Settings:
    return Settings.from_env(configured())


def resolve(args: list[str]) -> click.Command | None:
    """The `tollgate` command `args` runs, its options parsed; None when it does not exist."""
    command: click.Command = tollgate
    rest = list(args)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest.pop(0))
        if sub is None:
            return None
        command = sub
    command.make_context(command.name or "tollgate", rest)  # raises on a bad option
    return command


def test_every_file_is_a_resource_of_the_kustomization() -> None:
    listed = set(kustomization()["resources"])
    present = {path.name for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml"}
    assert listed == present


def test_one_configmap_of_known_variables_that_settings_accepts() -> None:
    (config,) = of_kind("ConfigMap")
    known = set(Settings.variables())
    assert set(configured()) <= known, set(configured()) - known
    assert all(key.startswith("TOLLGATE_") for key in config["data"])
    parsed = settings()  # raises SettingsError naming a bad value
    assert parsed.metrics_host == "0.0.0.0"  # probes and Prometheus reach the pods
    assert parsed.worker_store == "rocksdb://"


def test_every_container_takes_the_configuration_and_runs_a_tollgate_command() -> None:
    (config,) = of_kind("ConfigMap")
    known = set(Settings.variables())
    seen: set[tuple[str, ...]] = set()
    for workload in of_kind(*WORKLOADS):
        for container in containers(workload):
            sources = container.get("envFrom", [])
            assert {"configMapRef": {"name": config["metadata"]["name"]}} in sources
            for source in sources:
                ref = source.get("configMapRef") or source.get("secretRef")
                assert ref["name"] in {
                    doc["metadata"]["name"] for doc in of_kind("ConfigMap", "Secret")
                }
            # POD_IP: the pod's address, only to build TOLLGATE_API_URL from
            assert {item["name"] for item in container.get("env", [])} <= known | {"POD_IP"}
            assert container["image"] == kustomization()["images"][0]["name"]
            program, *args = container["command"]
            assert program == "tollgate"
            assert resolve(args) is not None, f"`tollgate {' '.join(args)}` does not exist"
            seen.add(tuple(args))
    assert {("worker",), ("intake",), ("sink", "invoices"), ("sink", "webhooks")} <= seen
    assert ("db", "migrate") in seen


def test_metrics_ports_probes_and_scrape_annotations_match_the_processes() -> None:
    port = settings().metrics_port
    for workload in of_kind(*WORKLOADS):
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(port)
        (main,) = workload["spec"]["template"]["spec"]["containers"]
        ports = {item["name"]: item["containerPort"] for item in main["ports"]}
        assert ports["metrics"] == port
        assert main["livenessProbe"]["httpGet"] == {"path": LIVENESS_PATH, "port": "metrics"}
        assert main["readinessProbe"]["httpGet"] == {"path": READINESS_PATH, "port": "metrics"}
        for container in containers(workload):
            requests = container["resources"]["requests"]
            assert requests["cpu"] and requests["memory"], container["name"]


def test_the_workers_keep_their_state_on_a_persistent_volume() -> None:
    (worker,) = [w for w in of_kind(*WORKLOADS) if w["metadata"]["name"] == "tollgate-worker"]
    assert worker["kind"] == "StatefulSet"
    (claim,) = worker["spec"]["volumeClaimTemplates"]
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == str(settings().run_dir)
    assert worker["spec"]["template"]["spec"]["securityContext"]["fsGroup"]


def test_services_and_budgets_select_pods_and_ports_that_exist() -> None:
    pods = [
        (w["spec"]["template"]["metadata"]["labels"], list(containers(w)))
        for w in of_kind(*WORKLOADS)
    ]

    def selected(selector: dict[str, str]) -> list[list[dict[str, Any]]]:
        return [c for labels, c in pods if selector.items() <= labels.items()]

    for service in of_kind("Service"):
        chosen = selected(service["spec"]["selector"])
        assert chosen, service["metadata"]["name"]
        names = {p["name"] for group in chosen for c in group for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in names, (service["metadata"]["name"], port)
    budgets = of_kind("PodDisruptionBudget")
    for budget in budgets:
        assert selected(budget["spec"]["selector"]["matchLabels"]), budget["metadata"]["name"]
    assert any(
        b["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/component": "worker"}
        for b in budgets
    )


def test_the_api_service_reaches_the_workers_api_port() -> None:
    api = named("Service", "tollgate-api")
    assert api["spec"]["selector"] == {"app.kubernetes.io/component": "worker"}
    (worker,) = named("StatefulSet", "tollgate-worker")["spec"]["template"]["spec"]["containers"]
    ports = {item["name"]: item["containerPort"] for item in worker["ports"]}
    expected = getattr(settings(), "api_port", API_PORT_DEFAULT)
    assert ports["api"] == expected


def test_the_image_user_owns_the_state_volume() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    uid = re.search(r"useradd [^\n]*--uid (\d+)", dockerfile)
    assert uid is not None
    for workload in of_kind(*WORKLOADS):
        context = workload["spec"]["template"]["spec"]["securityContext"]
        assert context["runAsUser"] == int(uid[1]) and context["runAsNonRoot"]


def test_the_cluster_scrape_jobs_find_every_component() -> None:
    config = yaml.safe_load((K8S / "prometheus-scrape.yml").read_text())
    components = {
        w["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        for w in of_kind(*WORKLOADS)
    }
    found: set[str] = set()
    for job in config["scrape_configs"]:
        assert job["job_name"].startswith("tollgate-")  # what the rules and the dashboard select
        keep = job["relabel_configs"][0]
        assert keep["source_labels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_component"]
        found |= {c for c in components if re.fullmatch(keep["regex"], c)}
    assert found == components


def test_workers_advertise_their_pod_address_and_share_the_api_keys() -> None:
    (worker,) = named("StatefulSet", "tollgate-worker")["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item for item in worker.get("env", [])}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["TOLLGATE_API_URL"]["value"] == "http://$(POD_IP):8000"
    sources = {ref.get("secretRef", {}).get("name") for ref in worker["envFrom"]}
    assert "tollgate-api-keys" in sources
    assert "TOLLGATE_API_KEYS" in named("Secret", "tollgate-api-keys")["stringData"]
