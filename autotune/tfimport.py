"""Import TensorFlow without its start-up chatter on the user's terminal, and optionally without Keras."""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType


def import_tensorflow(keras: bool = True) -> ModuleType:
    """Import tensorflow with fd 2 muted; TF's C++ logs ignore TF_CPP_MIN_LOG_LEVEL at load time.

    keras=False skips the eager Keras import at the end of TF's __init__ (about 1.2 s of every
    model server's start on a small CPU); `load_keras` brings it back if a model needs it.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    blocked = not keras and "keras" not in sys.modules
    if blocked:
        sys.modules["keras"] = None  # type: ignore[assignment]  # TF catches the ImportError
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        import tensorflow

        # Touch the platform once while muted: the CUDA probe logs on first device query.
        tensorflow.config.list_physical_devices("GPU")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        if blocked and sys.modules.get("keras", 0) is None:
            del sys.modules["keras"]
    return tensorflow


def load_keras() -> bool:
    """Import what TF's own import would have (Keras' SavedModel registrations); False if unavailable."""
    try:
        importlib.import_module("keras.src.optimizers")
    except ImportError:
        return False
    return True
