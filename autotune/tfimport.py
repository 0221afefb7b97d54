"""Import TensorFlow without its start-up chatter on the user's terminal."""

from __future__ import annotations

import os
import sys
from types import ModuleType


def import_tensorflow() -> ModuleType:
    """Import tensorflow with fd 2 muted; TF's C++ logs ignore TF_CPP_MIN_LOG_LEVEL at load time."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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
    return tensorflow
