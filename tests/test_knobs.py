"""The knob parser: what users type after --set."""

import pytest

from autotune.errors import AutotuneError
from autotune.knobs import ServingConfig, parse_assignments


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
    ],
)
def test_bad_values_are_refused_with_the_knob_and_reason(assignment, message):
    with pytest.raises(AutotuneError, match=None) as info:
        parse_assignments(assignment)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_to_dict_leaves_out_batching_fields_when_batching_is_off():
    assert "max_batch_size" not in ServingConfig().to_dict()
    assert parse_assignments(["max_batch_size=4"]).to_dict()["max_batch_size"] == 4
