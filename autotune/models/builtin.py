"""Built-in models with random weights (same compute cost as the trained ones).

`resnet` and `mobilenet` take TF Serving's official resnet signature: a batch of
JPEG strings `image_bytes`, decoded and resized inside the graph, returning
`classes` (int64) and `probabilities` (softmax). `resnet_float` and
`mobilenet_float` are the same networks taking decoded pixels (`images`, float32
NHWC, 0..255): no op outside TFLite's own, so they can become TFLite variants.
`tiny` is a small dense model for tests.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from autotune.errors import AutotuneError
from autotune.paths import models_dir

IMAGE_SIZE = 224
TINY_FEATURES = 32
BUILTINS = ("resnet", "mobilenet", "tiny", "resnet_float", "mobilenet_float")


def _classify(model: Any, images: Any) -> dict[str, Any]:
    import tensorflow as tf

    probabilities = model(images, training=False)
    return {"classes": tf.argmax(probabilities, axis=1), "probabilities": probabilities}


def _live_batchnorm(model: Any, preprocess: Callable[[Any], Any]) -> Any:
    """MODEL with its batch-norm statistics taken from random images.

    Random weights leave them at 0 and 1, under which activations fade (to ~1e-11 by MobileNetV2's last block)
    and every input gets the same uniform answer: nothing for an accuracy guard to compare. One training-mode
    pass with momentum 0 sets them from a batch; the compute is the same, the answers depend on the input."""
    import keras
    import numpy as np

    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    pixels = np.random.default_rng(0).uniform(0, 255, (8, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
    model(preprocess(pixels), training=True)
    for layer, momentum in zip(norms, momenta, strict=True):
        layer.momentum = momentum
    return model


def _image_module(make_model: Callable[[], Any], preprocess: Callable[[Any], Any], jpeg: bool = True) -> Any:
    """A classifier serving JPEG strings (TF Serving's resnet signature), or decoded pixels when not JPEG."""
    import tensorflow as tf

    class ImageServing(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = make_model()

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def serve(self, image_bytes: Any) -> dict[str, Any]:
            def decode(jpeg: Any) -> Any:
                image = tf.io.decode_jpeg(jpeg, channels=3)
                return tf.image.resize(image, [IMAGE_SIZE, IMAGE_SIZE])

            images = tf.map_fn(
                decode, image_bytes, fn_output_signature=tf.TensorSpec([IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32)
            )
            return _classify(self.model, preprocess(images))

    class PixelServing(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = make_model()

        @tf.function(input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32, name="images")])
        def serve(self, images: Any) -> dict[str, Any]:
            return _classify(self.model, preprocess(images))

    return ImageServing() if jpeg else PixelServing()


def _resnet(jpeg: bool = True) -> Any:
    import keras

    mean = [103.939, 116.779, 123.68]  # Keras' caffe-style ResNet50 preprocessing

    def preprocess(x: Any) -> Any:
        return x[..., ::-1] - mean

    return _image_module(
        lambda: _live_batchnorm(keras.applications.ResNet50(weights=None), preprocess), preprocess, jpeg
    )


def _mobilenet(jpeg: bool = True) -> Any:
    import keras

    def preprocess(x: Any) -> Any:
        return x / 127.5 - 1.0

    return _image_module(
        lambda: _live_batchnorm(keras.applications.MobileNetV2(weights=None), preprocess), preprocess, jpeg
    )


def _tiny() -> Any:
    import keras
    import tensorflow as tf

    class TinyServing(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = keras.Sequential(
                [
                    keras.Input((TINY_FEATURES,)),
                    keras.layers.Dense(256, activation="relu"),
                    keras.layers.Dense(256, activation="relu"),
                    keras.layers.Dense(10, activation="softmax"),
                ]
            )

        @tf.function(input_signature=[tf.TensorSpec([None, TINY_FEATURES], tf.float32, name="inputs")])
        def serve(self, inputs: Any) -> dict[str, Any]:
            scores = self.model(inputs, training=False)
            return {"classes": tf.argmax(scores, axis=1), "scores": scores}

    return TinyServing()


_BUILDERS: dict[str, Callable[[], Any]] = {
    "resnet": _resnet,
    "mobilenet": _mobilenet,
    "tiny": _tiny,
    "resnet_float": lambda: _resnet(jpeg=False),
    "mobilenet_float": lambda: _mobilenet(jpeg=False),
}


def build(name: str, out: Path, version: int = 1) -> Path:
    """Write built-in model NAME as a SavedModel at OUT/VERSION (TF Serving layout)."""
    if name not in _BUILDERS:
        raise AutotuneError(f"unknown built-in model {name!r} (built-ins: {', '.join(BUILTINS)})")
    from autotune.tfimport import import_tensorflow

    tf = import_tensorflow()  # muted: a first `bench` or `start` builds the model in the CLI's process

    tf.keras.utils.set_random_seed(0)  # same random weights every build
    module = _BUILDERS[name]()
    target = out / str(version)
    if target.exists():
        raise AutotuneError(f"{target} already exists; remove it or pick another --out")
    out.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename, so a killed build never leaves a half model.
    with tempfile.TemporaryDirectory(dir=out, prefix=".building-") as tmp:
        tf.saved_model.save(module, tmp + "/m", signatures={"serving_default": module.serve})
        Path(tmp, "m").rename(target)
    return target


def ensure_builtin(name: str) -> Path:
    """Return the cached base path of built-in NAME, building it once if needed."""
    base = models_dir() / name
    if (base / "1" / "saved_model.pb").exists():
        return base
    with FileLock(str(models_dir() / f".{name}.lock"), mode=0o600):
        if not (base / "1" / "saved_model.pb").exists():
            if base.exists():
                shutil.rmtree(base)
            build(name, base)
    return base
