"""The benchmark replay (benchmarks/search_efficiency.py) judges samplers fairly: row order cannot matter,
ties are broken at random, thread value 0 means every core, and noise widens what counts as the optimum."""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from grid_file import COLUMNS, KNOB_COLUMNS, write_header
from search_efficiency import Grid, GridError, hypervolume, optuna_strategy, replay

from autotune.knobs import ServingConfig

HEADER = {"model": "synthetic", "cpus": 2, "concurrency": 8, "slo_ms": 50, "max_error_rate": 0.01}


def _row(config: ServingConfig, repeat: int, rps: float, p99: float) -> dict:
    row = {k: getattr(config, k) for k in KNOB_COLUMNS}
    row.update(repeat=repeat, throughput_rps=rps, latency_p99_ms=p99, error_rate=0.0, stable=True, failure_reason="")
    return row


def _configs() -> list[ServingConfig]:
    unbatched = [ServingConfig(intra_op_threads=a, inter_op_threads=b) for a in (0, 1, 2) for b in (0, 1, 2)]
    batched = [
        ServingConfig(
            enable_batching=True, max_batch_size=m, batch_timeout_micros=t, num_batch_threads=n, intra_op_threads=1
        )
        for m in (1, 4, 16)
        for t in (1, 5000)
        for n in (1, 2)
    ]
    return unbatched + batched


def write_grid(
    path: Path,
    spread: float = 0.02,
    seed: int = 0,
    header: dict | None = None,
    configs: list[ServingConfig] | None = None,
) -> Path:
    """A grid where larger batches serve more at a higher p99, each point measured 3 times with SPREAD noise."""
    rng = random.Random(seed)
    rows = []
    for c in configs or _configs():
        base = 100.0 * (c.max_batch_size if c.enable_batching else 2) ** 0.3 + c.intra_op_threads
        p99 = 10.0 + (c.max_batch_size if c.enable_batching else 1) * (1 + c.batch_timeout_micros / 5000 * 2)
        for r in (1, 2, 3):
            rows.append(_row(c, r, base * (1 + rng.uniform(-spread, spread)), p99 * (1 + rng.uniform(-0.02, 0.02))))
    write_header(path, header or HEADER)
    with path.open("a", newline="") as f:
        csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore").writerows(rows)
    return path


def shuffled_copy(src: Path, dst: Path, seed: int) -> Path:
    lines = src.read_text().splitlines(keepends=True)
    head = [line for line in lines if line.startswith("#")]
    body = [line for line in lines if not line.startswith("#")]
    rows = body[1:]
    random.Random(seed).shuffle(rows)
    dst.write_text("".join(head + body[:1] + rows))
    return dst


def test_the_file_row_order_changes_nothing(tmp_path: Path) -> None:
    grid = Grid(write_grid(tmp_path / "g.csv"))
    other = Grid(shuffled_copy(tmp_path / "g.csv", tmp_path / "s.csv", seed=3))
    assert [(p.key, p.draws) for p in grid.points] == [(p.key, p.draws) for p in other.points]
    run = optuna_strategy("autotune")
    assert [p.key for p in run(grid, 7, 12)] == [p.key for p in run(other, 7, 12)]


def test_equally_near_points_are_chosen_between_at_random(tmp_path: Path) -> None:
    grid = Grid(write_grid(tmp_path / "g.csv"))
    # Batch 2 lies halfway (on the log scale) between the recorded batches 1 and 4.
    between = ServingConfig(
        enable_batching=True, max_batch_size=2, batch_timeout_micros=1, num_batch_threads=1, intra_op_threads=1
    )
    picked = {grid.nearest(between, random.Random(s)).config.max_batch_size for s in range(30)}
    assert picked == {1, 4}


def test_thread_value_zero_means_every_core(tmp_path: Path) -> None:
    grid = Grid(write_grid(tmp_path / "g.csv"))
    # Recorded points answer exactly, zeros included: TF Serving's defaults are their own point.
    assert grid.nearest(ServingConfig(), random.Random(0)).config == ServingConfig()
    # Without (0, 1) and (1, 0) in the grid, they are (2, 1) and (1, 2) on a 2-core host, not (0, 0) or (1, 1).
    recorded = [(0, 0), (1, 1), (2, 1), (1, 2), (2, 2)]
    configs = [c for c in _configs() if c.enable_batching or (c.intra_op_threads, c.inter_op_threads) in recorded]
    partial = Grid(write_grid(tmp_path / "p.csv", configs=configs))
    for asked, expected in (((0, 1), (2, 1)), ((1, 0), (1, 2))):
        for seed in range(5):
            config = ServingConfig(intra_op_threads=asked[0], inter_op_threads=asked[1])
            near = partial.nearest(config, random.Random(seed))
            assert (near.config.intra_op_threads, near.config.inter_op_threads) == expected


def test_a_noisy_grid_widens_the_optimum_to_its_noise_floor(tmp_path: Path) -> None:
    quiet = Grid(write_grid(tmp_path / "quiet.csv", spread=0.005))
    noisy = Grid(write_grid(tmp_path / "noisy.csv", spread=0.25))
    assert quiet.noise_floor()[0] < 0.05 and quiet.target_fraction() == 0.95
    assert noisy.noise_floor()[0] > 0.05 and noisy.target_fraction() < 0.95
    assert len(noisy.targets()) > len(quiet.targets())


def test_strategies_are_judged_on_medians_over_seeds(tmp_path: Path) -> None:
    grid = Grid(write_grid(tmp_path / "g.csv"))
    outcome = replay(grid, optuna_strategy("random"), seeds=3, budget=10, targets=grid.targets())
    assert len(outcome.counts) == 3 and all(1 <= c <= 11 for c in outcome.counts)
    q1, median, q3 = outcome.quartiles()
    assert q1 <= median <= q3
    assert all(0.0 <= v <= 1.0 + 1e-9 for v in outcome.hv[10])
    assert hypervolume(grid.points, grid.slo_ms, grid.max_error_rate) > 0


def test_a_grid_without_its_recording_settings_is_refused(tmp_path: Path) -> None:
    path = write_grid(tmp_path / "g.csv", header={"model": "synthetic"})
    with pytest.raises(GridError, match=r"not a grid of record_grid\.py"):
        Grid(path)


def test_a_grid_row_keeps_the_served_variant_and_rows_from_before_variants_key_as_they_did() -> None:
    from grid_file import config_of, point_key
    from record_grid import VARIANTS, _row

    for config in VARIANTS:  # as a CSV cell reads back: every value a string
        assert config_of({k: str(v) for k, v in _row(config).items()}) == config
    assert len({point_key(_row(c)) for c in VARIANTS}) == len(VARIANTS)
    old = {k: str(v) for k, v in _row(ServingConfig(intra_op_threads=1)).items() if k != "model_variant"}
    assert point_key(old) == (False, 1, 0, 0.0, ())
    fp16 = _row(ServingConfig(intra_op_threads=1, model_variant="tflite_fp16"))
    assert point_key(fp16) != point_key(old)
