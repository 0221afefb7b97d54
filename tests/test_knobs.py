"""The knob parser: what users type after --set."""

import os

import pytest

from autotune.errors import AutotuneError
from autotune.knobs import TFSERVING_BATCHING_DEFAULTS, ServingConfig, config_from_dict, parse_assignments
from autotune.protos import parse_text
from autotune.servers.argv import write_batching_file


def test_defaults_are_tensorflow_servings_own():
    config = parse_assignments([])
    assert config.enable_batching is False
    assert config.intra_op_threads == 0 and config.inter_op_threads == 0


def test_setting_a_batching_knob_turns_batching_on():
    config = parse_assignments(["max_batch_size=8", "batch_timeout_micros=500"])
    assert config.enable_batching is True
    assert config.max_batch_size == 8 and config.batch_timeout_micros == 500


def test_explicit_enable_batching_false_wins():
    assert parse_assignments(["enable_batching=false", "max_batch_size=8"]).enable_batching is False


def test_allowed_batch_sizes_parse_as_a_list():
    config = parse_assignments(["max_batch_size=8", "allowed_batch_sizes=2,4,8"])
    assert config.allowed_batch_sizes == (2, 4, 8)


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        (["nope=1"], "unknown knob 'nope'"),
        (["max_batch_size=abc"], "max_batch_size: expected an integer, got 'abc'"),
        (["max_batch_size=0"], "max_batch_size: 0 is out of range"),
        (["intra_op_threads=-1"], "intra_op_threads: -1 is out of range"),
        (["gpu_memory_fraction=1.5"], "gpu_memory_fraction: 1.5 is out of range"),
        (["gpu_memory_fraction=nan"], "gpu_memory_fraction: expected a number"),
        (["enable_batching=maybe"], "enable_batching: expected true/false"),
        (["max_batch_size"], "--set expects knob=value"),
        (["max_batch_size=8", "max_batch_size=4"], "set twice"),
        (["max_batch_size=8", "allowed_batch_sizes=2,4"], "last entry (4) must equal max_batch_size (8)"),
        (["max_batch_size=8", "allowed_batch_sizes=4,2,8"], "strictly increasing"),
        (
            ["model_variant=onnx"],
            "model_variant: expected one of savedmodel, tflite_fp16, tflite_int8, xla, got 'onnx'",
        ),
    ],
)
def test_bad_values_are_refused_with_the_knob_and_reason(assignment, message):
    with pytest.raises(AutotuneError, match=None) as info:
        parse_assignments(assignment)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_the_model_variant_is_the_savedmodel_unless_set_and_stored_only_when_set():
    assert ServingConfig().model_variant == "savedmodel" and "model_variant" not in ServingConfig().to_dict()
    config = parse_assignments(["model_variant=tflite_fp16"])
    assert config.to_dict()["model_variant"] == "tflite_fp16"
    assert config_from_dict(config.to_dict()) == config and config_from_dict({}) == ServingConfig()


def test_to_dict_leaves_out_batching_fields_when_batching_is_off():
    assert "max_batch_size" not in ServingConfig().to_dict()
    assert parse_assignments(["max_batch_size=4"]).to_dict()["max_batch_size"] == 4


def test_tf_serving_batching_defaults_are_tensorflows_shared_batch_scheduler_options():
    # tensorflow/core/kernels/batching_util/shared_batch_scheduler.h: QueueOptions input_batch_size_limit,
    # batch_timeout_micros, max_enqueued_batches; Options num_batch_threads = port::MaxParallelism().
    d = TFSERVING_BATCHING_DEFAULTS
    assert (d.max_batch_size, d.batch_timeout_micros, d.max_enqueued_batches) == (1000, 0, 10)
    assert d.num_batch_threads == len(os.sched_getaffinity(0))


def test_enable_batching_alone_writes_what_tf_serving_does_with_an_empty_batching_file(tmp_path):
    config = parse_assignments(["enable_batching=true"])
    assert config == ServingConfig(enable_batching=True)
    msg = parse_text("BatchingParameters", write_batching_file(config, tmp_path / "b.txt").read_text(), "b.txt")
    written = (msg.max_batch_size.value, msg.batch_timeout_micros.value, msg.max_enqueued_batches.value)
    assert written == (1000, 0, 10)
    assert msg.num_batch_threads.value == len(os.sched_getaffinity(0))
    assert list(msg.allowed_batch_sizes) == []


def test_one_batching_knob_leaves_the_others_at_tf_servings_defaults():
    config = parse_assignments(["batch_timeout_micros=500"])
    assert (config.max_batch_size, config.max_enqueued_batches) == (1000, 10)
