"""The client's TensorFlow wire messages (autotune/tfwire.py) against TensorFlow's own: same bytes understood."""

from __future__ import annotations

import numpy as np
import pytest

from autotune.models.signature import read_signatures
from autotune.traffic.payload import build_payload, tensor_proto


@pytest.mark.parametrize("model", ["tiny_model", "resnet_model"])
def test_signatures_read_without_tensorflow_match_what_tensorflow_reads(model, request):
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    ref = request.getfixturevalue(model)
    ours = read_signatures(ref.version_path)
    theirs = saved_model_pb2.SavedModel.FromString((ref.version_path / "saved_model.pb").read_bytes())
    (meta,) = [m for m in theirs.meta_graphs if "serve" in m.meta_info_def.tags]
    assert set(ours) == {k for k in meta.signature_def if not k.startswith("__")}
    for key, sig in ours.items():
        real = meta.signature_def[key]
        assert sig.method == real.method_name
        for mine, their in ((sig.inputs, real.inputs), (sig.outputs, real.outputs)):
            assert set(mine) == set(their)
            for name, spec in mine.items():
                dtype = tf.dtypes.as_dtype(their[name].dtype)
                assert spec.dtype == ("string" if dtype == tf.string else dtype.as_numpy_dtype.__name__)
                assert spec.shape == tuple(d.size if d.size >= 0 else None for d in their[name].tensor_shape.dim)


@pytest.mark.parametrize(
    "value",
    [
        np.arange(12, dtype=np.float32).reshape(1, 3, 4),
        np.array([[1, -2, 3]], dtype=np.int64),
        np.array([[True, False]]),
        np.array([b"\xff\xd8jpeg bytes"], dtype=object),
    ],
)
def test_tensors_built_without_tensorflow_decode_in_tensorflow_to_the_same_values(value):
    import tensorflow as tf
    from tensorflow.core.framework import tensor_pb2

    decoded = tf.make_ndarray(tensor_pb2.TensorProto.FromString(tensor_proto(value).SerializeToString()))
    assert decoded.dtype == value.dtype and decoded.shape == value.shape
    assert (decoded == value).all()


def test_a_predict_request_parses_in_tensorflow_serving_with_its_inputs(tiny_model, resnet_model):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    for ref in (tiny_model, resnet_model):
        payload = build_payload(ref.name, ref.signature)
        request = predict_pb2.PredictRequest.FromString(payload.grpc_request)
        assert request.model_spec.name == ref.name and request.model_spec.signature_name == ref.signature.name
        assert set(request.inputs) == set(ref.signature.inputs)
        for name, spec in ref.signature.inputs.items():
            array = tf.make_ndarray(request.inputs[name])
            assert array.shape[0] == 1  # one instance per request
            assert spec.dtype == ("string" if array.dtype == object else array.dtype.name)
