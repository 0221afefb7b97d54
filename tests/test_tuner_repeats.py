"""A config the sampler asks for again is not measured again: no live trial is spent on a config a job already
knows, unless the sampler asks for nothing else."""

from __future__ import annotations

from pathlib import Path

import optuna

from autotune.knobs import ServingConfig
from autotune.measure import MeasureSettings, TrialResult
from autotune.models.resolve import ModelRef
from autotune.servers.backends import local_backend
from autotune.space import Host, build_space
from autotune.spec import KnobSpec, Study
from autotune.tuner import MAX_REPEATS_ASKED, REPEAT_ATTR, TrialHooks, Tuner

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


def test_a_config_asked_for_again_costs_no_live_trial_and_leaves_the_samplers_record_as_it_was(tmp_path):
    measured: list[ServingConfig] = []
    said: list[str] = []
    tuner = _tuner(measured, storage=f"sqlite:///{tmp_path / 'optuna.db'}")  # configs read back through SQLite
    done = tuner.run(trials=2, minutes=10, hooks=TrialHooks(said=said.append))
    assert len(done) == 2 and len(set(measured)) == 2, "both configs measured once, before any is measured twice"
    trials = tuner.optuna.trials
    repeats = [t for t in trials if REPEAT_ATTR in t.user_attrs]
    assert repeats, "the sampler asked for the defaults again before it drew the other config"
    assert len(trials) == len(done) + len(repeats)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert [t.number for t in complete] == [t.number for t in done], "one result per measured config, no copies"
    for t in repeats:
        earlier = trials[t.user_attrs[REPEAT_ATTR]]
        assert earlier in complete and earlier.number < t.number and t.params == earlier.params
        assert t.state == optuna.trial.TrialState.FAIL and t.user_attrs["failure_reason"] == "repeat"
    assert len(said) == 1 and "not measured twice" in said[0], "one line for a run of repeats, not one each"


def test_a_sampler_that_asks_only_for_measured_configs_gets_a_fresh_measurement_after_a_bounded_wait():
    measured: list[ServingConfig] = []
    tuner = _tuner(measured)
    done = tuner.run(trials=3, minutes=10)
    assert len(done) == 3 and len(measured) == 3, "the budget is spent, not spun away"
    repeats = [t for t in tuner.optuna.trials if REPEAT_ATTR in t.user_attrs]
    assert MAX_REPEATS_ASKED <= len(repeats) <= 2 * MAX_REPEATS_ASKED


def test_an_unstable_measurement_is_no_result_to_reuse():
    measured: list[ServingConfig] = []
    one_thread = ServingConfig(intra_op_threads=1)
    tuner = _tuner(measured, unstable_once=one_thread)
    tuner.run(trials=3, minutes=10)
    assert measured.count(one_thread) == 2, "measured again when asked, rather than told an untrusted figure"
