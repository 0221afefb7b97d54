"""Turn `--model NAME|PATH` into a servable: base path, version, name, signature."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from autotune.errors import AutotuneError
from autotune.models.builtin import BUILTINS, ensure_builtin
from autotune.models.signature import Signature, read_signatures


@dataclass(frozen=True)
class ModelRef:
    """A model in TF Serving's layout: BASE/VERSION/saved_model.pb."""

    name: str
    base_path: Path
    version: int
    signature: Signature

    @property
    def version_path(self) -> Path:
        return self.base_path / str(self.version)


def latest_version(base: Path) -> int:
    """Highest numeric version under BASE holding a saved_model.pb, as TF Serving picks it."""
    versions = [int(p.name) for p in base.iterdir() if p.name.isdigit() and (p / "saved_model.pb").is_file()]
    if not versions:
        if (base / "saved_model.pb").is_file():
            raise AutotuneError(
                f"{base} is a bare SavedModel; TF Serving needs BASE/<version>/saved_model.pb "
                f"(move it to {base}/1 and pass {base})"
            )
        raise AutotuneError(f"{base}: no version directory with a saved_model.pb (expected {base}/1/saved_model.pb)")
    return max(versions)


def served_name(spec: str) -> str:
    """The name a model serves and is tuned under: a built-in's name, else its directory's, made URL-safe."""
    if spec in BUILTINS:
        return spec
    return re.sub(r"[^A-Za-z0-9_.-]", "_", Path(spec.rstrip("/")).name) or "model"


def _expand(spec: str) -> Path:
    # "~name" for a user that does not exist stays a literal path rather than a crash.
    try:
        return Path(spec).expanduser()
    except RuntimeError:
        return Path(spec)


def check_spec(spec: str) -> None:
    """Refuse a model that is neither a built-in name nor a directory (cheap: nothing is built or loaded)."""
    if spec not in BUILTINS and not _expand(spec).is_dir():
        raise AutotuneError(f"model {spec!r} is neither a built-in ({', '.join(BUILTINS)}) nor a directory")


def resolve_model(spec: str, signature_name: str = "serving_default") -> ModelRef:
    """Resolve a built-in name or a SavedModel base directory."""
    check_spec(spec)
    if spec in BUILTINS:
        base, name = ensure_builtin(spec), spec
    else:
        base = _expand(spec).resolve()
        name = served_name(str(base))
    version = latest_version(base)
    signatures = read_signatures(base / str(version))
    if signature_name not in signatures:
        raise AutotuneError(
            f"{base / str(version)}: no signature '{signature_name}' (has: {', '.join(signatures) or 'none'})"
        )
    return ModelRef(name, base, version, signatures[signature_name])
