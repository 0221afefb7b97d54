"""The `grid` sampler: an exhaustive sweep of a discretized space, each config once, then it stops."""

from __future__ import annotations

from pathlib import Path

from autotune.knobs import ServingConfig
from autotune.measure import MeasureSettings, TrialResult
from autotune.models.resolve import ModelRef
from autotune.servers.backends import local_backend
from autotune.space import Dimension, Host, build_space, default_space, grid_of, grid_size
from autotune.spec import KnobSpec, Study
from autotune.tuner import Tuner


def test_ranges_become_short_ladders_and_choices_stay_as_given():
    grid = grid_of(default_space(Host(cpus=4, gpus=0)))
    assert grid["max_batch_size"].choices == (1, 4, 16, 64, 128)
    assert grid["batch_timeout_micros"].choices == (1, 32, 1024, 32768, 100_000)
    assert grid["intra_op_threads"].choices == (0, 1, 2, 3, 4)
    assert grid["enable_batching"].choices == (False, True)
    fixed = grid_of({"inter_op_threads": Dimension("inter_op_threads", fixed=2)})
    assert fixed["inter_op_threads"].fixed == 2


def test_a_sweep_measures_every_config_once_and_stops_when_the_grid_is_done():
    space = {
        "enable_batching": KnobSpec(choices=(False, True)),
        "max_batch_size": KnobSpec(choices=(4, 16)),
        "batch_timeout_micros": KnobSpec(value=1000),
        "num_batch_threads": KnobSpec(value=2),
        "max_enqueued_batches": KnobSpec(value=10),
        "intra_op_threads": KnobSpec(choices=(0, 1)),
        "inter_op_threads": KnobSpec(value=0),
    }
    study = Study(source="test", model="tiny", space=space, sampler="grid", seed=3)
    built = build_space(space, Host(cpus=2, gpus=0))
    # Batching off: 2 intra values; on: 2 batch sizes x 2 intra values.
    assert grid_size(grid_of(built)) == 6
    measured: list[ServingConfig] = []

    def measure(config: ServingConfig, _say: object, _pid: object) -> TrialResult:
        measured.append(config)
        metrics = {"throughput_rps": 10.0 + len(measured), "latency_p99_ms": 5.0, "error_rate": 0.0, "stable": True}
        return TrialResult("tiny", "replay", "rest", config, [], metrics)

    model = ModelRef("tiny", Path("."), 1, None)  # type: ignore[arg-type]
    tuner = Tuner(study, model, local_backend(), built, MeasureSettings(), None, "grid", measure=measure, cpus=2)
    done = tuner.run(trials=20, minutes=10)
    assert len(done) == 6 and len(set(measured)) == 6, "every grid point once, and no more despite the budget"
    assert measured[0] == ServingConfig(), "TF Serving's defaults first, as always"
