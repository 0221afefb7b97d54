"""Kubernetes and KServe manifests for an exported config, sized from what the tuning measured.

CPU: a config with a `cpus` allowance asks for exactly that (request = limit, what was
measured); one measured on every core asks for the cores it used (rounded up to a
tenth) and is limited to the cores it had. Memory: the peak RSS measured, with
MEMORY_HEADROOM on top, as request and limit alike (a pod over its memory limit is
killed, so the limit must hold the peak). The TF Serving config files travel in a
ConfigMap; the model comes from a PersistentVolumeClaim (Deployment) or a storage URI
(KServe) that the user points at their SavedModel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from autotune.grafana import CONTAINER
from autotune.knobs import ServingConfig
from autotune.servers.argv import tfserving_flags
from autotune.servers.docker import CONTAINER_GRPC_PORT, CONTAINER_REST_PORT, container_paths
from autotune.servers.scrape import METRICS_PATH

MEMORY_HEADROOM = 1.25  # on the measured peak RSS: allocator growth and request bursts beyond the measured load
CONFIG_DIR = "/config"
KSERVE_MODEL_DIR = "/mnt/models"  # where KServe's storage initializer puts the model


@dataclass(frozen=True)
class PodResources:
    """Requests and limits in Kubernetes quantities, and how they were derived."""

    cpu_request: str
    cpu_limit: str | None
    memory: str | None
    basis: str

    def to_k8s(self) -> dict[str, Any]:
        requests = {"cpu": self.cpu_request, **({"memory": self.memory} if self.memory else {})}
        limits = {
            **({"cpu": self.cpu_limit} if self.cpu_limit else {}),
            **({"memory": self.memory} if self.memory else {}),
        }
        return {"requests": requests, "limits": limits}


def _millicores(cores: float) -> str:
    return f"{max(100, math.ceil(cores * 10 - 1e-9) * 100)}m"


def pod_resources(config: ServingConfig, metrics: dict[str, Any]) -> PodResources:
    """Requests and limits for CONFIG from its measured METRICS (cores used and allocated, peak RSS)."""
    rss = metrics.get("rss_mb")
    memory = f"{math.ceil(rss * MEMORY_HEADROOM / 16) * 16}Mi" if rss else None
    mem_basis = f"memory: peak RSS {rss:g} MiB x{MEMORY_HEADROOM:g}" if rss else "memory: not measured"
    if config.cpus:
        cpu = _millicores(config.cpus)
        return PodResources(cpu, cpu, memory, f"cpu: the measured allowance cpus={config.cpus:g}; {mem_basis}")
    used, allocated = metrics.get("cpu_cores"), metrics.get("cpus_allocated")
    request = _millicores(used) if used else "100m"
    limit = _millicores(allocated) if allocated else None
    basis = f"cpu: {used or 0:g} cores used at the operating point, on {allocated or 'all'} cores; {mem_basis}"
    return PodResources(request, limit, memory, basis)


def _labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": f"tfserving-{name}", "app.kubernetes.io/managed-by": "autotune"}


def config_map(name: str, files: dict[str, str]) -> dict[str, Any]:
    """The TF Serving config files (batching, models, monitoring) as a ConfigMap."""
    keep = ("batching_parameters.txt", "models.config", "monitoring.config")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-tfserving-config", "labels": _labels(name)},
        "data": {k: files[k] for k in keep if k in files},
    }


def _container(
    name: str, config: ServingConfig, image: str, resources: PodResources, model_dir: str, load_time_s: float | None
) -> dict[str, Any]:
    paths = container_paths(name, config.enable_batching, monitoring=True)
    flags = tfserving_flags(config, paths)
    flags = [f"--model_base_path={model_dir}" if f.startswith("--model_base_path=") else f for f in flags]
    return {
        "name": CONTAINER,
        "image": image,
        "args": flags,
        "ports": [
            {"name": "http", "containerPort": CONTAINER_REST_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": CONTAINER_GRPC_PORT, "protocol": "TCP"},
        ],
        "resources": resources.to_k8s(),
        # AVAILABLE is what TF Serving's model status says once the model loaded (and warmed up).
        "readinessProbe": {
            "httpGet": {"path": f"/v1/models/{name}", "port": CONTAINER_REST_PORT},
            "initialDelaySeconds": max(1, math.ceil(load_time_s or 1)),
            "periodSeconds": 5,
        },
        "volumeMounts": [{"name": "tfserving-config", "mountPath": CONFIG_DIR, "readOnly": True}],
    }


def _origin(meta: dict[str, Any]) -> dict[str, str]:
    """Which job and trial a manifest deploys (from autotune.json's META)."""
    return {"autotune.io/job": str(meta["job_id"]), "autotune.io/trial": str(meta["trial"])}


def _load_time(meta: dict[str, Any]) -> float | None:
    return (meta.get("metrics") or {}).get("load_time_s")


def _scrape_annotations(extra: dict[str, str]) -> dict[str, str]:
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(CONTAINER_REST_PORT),
        "prometheus.io/path": METRICS_PATH,
        **extra,
    }


def deployment(
    name: str, config: ServingConfig, image: str, resources: PodResources, meta: dict[str, Any]
) -> dict[str, Any]:
    """A Deployment of tensorflow/serving running CONFIG, its model on the PVC `NAME-model`."""
    container = _container(name, config, image, resources, f"/models/{name}", _load_time(meta))
    container["volumeMounts"].append({"name": "model", "mountPath": f"/models/{name}", "readOnly": True})
    origin = _origin(meta)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"tfserving-{name}", "labels": _labels(name), "annotations": {**origin}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": _labels(name)},
            "template": {
                "metadata": {"labels": _labels(name), "annotations": _scrape_annotations(origin)},
                "spec": {
                    "containers": [container],
                    "volumes": [
                        {"name": "tfserving-config", "configMap": {"name": f"{name}-tfserving-config"}},
                        {"name": "model", "persistentVolumeClaim": {"claimName": f"{name}-model", "readOnly": True}},
                    ],
                },
            },
        },
    }


def service(name: str) -> dict[str, Any]:
    """A ClusterIP Service in front of the Deployment (REST and gRPC)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"tfserving-{name}", "labels": _labels(name)},
        "spec": {
            "selector": _labels(name),
            "ports": [
                {"name": "http", "port": CONTAINER_REST_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "grpc", "port": CONTAINER_GRPC_PORT, "targetPort": "grpc", "protocol": "TCP"},
            ],
        },
    }


def inference_service(
    name: str, config: ServingConfig, image: str, resources: PodResources, meta: dict[str, Any], storage_uri: str
) -> dict[str, Any]:
    """A KServe InferenceService with a custom tensorflow/serving predictor running CONFIG."""
    container = _container(name, config, image, resources, KSERVE_MODEL_DIR, _load_time(meta))
    container["name"] = "kserve-container"  # the name KServe's storage initializer and router look for
    container["env"] = [{"name": "STORAGE_URI", "value": storage_uri}]
    container["ports"] = container["ports"][:1]  # KServe routes to the container's one port: REST
    origin = _origin(meta)
    scrape = {
        "serving.kserve.io/enable-prometheus-scraping": "true",
        "prometheus.kserve.io/port": str(CONTAINER_REST_PORT),
        "prometheus.kserve.io/path": METRICS_PATH,
    }
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "labels": _labels(name), "annotations": {**origin, **scrape}},
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "containers": [container],
                "volumes": [{"name": "tfserving-config", "configMap": {"name": f"{name}-tfserving-config"}}],
            }
        },
    }
