"""Which server runs a trial: the real tensorflow_model_server, or autotune's local one."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from autotune.errors import AutotuneError

TFSERVING_BINARY = "tensorflow_model_server"


@dataclass(frozen=True)
class Backend:
    """A server program; `argv(flags)` is the full command line."""

    name: str  # local | tfserving
    program: tuple[str, ...]

    def argv(self, flags: list[str]) -> list[str]:
        return [*self.program, *flags]


def local_backend() -> Backend:
    return Backend("local", (sys.executable, "-m", "autotune.servers.local"))


def resolve_backend(name: str = "auto", server_binary: str | None = None) -> Backend:
    """auto: tfserving when the binary is on PATH (or given), else local."""
    if name not in ("auto", "local", "tfserving"):
        raise AutotuneError(f"unknown backend '{name}' (auto, local, tfserving)")
    binary = server_binary or shutil.which(TFSERVING_BINARY)
    if server_binary and not Path(server_binary).is_file():
        raise AutotuneError(f"--server-binary {server_binary} does not exist")
    if name == "tfserving" or (name == "auto" and binary):
        if not binary:
            raise AutotuneError(f"backend tfserving: {TFSERVING_BINARY} not found on PATH (use --server-binary)")
        return Backend("tfserving", (str(binary),))
    return local_backend()
