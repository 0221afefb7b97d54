"""A server autotune did not start (`--target URL`): measured where it runs, never started, stopped or changed.

Loopback only, unless the user names the one other host with `--allow-remote HOST`.
The model's signature comes from the server's own metadata endpoint, and its process
is sampled when it listens on this host and this user may see it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import psutil
import requests

from autotune.errors import AutotuneError
from autotune.loopback import LOOPBACK, host_of
from autotune.models.signature import Signature, TensorSpec

# types.proto's DataType names, as TF Serving's JSON metadata spells them -> autotune's dtype names.
_DT_NAMES = {
    "DT_FLOAT": "float32",
    "DT_DOUBLE": "float64",
    "DT_INT32": "int32",
    "DT_UINT8": "uint8",
    "DT_INT16": "int16",
    "DT_INT8": "int8",
    "DT_STRING": "string",
    "DT_INT64": "int64",
    "DT_BOOL": "bool",
    "DT_BFLOAT16": "bfloat16",
    "DT_UINT16": "uint16",
    "DT_HALF": "float16",
    "DT_UINT32": "uint32",
    "DT_UINT64": "uint64",
}


@dataclass(frozen=True)
class Target:
    """Where a running TF Serving answers: its REST base URL and, for gRPC, HOST:PORT."""

    url: str  # http://HOST:PORT
    host: str
    rest_port: int
    grpc_target: str | None = None

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK

    @property
    def remote_hosts(self) -> tuple[str, ...]:
        """The hosts the load generator must be allowed to reach besides loopback."""
        hosts = {self.host, *([host_of(self.grpc_target)] if self.grpc_target else [])}
        return tuple(sorted(h for h in hosts if h not in LOOPBACK))


def _host_port(text: str, what: str) -> tuple[str, int]:
    parts = urlsplit(text if "//" in text else f"//{text}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise AutotuneError(f"{what} {text!r}: expected HOST:PORT (e.g. 127.0.0.1:8501)")
    return parts.hostname, port


def parse_target(url: str, grpc: str | None, allow_remote: list[str] | None) -> Target:
    """The target URL (http://HOST:PORT, TF Serving's REST port) and optional gRPC HOST:PORT, checked:
    loopback, or a host named in ALLOW_REMOTE."""
    if urlsplit(url).scheme not in ("http", ""):
        raise AutotuneError(f"--target {url!r}: only http:// (TF Serving's REST API) is supported")
    host, port = _host_port(url, "--target")
    target = Target(f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}", host, port)
    if grpc is not None:
        grpc_host, grpc_port = _host_port(grpc, "--target-grpc")
        target = Target(target.url, host, port, f"{grpc_host}:{grpc_port}")
    allowed = set(allow_remote or [])
    for remote in target.remote_hosts:
        if remote not in allowed:
            raise AutotuneError(
                f"target host {remote} is not this machine: autotune sends load to loopback only "
                f"unless the host is named with --allow-remote {remote}"
            )
    return target


def fetch_signature(target: Target, model_name: str, signature_name: str, timeout_s: float = 10.0) -> Signature:
    """SIGNATURE_NAME of MODEL_NAME as the target serves it (GET /v1/models/NAME/metadata)."""
    url = f"{target.url}/v1/models/{model_name}/metadata"
    try:
        reply = requests.get(url, timeout=timeout_s)
    except requests.RequestException as exc:
        raise AutotuneError(f"--target: cannot reach {url}: {type(exc).__name__}") from None
    if reply.status_code != 200:
        raise AutotuneError(f"--target: {url} answered HTTP {reply.status_code} (is {model_name!r} served there?)")
    try:
        defs = reply.json()["metadata"]["signature_def"]["signature_def"]
    except (ValueError, KeyError, TypeError):
        raise AutotuneError(f"--target: {url} did not return TF Serving's model metadata") from None
    if signature_name not in defs:
        raise AutotuneError(f"--target: {model_name} has no signature {signature_name!r} (has: {', '.join(defs)})")
    sig = defs[signature_name]

    def specs(tensors: dict) -> dict[str, TensorSpec]:
        out = {}
        for name, info in tensors.items():
            shape = info.get("tensor_shape", {})
            dims = None if shape.get("unknown_rank") else tuple(int(d.get("size", -1)) for d in shape.get("dim", []))
            out[name] = TensorSpec(
                name,
                _DT_NAMES.get(info.get("dtype", ""), info.get("dtype", "")),
                None if dims is None else tuple(d if d >= 0 else None for d in dims),
            )
        return out

    inputs, outputs = specs(sig.get("inputs", {})), specs(sig.get("outputs", {}))
    return Signature(signature_name, sig.get("method_name", ""), inputs, outputs)


def listening_pid(port: int) -> int | None:
    """The pid of the process listening on PORT on this host, where this user may see it; else None."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return conn.pid
    except (psutil.AccessDenied, OSError):
        return None
    return None


class RunningServer:
    """What the trial runner asks of a server it started, answered for one it did not: it is never stopped."""

    def __init__(self, target: Target, pid: int | None) -> None:
        self.target, self.pid = target, pid

    def alive(self) -> bool:
        return self.pid is None or psutil.pid_exists(self.pid)

    def last_error_line(self) -> str:
        return f"the server at {self.target.url} (pid {self.pid}) exited"

    def log_tail(self, lines: int = 30) -> str:
        return ""  # not our process: its log is not ours to read

    def throttling(self) -> None:
        return None

    def stop(self) -> None:
        """Never: autotune leaves a target exactly as it found it."""
