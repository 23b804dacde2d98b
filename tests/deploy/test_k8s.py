"""deploy/k8s: every manifest validates against the Kubernetes schemas (offline, strict), and speaks this checkout.

The commands in the manifests are parsed by the real CLI with the ConfigMap and Secret as their environment, as
a pod would run them; the probes name routes the API has; the autoscaler follows a metric the workers export,
never beyond the frame topic's partitions; deploy/compose runs the same roles the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ingest.events import FRAMES_TOPIC
from ingest.kafkabus import KafkaBus
from ltgcast.cli import build_parser
from ltgcast.ingestion import IngestSettings
from ltgcast.service import ServiceSettings
from monitor.metrics import CONSUMER_LAG
from serve.api.grids import PATHS

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "deploy" / "compose" / "docker-compose.yml"
VERSIONS = ("1.29.0", "1.37.0")  # the oldest Kubernetes these manifests claim, and the newest schemas shipped


def documents() -> list[tuple[str, dict[str, Any]]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    out = []
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((K8S / name).read_text(encoding="utf-8")):
            if doc:
                out.append((name, doc))
    return out


def find(kind: str, name: str) -> dict[str, Any]:
    return next(doc for _, doc in documents() if doc["kind"] == kind and doc["metadata"]["name"] == name)


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))["resources"]
    present = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == present


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(version: str) -> None:
    kinds = []
    for name, doc in documents():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {doc['kind']} {doc['metadata']['name']} is not valid Kubernetes {version}: {exc}")
        kinds.append(doc["kind"])
    assert {"Deployment", "Service", "ConfigMap", "Secret", "PersistentVolumeClaim", "HorizontalPodAutoscaler",
            "PodDisruptionBudget", "Namespace"} <= set(kinds)  # fmt: skip


def test_a_broken_manifest_is_refused() -> None:
    worker = find("Deployment", "ltgcast-worker")
    broken = {**worker, "spec": {**worker["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def environment() -> dict[str, str]:
    config = find("ConfigMap", "ltgcast-config")["data"]
    secret = find("Secret", "ltgcast-admin")["stringData"]
    return {**config, **secret}


def container(deployment: str) -> dict[str, Any]:
    (only,) = find("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return only


def mounts(deployment: str) -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in container(deployment).get("volumeMounts", [])}


def test_the_worker_runs_as_a_distributed_worker_on_tf_serving_with_probes_the_api_answers() -> None:
    worker = container("ltgcast-worker")
    args = build_parser(environment()).parse_args(worker["args"])
    settings = ServiceSettings.from_args(args)
    assert (settings.source, settings.scorer.backend, settings.watch) == ("none", "tfserving", False)
    assert settings.bus.startswith("kafka://")
    assert settings.http == ("0.0.0.0", worker["ports"][0]["containerPort"])
    service = find("Service", "ltgcast-tfserving")
    assert settings.scorer.tfserving.target == f"{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    redis = find("Service", "ltgcast-redis")
    assert settings.redis.startswith(f"redis://{redis['metadata']['name']}:{redis['spec']['ports'][0]['port']}/")
    assert str(settings.store).startswith("/var/lib/ltgcast/")
    assert mounts("ltgcast-worker")["/var/lib/ltgcast"] == "shared"
    assert mounts("ltgcast-worker")[str(settings.model_base)] == "models"
    assert settings.api.admin_token  # from the Secret
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert worker[probe]["httpGet"]["path"] in PATHS, probe
    assert worker["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for field in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(worker["resources"][field])


def test_one_ingest_daemon_writes_where_the_workers_read() -> None:
    deployment = find("Deployment", "ltgcast-ingest")
    assert (deployment["spec"]["replicas"], deployment["spec"]["strategy"]["type"]) == (1, "Recreate")
    args = build_parser(environment()).parse_args(container("ltgcast-ingest")["args"])
    settings = IngestSettings.from_args(args)
    assert (settings.source, settings.bus) == ("s3://noaa-goes19", environment()["LTGCAST_BUS"])
    assert str(settings.cache).startswith("/var/lib/ltgcast/")  # the frame events' URIs point here
    assert mounts("ltgcast-ingest")["/var/lib/ltgcast"] == mounts("ltgcast-worker")["/var/lib/ltgcast"] == "shared"
    shared = find("PersistentVolumeClaim", "ltgcast-shared")
    assert shared["spec"]["accessModes"] == ["ReadWriteMany"]


def test_tf_serving_is_on_a_gpu_and_reads_the_repository_as_ltgcast_writes_it() -> None:
    tfserving = container("ltgcast-tfserving")
    assert tfserving["image"].endswith("-gpu")
    assert tfserving["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "--model_config_file=/models/models.config" in tfserving["args"]
    assert next(m for m in tfserving["volumeMounts"] if m["mountPath"] == "/models")["name"] == "models"
    config = (ROOT / "models" / "repository" / "models.config").read_text(encoding="utf-8")
    assert "/models/lightning" in config


def test_the_autoscaler_follows_the_lag_the_workers_export_within_the_partitions() -> None:
    hpa = find("HorizontalPodAutoscaler", "ltgcast-worker")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "ltgcast-worker"
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] <= KafkaBus("x:1").partitions
    metric = hpa["spec"]["metrics"][0]["external"]["metric"]["name"]
    rules = yaml.safe_load(find("ConfigMap", "ltgcast-prometheus-adapter-rules")["data"]["config.yaml"])
    (rule,) = rules["externalRules"]
    assert rule["name"]["as"] == metric
    exported = CONSUMER_LAG._name  # noqa: SLF001 - the name prometheus-client exports
    assert exported in rule["metricsQuery"]
    assert f'topic="{FRAMES_TOPIC}"' in rule["metricsQuery"]


def test_compose_runs_the_same_roles_the_same_way() -> None:
    services = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    compose_worker = ServiceSettings.from_args(build_parser({}).parse_args(services["worker"]["command"]))
    k8s_args = build_parser(environment()).parse_args(container("ltgcast-worker")["args"])
    k8s_worker = ServiceSettings.from_args(k8s_args)
    for field in ("source", "watch", "worker"):  # the worker's settings: sectors, GLM deadline, age limit, ...
        assert getattr(compose_worker, field) == getattr(k8s_worker, field), field
    assert compose_worker.scorer.backend == k8s_worker.scorer.backend
    assert services["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"] == KafkaBus("x:1").partitions
    assert services["worker"]["deploy"]["replicas"] == find("Deployment", "ltgcast-worker")["spec"]["replicas"]
