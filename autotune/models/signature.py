"""Read a SavedModel's signatures without loading its variables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autotune.errors import AutotuneError
from autotune.tfwire import DTYPES, message


@dataclass(frozen=True)
class TensorSpec:
    """One signature tensor: dtype as a numpy name ('float32', 'string', ...) and shape (None: unknown)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...] | None


@dataclass(frozen=True)
class Signature:
    """A serving signature: its name, method and input/output tensors."""

    name: str
    method: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]


def _spec(name: str, info: object) -> TensorSpec:
    dtype_name = DTYPES.get(info.dtype, f"dtype_{info.dtype}")  # type: ignore[attr-defined]
    shape_proto = info.tensor_shape  # type: ignore[attr-defined]
    shape = None if shape_proto.unknown_rank else tuple(d.size if d.size >= 0 else None for d in shape_proto.dim)
    return TensorSpec(name, dtype_name, shape)


def read_signatures(version_dir: Path) -> dict[str, Signature]:
    """All signatures of the SavedModel in VERSION_DIR (the `serve` meta graph)."""
    pb = version_dir / "saved_model.pb"
    try:
        model = message("tensorflow.SavedModel")
        model.ParseFromString(pb.read_bytes())
    except FileNotFoundError:
        raise AutotuneError(f"{pb} does not exist") from None
    except Exception as exc:  # protobuf raises DecodeError and others for garbage
        raise AutotuneError(f"{pb}: not a SavedModel ({type(exc).__name__})") from None
    for meta in model.meta_graphs:
        if "serve" in meta.meta_info_def.tags:
            return {
                key: Signature(
                    key,
                    sig.method_name,
                    {k: _spec(k, v) for k, v in sig.inputs.items()},
                    {k: _spec(k, v) for k, v in sig.outputs.items()},
                )
                for key, sig in meta.signature_def.items()
                if not key.startswith("__")
            }
    raise AutotuneError(f"{pb}: no meta graph tagged 'serve'")
