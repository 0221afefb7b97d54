"""TF Serving's REST JSON forms, decoded and encoded as the real server does."""

import base64
import json

import numpy as np
import pytest

from autotune.restjson import decode_request, encode_response
from autotune.servers.local.servable import RequestError

IMAGE = {"image_bytes": "string"}
TWO = {"a": "float32", "b": "int64"}


def test_row_form_with_b64_like_the_resnet_client():
    body = json.dumps({"instances": [{"b64": base64.b64encode(b"\xff\xd8jpeg").decode()}]}).encode()
    sig, inputs, row = decode_request(body, IMAGE)
    assert sig == "" and row is True
    assert inputs["image_bytes"].tolist() == [b"\xff\xd8jpeg"]


def test_row_form_with_named_inputs():
    body = json.dumps({"instances": [{"a": [1.0, 2.0], "b": 3}, {"a": [4.0, 5.0], "b": 6}]}).encode()
    _, inputs, _ = decode_request(body, TWO)
    assert inputs["a"].shape == (2, 2) and inputs["a"].dtype == np.float32
    assert inputs["b"].tolist() == [3, 6]


def test_columnar_form():
    body = json.dumps({"signature_name": "s", "inputs": {"a": [[1.0]], "b": [2]}}).encode()
    sig, inputs, row = decode_request(body, TWO)
    assert sig == "s" and row is False and inputs["b"].tolist() == [2]


def test_columnar_form_with_a_single_unnamed_input():
    _, inputs, _ = decode_request(json.dumps({"inputs": [{"b64": "AAE="}]}).encode(), IMAGE)
    assert inputs["image_bytes"].tolist() == [b"\x00\x01"]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'{"instances": []}',
        b'{"instances": [1], "inputs": [1]}',
        b'{"instances": [{"b64": "!!!"}]}',
        b'{"instances": [{"a": [1.0]}]}',
        b'{"instances": [{"a": [1.0], "b": 1}, {"a": [1.0, 2.0], "b": 1}]}',
        b'{"instances": [{"a": ["x"], "b": 1}]}',
    ],
)
def test_bad_requests_are_400(body):
    dtypes = IMAGE if b"b64" in body else TWO
    with pytest.raises(RequestError) as info:
        decode_request(body, dtypes)
    assert info.value.status == 400


def test_row_output_with_several_outputs_is_a_list_of_objects():
    body = json.loads(encode_response({"classes": np.array([3, 1]), "probs": np.array([[0.5], [0.25]])}, True))
    assert body == {"predictions": [{"classes": 3, "probs": [0.5]}, {"classes": 1, "probs": [0.25]}]}


def test_single_output_and_bytes_outputs():
    body = json.loads(encode_response({"out_bytes": np.array([b"\x00"], dtype=object)}, True))
    assert body == {"predictions": [{"b64": "AA=="}]}
    body = json.loads(encode_response({"y": np.array([[1.0]])}, False))
    assert body == {"outputs": [[1.0]]}
