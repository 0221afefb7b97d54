"""The search space: host-adapted ranges, study narrowing, conditional batching knobs."""

import optuna
import pytest

from autotune.errors import AutotuneError
from autotune.knobs import ServingConfig
from autotune.space import Host, build_space, default_space, params_of, suggest
from autotune.spec import KnobSpec

CPU_HOST = Host(cpus=4, gpus=0)


def test_thread_ranges_follow_the_cores_and_gpu_knob_needs_a_gpu():
    space = default_space(CPU_HOST)
    assert space["num_batch_threads"].high == 4 and space["intra_op_threads"].high == 4
    assert "gpu_memory_fraction" not in space
    assert "gpu_memory_fraction" in default_space(Host(cpus=4, gpus=1))


def test_study_narrows_and_fixes_knobs():
    space = build_space(
        {"max_batch_size": KnobSpec(low=2, high=8, log=True), "enable_batching": KnobSpec(value=True)}, CPU_HOST
    )
    assert (space["max_batch_size"].low, space["max_batch_size"].high) == (2, 8)
    assert space["enable_batching"].is_fixed
    with pytest.raises(AutotuneError, match="no GPU"):
        build_space({"gpu_memory_fraction": KnobSpec(value=0.5)}, CPU_HOST)


def test_batching_knobs_are_only_suggested_with_batching_on():
    space = default_space(CPU_HOST)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    drawn = []
    for _ in range(30):
        trial = study.ask()
        config = suggest(trial, space)
        drawn.append((trial.params, config))  # the params as suggested (read after suggest)
        study.tell(trial, 0.0)
    on = [(params, config) for params, config in drawn if config.enable_batching]
    off = [params for params, config in drawn if not config.enable_batching]
    assert on and off
    assert all("max_batch_size" in params and 1 <= config.max_batch_size <= 128 for params, config in on)
    assert all("max_batch_size" not in params for params in off)


def test_enqueued_defaults_come_back_as_tf_serving_defaults():
    space = default_space(CPU_HOST)
    study = optuna.create_study()
    study.enqueue_trial(params_of(ServingConfig(), space))
    config = suggest(study.ask(), space)
    assert config.enable_batching is False
    assert config.intra_op_threads == 0 and config.inter_op_threads == 0
