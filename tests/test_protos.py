"""TF Serving config files: what autotune writes is what tensorflow_model_server parses."""

import pytest
from google.protobuf import text_format

from autotune.errors import AutotuneError
from autotune.knobs import parse_assignments
from autotune.protos import batching_parameters_text, message_class, monitoring_config_text, parse_text


def test_batching_file_round_trips_through_the_batching_parameters_schema():
    config = parse_assignments(
        [
            "max_batch_size=16",
            "batch_timeout_micros=2000",
            "num_batch_threads=3",
            "max_enqueued_batches=50",
            "allowed_batch_sizes=4,8,16",
        ]
    )
    msg = parse_text("BatchingParameters", batching_parameters_text(config), "batching_parameters.txt")
    assert msg.max_batch_size.value == 16
    assert msg.batch_timeout_micros.value == 2000
    assert msg.num_batch_threads.value == 3
    assert msg.max_enqueued_batches.value == 50
    assert list(msg.allowed_batch_sizes) == [4, 8, 16]


def test_batching_file_uses_tf_servings_wrapper_syntax():
    text = batching_parameters_text(parse_assignments(["max_batch_size=8"]))
    assert "max_batch_size {\n  value: 8\n}" in text


def test_schema_has_tf_servings_field_numbers():
    fields = message_class("BatchingParameters").DESCRIPTOR.fields_by_name
    numbers = {name: f.number for name, f in fields.items()}
    assert numbers == {
        "max_batch_size": 1,
        "batch_timeout_micros": 2,
        "max_enqueued_batches": 3,
        "num_batch_threads": 4,
        "thread_pool_name": 5,
        "allowed_batch_sizes": 6,
        "pad_variable_length_inputs": 7,
    }


def test_a_malformed_file_names_the_file():
    with pytest.raises(AutotuneError, match=r"bp\.txt: not a valid BatchingParameters"):
        parse_text("BatchingParameters", "max_batch_size { value: banana }", "bp.txt")


def test_unknown_fields_are_refused_as_tf_serving_would():
    with pytest.raises(AutotuneError):
        parse_text("BatchingParameters", "max_batch_sise { value: 8 }", "bp.txt")


def test_monitoring_config_enables_prometheus():
    msg = parse_text("MonitoringConfig", monitoring_config_text(), "m")
    assert msg.prometheus_config.enable is True
    assert msg.prometheus_config.path == "/monitoring/prometheus/metrics"
    assert text_format.MessageToString(msg) == monitoring_config_text()
