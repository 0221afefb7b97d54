"""How a backend starts a server: one class per backend behind one interface, and the factory that picks one.

`local` is autotune-model-server run by this Python; `tfserving` is the real
tensorflow_model_server binary; `docker` is its image. Each turns a config and
the trial's paths into a `Launch` (argv, where gRPC listens, what to clean up),
and round-trips through the options stored with a queued job.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from autotune.cpulimit import CpuPlan
from autotune.errors import AutotuneError
from autotune.knobs import ServingConfig
from autotune.servers.argv import ServerPaths, tfserving_flags
from autotune.servers.docker import (
    DEFAULT_IMAGE,
    LABEL,
    DockerRun,
    container_pid,
    docker_argv,
    remove_argv,
    version_entries,
)
from autotune.servers.names import BACKEND_NAMES

TFSERVING_BINARY = "tensorflow_model_server"

# tensorflow_model_server has no flag to choose its listen address: REST binds every interface.
TFSERVING_EXPOSURE = (
    "note: tensorflow_model_server binds REST on all interfaces; on untrusted networks use --backend docker"
)

# The backend note is one line of at most this many characters: it must read whole in a log, never wrapped.
NOTE_MAX = 100

# What a failed docker check means, in the few words the backend note has room for.
_DOCKER_SHORT = (
    ("not on PATH", "docker not on PATH"),
    ("did not answer", "docker daemon did not answer"),
    ("not reachable", "docker daemon not reachable"),
)


MULTI_MODEL_DOCKER = (
    "backend docker: a study of several models runs on the local or tfserving backend "
    "(its models config names host paths a container does not see)"
)


@dataclass(frozen=True)
class Launch:
    """How to start one server and reach it."""

    argv: list[str]
    grpc_target: str  # what the load generator dials: 127.0.0.1:PORT or unix:PATH
    cleanup: list[str] | None = None  # run after the process group is gone (a container outlives its client)
    container: str | None = None
    # The CPU allowance the started process must be put under (None: the backend enforces it itself).
    cpu: CpuPlan | None = None


class Backend(ABC):
    """A server program: how it is started for one config, how a queued job remembers it, and what it can do.

    Callers ask a backend about itself (these capabilities and methods), never its name: a new backend is one
    class here and one entry in BACKENDS.
    """

    name: ClassVar[str]
    program: tuple[str, ...]
    # Enforces a fractional `cpus` itself (docker's --cpus); the others need a cgroup quota from this host.
    enforces_cpu_quota: ClassVar[bool] = False
    # Serves several models from one models config file (host paths: a container does not see them).
    serves_models_config: ClassVar[bool] = True
    # Not TF Serving but autotune's stand-in: its figures say how TF Serving behaves, not how fast it is.
    is_stand_in: ClassVar[bool] = False
    # Binds REST on every interface, with no flag to say otherwise: said once per command (TFSERVING_EXPOSURE).
    binds_all_interfaces: ClassVar[bool] = False

    @abstractmethod
    def launch(self, config: ServingConfig, paths: ServerPaths, workdir: Path, cpu: CpuPlan) -> Launch:
        """The command line for CONFIG, with the model and files at PATHS (host view), WORKDIR for sockets,
        and the server's CPU allowance."""

    def check(self) -> None:  # noqa: B027  (most backends have nothing to probe)
        """Raise a one-line AutotuneError when this backend cannot run here (before anything starts)."""

    def prepare(self) -> None:  # noqa: B027  (only a backend with slow start-up work to get ahead of has any)
        """Begin what every server start will need, to run beside the caller's set-up (servers follow soon)."""

    def to_options(self) -> dict[str, Any]:
        """What a queued job stores to start the same servers later."""
        return {"name": self.name, "program": list(self.program)}

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Backend:
        """The backend a stored job asked for."""
        return cls()

    @classmethod
    def chosen(cls, server_binary: str | None, image: str | None, gpus: bool) -> Backend:
        """This backend as the command line asked for it (--server-binary, --docker-image, a GPU image)."""
        return cls()

    def monitor_pid(self, launch: Launch, started_pid: int) -> int:
        """The process whose tree is sampled for CPU and memory: the one started, unless the server runs elsewhere."""
        return started_pid

    @classmethod  # noqa: B027  (only servers that outlive their client leave orphans: docker's)
    def reap_orphans(cls) -> None:
        """Remove servers of this backend that a killed process left running outside its process group."""


@dataclass(frozen=True)
class LocalBackend(Backend):
    """autotune-model-server, the stand-in that ships with autotune, run by this interpreter."""

    name: ClassVar[str] = "local"
    is_stand_in: ClassVar[bool] = True
    program: tuple[str, ...] = field(default_factory=lambda: (sys.executable, "-m", "autotune.servers.local"))

    def launch(self, config: ServingConfig, paths: ServerPaths, workdir: Path, cpu: CpuPlan) -> Launch:
        return Launch([*self.program, *tfserving_flags(config, paths)], f"127.0.0.1:{paths.grpc_port}", cpu=cpu)

    def prepare(self) -> None:
        from autotune.servers.prefork import start_early

        start_early(list(self.program))  # the fork server's TensorFlow import: 2.6-3 s


@dataclass(frozen=True)
class TFServingBackend(Backend):
    """The real tensorflow_model_server binary."""

    name: ClassVar[str] = "tfserving"
    binds_all_interfaces: ClassVar[bool] = True
    program: tuple[str, ...] = (TFSERVING_BINARY,)

    def launch(self, config: ServingConfig, paths: ServerPaths, workdir: Path, cpu: CpuPlan) -> Launch:
        # No TCP gRPC listener at all (it would bind 0.0.0.0): gRPC goes over a UNIX socket.
        socket_path = workdir / "grpc.sock"
        on_socket = replace(paths, grpc_port=0, grpc_socket=socket_path)
        return Launch([*self.program, *tfserving_flags(config, on_socket)], f"unix:{socket_path}", cpu=cpu)

    def check(self) -> None:
        if shutil.which(self.program[0]) is None:
            if self.program[0] == TFSERVING_BINARY:
                raise AutotuneError(f"backend tfserving: {TFSERVING_BINARY} not found on PATH (use --server-binary)")
            raise AutotuneError(f"backend tfserving: {self.program[0]} is not an executable file")

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Backend:
        return cls(tuple(options["program"]))

    @classmethod
    def chosen(cls, server_binary: str | None, image: str | None, gpus: bool) -> Backend:
        return cls((server_binary or shutil.which(TFSERVING_BINARY) or TFSERVING_BINARY,))


@dataclass(frozen=True)
class DockerBackend(Backend):
    """The tensorflow/serving image under `docker run`, ports published on 127.0.0.1 only."""

    name: ClassVar[str] = "docker"
    enforces_cpu_quota: ClassVar[bool] = True
    serves_models_config: ClassVar[bool] = False
    image: str = DEFAULT_IMAGE
    gpus: bool = False
    program: tuple[str, ...] = ("docker",)

    def launch(self, config: ServingConfig, paths: ServerPaths, workdir: Path, cpu: CpuPlan) -> Launch:
        if paths.model_config_file is not None:
            raise AutotuneError(MULTI_MODEL_DOCKER)
        name = f"autotune-{paths.model_name}-{uuid.uuid4().hex[:10]}"
        # Docker enforces the allowance itself (--cpus, --cpuset-cpus): the client process is left unpinned.
        run = DockerRun(
            self.image,
            name,
            paths.grpc_port,
            paths.rest_port,
            paths.model_base_path,
            workdir,
            self.gpus,
            cpuset=tuple(cpu.server_cores) if cpu.cpus or cpu.client_cores else (),
            version_files=version_entries(paths.model_base_path / str(paths.overlay_version))
            if paths.overlay_version is not None
            else (),
            version=paths.overlay_version or 0,
        )
        argv = docker_argv(config, paths.model_name, run, paths.monitoring_file is not None)
        return Launch(argv, f"127.0.0.1:{paths.grpc_port}", remove_argv(name), name)

    def unusable(self) -> str | None:
        """Why `auto` cannot use Docker here, in a few words (no command, no daemon, image not pulled), or None."""
        try:
            self.check()
        except AutotuneError as exc:
            return next((short for key, short in _DOCKER_SHORT if key in str(exc)), "docker unusable")
        try:
            found = subprocess.run(
                ["docker", "image", "inspect", self.image], capture_output=True, timeout=20, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return "docker did not say whether its image is pulled"
        return None if found.returncode == 0 else f"{self.image} not pulled"

    def check(self) -> None:
        if shutil.which("docker") is None:
            raise AutotuneError("backend docker: the docker command is not on PATH")
        try:
            out = subprocess.run(
                ["docker", "version", "--format", "{{.Server.Version}}"],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise AutotuneError("backend docker: the docker daemon did not answer within 20 s") from None
        if out.returncode != 0:
            lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()] or ["no reason given"]
            raise AutotuneError(f"backend docker: the docker daemon is not reachable: {lines[-1]}")

    def to_options(self) -> dict[str, Any]:
        return {**super().to_options(), "image": self.image, "gpus": self.gpus}

    def monitor_pid(self, launch: Launch, started_pid: int) -> int:
        # A container's processes are not children of `docker run`: sample the container's own tree.
        return (container_pid(launch.container) if launch.container else None) or started_pid

    @classmethod
    def reap_orphans(cls) -> None:
        # A container outlives a killed `docker run`: ours carry a label.
        if shutil.which("docker") is None:
            return
        try:
            ids = subprocess.run(
                ["docker", "ps", "-aq", "--filter", f"label={LABEL}"], capture_output=True, text=True, timeout=20
            ).stdout.split()
            if ids:
                subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            pass

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Backend:
        return cls(options.get("image") or DEFAULT_IMAGE, bool(options.get("gpus")))

    @classmethod
    def chosen(cls, server_binary: str | None, image: str | None, gpus: bool) -> Backend:
        return cls(image or DEFAULT_IMAGE, gpus)


BACKENDS: dict[str, type[Backend]] = {b.name: b for b in (LocalBackend, TFServingBackend, DockerBackend)}


def backend_class(name: str) -> type[Backend] | None:
    """The class of backend NAME (as a job stores it), or None for a name this autotune does not know."""
    return BACKENDS.get(name)


def local_backend() -> Backend:
    """autotune-model-server, run by this Python."""
    return LocalBackend()


def resolve_auto(server_binary: str | None = None, gpus: bool = False) -> tuple[Backend, str]:
    """What `auto` picks, and why, as the one-line backend note: the real binary, else Docker with TF Serving's
    image pulled, else the stand-in."""
    binary = server_binary or shutil.which(TFSERVING_BINARY)
    if binary:
        room = NOTE_MAX - len("backend: tfserving ()")
        # A deep path keeps its end, which names the binary: the note is never wrapped or cut by a terminal.
        shown = binary if len(binary) <= room else "..." + binary[-(room - 3) :]
        return TFServingBackend((binary,)), f"backend: tfserving ({shown})"
    docker = DockerBackend(DEFAULT_IMAGE, gpus)
    problem = docker.unusable()
    if problem is None:
        return docker, f"backend: docker (no {TFSERVING_BINARY} on PATH; {DEFAULT_IMAGE} pulled)"
    return LocalBackend(), f"backend: local stand-in (no {TFSERVING_BINARY} on PATH; {problem})"


def resolve_backend(
    name: str = "auto",
    server_binary: str | None = None,
    image: str | None = None,
    gpus: bool = False,
    check: bool = True,
) -> Backend:
    """The factory (`auto`: see resolve_auto). CHECK=False skips probing the chosen backend."""
    return choose_backend(name, server_binary, image, gpus, check)[0]


def choose_backend(
    name: str = "auto",
    server_binary: str | None = None,
    image: str | None = None,
    gpus: bool = False,
    check: bool = True,
) -> tuple[Backend, str | None]:
    """The backend NAME means here, and (for `auto`) why it was picked."""
    if name not in BACKEND_NAMES:
        raise AutotuneError(f"unknown backend '{name}' ({', '.join(BACKEND_NAMES)})")
    if image and name != "docker":
        raise AutotuneError("--docker-image needs --backend docker")
    if server_binary and not Path(server_binary).is_file():
        raise AutotuneError(f"--server-binary {server_binary} does not exist")
    chosen: Backend
    why = None
    if name == "auto":
        chosen, why = resolve_auto(server_binary, gpus)
    else:
        chosen = BACKENDS[name].chosen(server_binary, image, gpus)
    if check:
        chosen.check()
    return chosen, why


def backend_from_options(options: dict[str, Any], default: str = "auto") -> Backend:
    """The backend a stored job asked for (DEFAULT when it stored none); the local server runs on this interpreter."""
    if not options:
        return resolve_backend(default)
    kind = BACKENDS.get(options.get("name", ""))
    if kind is None:
        raise AutotuneError(f"the job asks for backend {options.get('name')!r}, which this autotune does not know")
    return kind.from_options(options)
