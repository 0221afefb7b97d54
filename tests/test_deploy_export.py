"""Kubernetes, KServe and Grafana exports: checked against the Kubernetes API's own models, sized from the trial,
and every dashboard query names a metric that is really exported."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client
from kubernetes.utils.quantity import parse_quantity

from autotune.daemon import _Metrics
from autotune.fingerprint import fingerprint, host_info
from autotune.grafana import CONTAINER_METRICS
from autotune.k8s import MEMORY_HEADROOM
from autotune.servers.local.flags import parse_flags
from autotune.servers.scrape import METRICS_PATH
from autotune.states import JobState
from autotune.store import Store
from autotune.traffic.payload import build_payload
from tests.conftest import autotune
from tests.stored_jobs import add_job, add_trial

CONFIG = {"enable_batching": True, "max_batch_size": 8, "num_batch_threads": 2, "cpus": 1.5}
METRICS = {"cpu_cores": 1.42, "cpus_allocated": 1.5, "rss_mb": 530.0, "load_time_s": 2.4, "stable": True}
# KServe's predictor is a PodSpec inlined with its component extension fields (serving.kserve.io/v1beta1).
KSERVE_COMPONENT_FIELDS = {"minReplicas", "maxReplicas", "scaleTarget", "scaleMetric", "containerConcurrency"}


def _check(data: Any, kind: str, where: str) -> None:
    """DATA must fit the Kubernetes API type KIND exactly: no unknown field, every field of the right type."""
    if kind.startswith("List["):
        assert isinstance(data, list), f"{where}: expected a list"
        for i, item in enumerate(data):
            _check(item, kind[5:-1], f"{where}[{i}]")
    elif kind.startswith("Dict["):
        assert isinstance(data, dict), f"{where}: expected a map"
        value_kind = kind[5:-1].split(", ", 1)[1]
        for key, item in data.items():
            _check(item, value_kind, f"{where}.{key}")
    elif kind in ("str", "int", "bool", "float", "object"):
        expected = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}[kind]
        assert isinstance(data, expected), f"{where}: expected {kind}, got {data!r}"
    else:
        model = getattr(client, kind)
        by_json = {json_name: attr for attr, json_name in model.attribute_map.items()}
        unknown = set(data) - set(by_json)
        assert not unknown, f"{where}: {kind} has no field {sorted(unknown)}"
        for key, value in data.items():
            _check(value, model.openapi_types[by_json[key]], f"{where}.{key}")


def validate(doc: dict[str, Any], kind: str) -> None:
    """Strict field check, then the client's own required-field validation on deserializing."""
    _check(doc, kind, kind)
    client.ApiClient()._ApiClient__deserialize(doc, kind)  # raises ValueError on a missing required field


def _export(db: str, tmp_path, fmt: str, tiny_model) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    store = Store(db)
    job = add_job(store, store.model(tiny_model), fingerprint(host_info()), JobState.running)
    add_trial(store, job, 0, rps=40.0, p99=20.0, config=CONFIG, metrics=METRICS)
    store.finish_job(job, JobState.done)
    out = tmp_path / fmt
    done = autotune("export", "--model", "tiny", "--format", fmt, "--out", str(out), "--json", db=db)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert f"{fmt}.yaml" in doc["files"] and "grafana-dashboard.json" in doc["files"]
    return doc, list(yaml.safe_load_all((out / f"{fmt}.yaml").read_text()))


@pytest.fixture
def db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'deploy.db'}"


def _sized_like_the_trial(container: dict[str, Any]) -> None:
    resources = container["resources"]
    assert parse_quantity(resources["requests"]["cpu"]) == parse_quantity(resources["limits"]["cpu"]) == 1.5
    memory = parse_quantity(resources["limits"]["memory"]) / 2**20
    assert memory == parse_quantity(resources["requests"]["memory"]) / 2**20
    assert METRICS["rss_mb"] * MEMORY_HEADROOM <= memory < METRICS["rss_mb"] * MEMORY_HEADROOM + 16
    flags = parse_flags(container["args"])  # every arg is a tensorflow_model_server flag
    # Under a CPU limit TF would see the node's every core: its pools are sized as they were measured.
    assert flags.tensorflow_intra_op_parallelism == flags.tensorflow_inter_op_parallelism == math.ceil(1.5)
    assert flags.enable_batching and flags.monitoring_config_file == "/config/monitoring.config"


def test_k8s_export_is_a_valid_configmap_deployment_and_service_sized_from_the_trial(db, tmp_path, tiny_model):
    doc, manifests = _export(db, tmp_path, "k8s", tiny_model)
    assert doc["config"]["cpus"] == 1.5  # autotune.json keeps the allowance the manifests encode
    kinds = [m["kind"] for m in manifests]
    assert kinds == ["ConfigMap", "Deployment", "Service"]
    configmap, deploy, svc = manifests
    validate(configmap, "V1ConfigMap")
    validate(deploy, "V1Deployment")
    validate(svc, "V1Service")
    assert set(configmap["data"]) == {"batching_parameters.txt", "models.config", "monitoring.config"}
    pod = deploy["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == METRICS_PATH
    (container,) = pod["spec"]["containers"]
    _sized_like_the_trial(container)
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/models/tiny"
    mounted = {v["name"] for v in pod["spec"]["volumes"]}
    assert {m["name"] for m in container["volumeMounts"]} == mounted
    assert deploy["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()


def test_kserve_export_is_an_inference_service_whose_predictor_is_a_valid_pod_spec(db, tmp_path, tiny_model):
    _, manifests = _export(db, tmp_path, "kserve", tiny_model)
    configmap, isvc = manifests
    validate(configmap, "V1ConfigMap")
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert set(isvc) == {"apiVersion", "kind", "metadata", "spec"} and set(isvc["spec"]) == {"predictor"}
    validate(isvc["metadata"], "V1ObjectMeta")
    predictor = isvc["spec"]["predictor"]
    assert set(predictor) - KSERVE_COMPONENT_FIELDS <= set(client.V1PodSpec.attribute_map.values())
    validate({k: v for k, v in predictor.items() if k not in KSERVE_COMPONENT_FIELDS}, "V1PodSpec")
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"
    _sized_like_the_trial(container)
    assert parse_flags(container["args"]).model_base_path == "/mnt/models"


def _sample_names(page: str) -> set[str]:
    """The sample names of a metrics page as written (a parser would normalize a counter's to `_total`)."""
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in page.splitlines() if line and line[0] != "#"}


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr))


@pytest.mark.slow
def test_every_dashboard_query_names_a_metric_the_server_exports(db, tmp_path, tiny_model, start_server):
    store = Store(db)
    job = add_job(store, store.model(tiny_model), fingerprint(host_info()), JobState.running)
    add_trial(store, job, 0, rps=40.0, p99=20.0, config=CONFIG, metrics=METRICS)
    store.finish_job(job, JobState.done)
    out = tmp_path / "plain"
    assert autotune("export", "--model", "tiny", "--out", str(out), db=db).returncode == 0
    board = json.loads((out / "grafana-dashboard.json").read_text())
    queried = {name for panel in board["panels"] for t in panel["targets"] for name in _metric_names(t["expr"])}

    # What a live server exports once it has served a batched request.
    server = start_server(tiny_model, "--enable_batching=true", f"--monitoring_config_file={out / 'monitoring.config'}")
    url = f"http://127.0.0.1:{server.rest_port}"
    body = build_payload("tiny", tiny_model.signature).rest_body
    assert requests.post(f"{url}/v1/models/tiny:predict", data=body, timeout=30).status_code == 200
    text = requests.get(f"{url}{METRICS_PATH}", timeout=10).text
    exported = _sample_names(text)

    # And what the autotune daemon exports, read from its own metrics endpoint.
    daemon = _Metrics(0)
    try:
        daemon.trials.labels("complete").inc()
        daemon.goodput.labels("tiny").set(40.0)
        page = requests.get(f"http://127.0.0.1:{daemon.port}/metrics", timeout=10).text
    finally:
        daemon.close()
    exported |= _sample_names(page)

    tf_serving = {n for n in queried if n.startswith(":tensorflow:")}
    assert tf_serving and tf_serving <= exported
    assert {n for n in queried if n.startswith("autotune_")} <= exported
    # The rest are the kubelet's cAdvisor series for the container.
    assert {n for n in queried if not n.startswith((":tensorflow:", "autotune_"))} <= set(CONTAINER_METRICS)
    thresholds = {p["title"]: p["fieldConfig"]["defaults"]["thresholds"]["steps"] for p in board["panels"]}
    assert {"color": "orange", "value": 40.0} in thresholds["Request rate"]  # the tuned throughput
    assert {"color": "orange", "value": 20.0} in thresholds["Latency (server side)"]  # the tuned p99
