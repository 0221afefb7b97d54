"""Everything a server needs before it starts: its directory, ports, batching file, models and argv."""

from __future__ import annotations

import socket
from dataclasses import dataclass, replace
from pathlib import Path

from autotune.cores import schedulable_cores
from autotune.cpulimit import CpuPlan, plan_cpus
from autotune.knobs import ServingConfig
from autotune.measure.settings import MeasureSettings
from autotune.models.resolve import ModelRef, resolve_model, served_name
from autotune.multimodel import models_config_text
from autotune.protos import monitoring_config_text
from autotune.servers.argv import WARMUP_FILE, ServerPaths, write_batching_file
from autotune.servers.backends import Backend, Launch
from autotune.traffic.payload import Payload
from autotune.traffic.requests import load_requests
from autotune.warmup import has_own_warmup, warmed_model_base


def free_ports(n: int) -> list[int]:
    """N distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass(frozen=True)
class PreparedLaunch:
    """A trial's server, ready to start: its files written, its ports chosen, its argv built."""

    paths: ServerPaths
    launch: Launch
    workdir: Path
    cpu: CpuPlan
    backend: Backend

    @property
    def files(self) -> dict[str, str]:
        """The config files the server reads, by name."""
        found = (self.paths.batching_file, self.paths.monitoring_file)
        files = {p.name: str(p) for p in found if p is not None}
        if self.paths.overlay_version is not None:  # the warm-up file autotune placed beside the model
            warmup = self.paths.model_base_path / str(self.paths.overlay_version) / WARMUP_FILE
            files[WARMUP_FILE.name] = str(warmup)
        return files


@dataclass(frozen=True)
class Served:
    """A model a trial's server serves, the requests it gets, and its share of them (several models)."""

    model: ModelRef
    payloads: list[Payload]
    weight: float = 1.0


def mix_others(model: ModelRef, settings: MeasureSettings) -> tuple[Served, ...]:
    """The models served beside MODEL in a multi-model study (synthetic requests, the study's batch)."""
    others = []
    for spec, weight in (settings.mix or {}).items():
        if served_name(spec) == model.name:
            continue
        other = resolve_model(spec)
        payloads = load_requests(None, other.signature, settings.batch).payloads(other.name, other.signature.name)
        others.append(Served(other, payloads, weight))
    return tuple(others)


def prepare_launch(
    model: ModelRef,
    config: ServingConfig,
    backend: Backend,
    workdir: Path,
    monitoring: bool,
    warmup: list[Payload] | None = None,
    others: tuple[Served, ...] = (),
) -> PreparedLaunch:
    """Write the batching (and monitoring) file into WORKDIR, pick ports, build the argv; start nothing.

    With WARMUP, the server loads the model with those requests as its warm-up file (unless the model
    ships its own), as a deployment of the export does. With OTHERS, it serves them too, from a models
    config, each model batching by its own copy of CONFIG's batching file. Raises AutotuneError when this
    host cannot give the config's CPU allowance."""
    cpu = plan_cpus(config.cpus, schedulable_cores())
    monitoring_file = None
    if monitoring:
        monitoring_file = workdir / "monitoring.config"
        monitoring_file.write_text(monitoring_config_text())
    grpc_port, rest_port = free_ports(2)
    batching = write_batching_file(config, workdir / "batching_parameters.txt")
    if others:
        paths = _several_models(Served(model, warmup or []), others, batching, workdir, grpc_port, rest_port)
        paths = replace(paths, monitoring_file=monitoring_file)
        return PreparedLaunch(paths, backend.launch(config, paths, workdir, cpu), workdir, cpu, backend)
    base, overlay = model.base_path, None
    if warmup and not has_own_warmup(model):
        base, overlay = warmed_model_base(model, warmup, workdir / "model"), model.version
    paths = ServerPaths(
        model.name,
        base,
        grpc_port,
        rest_port,
        batching,
        monitoring_file,
        warmup=bool(warmup) or has_own_warmup(model),
        overlay_version=overlay,
    )
    return PreparedLaunch(paths, backend.launch(config, paths, workdir, cpu), workdir, cpu, backend)


def _several_models(
    first: Served, others: tuple[Served, ...], batching: Path | None, workdir: Path, grpc_port: int, rest_port: int
) -> ServerPaths:
    """Every model rebuilt under WORKDIR/models with its warm-up file and (batching on) its batching_params.pbtxt,
    and the models config listing them."""
    text = batching.read_text() if batching is not None else None
    bases = {
        s.model.name: str(warmed_model_base(s.model, s.payloads, workdir / "models" / s.model.name, text))
        for s in (first, *others)
    }
    config_file = workdir / "models.config"
    config_file.write_text(models_config_text(bases))
    base = Path(bases[first.model.name])
    return ServerPaths(
        first.model.name, base, grpc_port, rest_port, batching, None, warmup=True, model_config_file=config_file
    )
