"""A config the sampler asks for again is not measured again: a config no trial has measured is measured in its
place, unless the space has none left."""

from __future__ import annotations

from pathlib import Path

import optuna

from autotune.knobs import ServingConfig
from autotune.measure import MeasureSettings, TrialResult
from autotune.models.resolve import ModelRef
from autotune.servers.backends import local_backend
from autotune.space import Host, build_space
from autotune.spec import KnobSpec, Study
from autotune.tuner import EXPLORES_ATTR, REPEAT_ATTR, TrialHooks, Tuner

# Two configs in all: batching off, and 1 or 0 (TF picks) intra-op threads.
TWO_CONFIGS = {
    "enable_batching": KnobSpec(value=False),
    "intra_op_threads": KnobSpec(choices=(0, 1)),
    "inter_op_threads": KnobSpec(value=0),
}


def _tuner(
    measured: list[ServingConfig], unstable_once: ServingConfig | None = None, storage: str | None = None
) -> Tuner:
    """A random-sampling tuner over TWO_CONFIGS whose trials replay fixed figures (UNSTABLE_ONCE's first is not
    stable)."""

    def measure(config: ServingConfig, _say: object, _pid: object) -> TrialResult:
        first = config not in measured
        measured.append(config)
        stable = not (first and config == unstable_once)
        rps = 10.0 + config.intra_op_threads
        metrics = {"throughput_rps": rps, "latency_p99_ms": 5.0, "error_rate": 0.0, "stable": stable}
        return TrialResult("tiny", "replay", "rest", config, [], metrics)

    # Seed 2: the sampler's first draw is the defaults again (a draw the first test needs; seeds 0 and 1 miss it).
    study = Study(source="t", model="tiny", space=TWO_CONFIGS, sampler="random", seed=2)
    model = ModelRef("tiny", Path("."), 1, None)  # type: ignore[arg-type]
    space = build_space(TWO_CONFIGS, Host(cpus=2, gpus=0))
    return Tuner(study, model, local_backend(), space, MeasureSettings(), storage, "s", measure=measure, cpus=2)


def test_a_config_asked_for_again_is_replaced_by_one_no_trial_has_measured(tmp_path):
    measured: list[ServingConfig] = []
    said: list[str] = []
    tuner = _tuner(measured, storage=f"sqlite:///{tmp_path / 'optuna.db'}")  # configs read back through SQLite
    done = tuner.run(trials=2, minutes=10, hooks=TrialHooks(said=said.append))
    assert measured == [ServingConfig(), ServingConfig(intra_op_threads=1)], "the defaults, then the other config"
    trials = tuner.optuna.trials
    (repeat,) = [t for t in trials if REPEAT_ATTR in t.user_attrs]  # seed 2's first ask: the defaults again
    assert repeat.user_attrs[REPEAT_ATTR] == 0 and repeat.state == optuna.trial.TrialState.FAIL
    assert repeat.user_attrs["failure_reason"] == "repeat", "told as failed: the sampler's record is unchanged"
    (instead,) = [t for t in trials if EXPLORES_ATTR in t.user_attrs]
    assert instead.user_attrs[EXPLORES_ATTR] == repeat.number and instead.number == done[1].number
    complete = [t.number for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete == [t.number for t in done], "one result per measured config, no copies"
    assert len(said) == 1 and "measured instead" in said[0]


def test_when_the_space_has_no_config_left_to_measure_the_one_asked_for_is_measured_again():
    measured: list[ServingConfig] = []
    done = _tuner(measured).run(trials=3, minutes=10)
    assert len(done) == 3 and len(set(measured)) == 2, "the budget is spent on a second draw, not lost"


def test_an_unstable_measurement_is_no_result_to_reuse():
    measured: list[ServingConfig] = []
    _tuner(measured, unstable_once=ServingConfig()).run(trials=2, minutes=10)
    # The same first ask as above (the defaults again), but now their first run did not settle: measured again.
    assert measured == [ServingConfig(), ServingConfig()]
