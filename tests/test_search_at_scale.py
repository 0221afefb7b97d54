"""The race on the performance model (benchmarks/search_at_scale.py), on a tiny synthetic space of 20 configs
through the same code path: truth files are reused only while their header matches, and both our sampler and
random find the optimum of a space this small."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import search_at_scale as sas  # noqa: E402

from autotune.seeds import heuristic_seeds  # noqa: E402

SPEC = sas.SpaceSpec(
    name="test-tiny",
    model="tiny",
    cores=2,
    concurrency=4,
    batch_sizes=(2, 8),
    timeouts=(0,),
    batch_threads=(1, 2),
    threads=(0, 1),
    allowances=(0.0,),
    requests=100,
    profile_path=str(BENCH / "data" / "profile-tiny-2026-12-04.json"),
)


@pytest.fixture(scope="module")
def truth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    data = tmp_path_factory.mktemp("truth")
    return data, sas.ensure_truth(SPEC, data=data, processes=1, say=lambda _: None)


def test_space_holds_every_config_once(truth: tuple[Path, list[dict]]) -> None:
    _, rows = truth
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)) == 20


def test_truth_file_is_reused_only_while_its_header_matches(
    truth: tuple[Path, list[dict]], monkeypatch: pytest.MonkeyPatch
) -> None:
    data, rows = truth
    calls: list[int] = []

    def fake(spec: sas.SpaceSpec, processes: int = 2) -> list[dict]:
        calls.append(1)
        return rows

    monkeypatch.setattr(sas, "compute_truth", fake)
    assert sas.ensure_truth(SPEC, data=data, processes=1, say=lambda _: None) == rows
    assert calls == []  # same header: reused
    path = sas.truth_path(SPEC, data)
    text = path.read_text()
    path.write_text(text.replace("# profile_sha256: ", "# profile_sha256: 0", 1))
    sas.ensure_truth(SPEC, data=data, processes=1, say=lambda _: None)
    assert calls == [1]  # another profile's truth: recomputed
    assert sas.read_truth(path, sas.settings(SPEC)) is not None  # and rewritten with the right header
    assert sas.read_truth(path, {**sas.settings(SPEC), "requests": "999"}) is None
    # A fitted curve's last bits differ between CPUs: the same fit to 10 digits is the same truth, more is not.
    fit = {**sas.settings(SPEC), "curve": "DeviceCurve(fixed_ms=4.590542215336929)"}
    sas.write_truth(path, fit, rows)
    assert sas.read_truth(path, {**fit, "curve": "DeviceCurve(fixed_ms=4.590542215336919)"}) is not None
    assert sas.read_truth(path, {**fit, "curve": "DeviceCurve(fixed_ms=4.590543)"}) is None


def test_ours_and_random_find_the_optimum_of_a_tiny_space(truth: tuple[Path, list[dict]]) -> None:
    _, rows = truth
    space = sas.build_space(SPEC, rows)
    assert space.slo_ms == pytest.approx(sas.SLO_FACTOR * min(r["latency_p99_ms"] for r in rows), rel=1e-2)
    budget = 5 * space.size
    results = sas.race({SPEC.name: space}, ["autotune", "random", "guide"], [0], {SPEC.name: budget}, processes=1)
    ours, rnd = results[SPEC.name]["autotune"], results[SPEC.name]["random"]
    assert ours.counts[0] <= space.size
    assert rnd.counts[0] <= budget
    # Regret never rises, and is within 5% from the trial that found the optimum on.
    curve = ours.regret[0]
    assert all(b <= a for a, b in itertools.pairwise(curve))
    assert curve[ours.counts[0] - 1] <= 1 - sas.NEAR + 1e-9
    doc = sas.summary(space, results[SPEC.name], budget)
    assert doc["samplers"]["autotune"]["ratio_to_random"] == pytest.approx(ours.counts[0] / rnd.counts[0], rel=1e-3)


def test_noise_comes_from_the_measured_repeats() -> None:
    s_thr, s_p99, source = sas.noise_sigma("resnet")
    assert source.startswith("trust-repeat-resnet")
    assert 0.005 < s_thr < 0.2 and 0.005 < s_p99 < 0.3


def test_the_legacy_entrant_fits_seeds_as_before_and_the_shipped_seeds_stay_in_the_space() -> None:
    dims = sas.dimensions(SPEC)
    shipped = heuristic_seeds(dims, SPEC.cores, SPEC.concurrency)
    legacy = sas.legacy_seeds(dims, SPEC.cores, SPEC.concurrency)
    assert shipped and legacy
    assert all(sas.key_of(c) in {sas.key_of(x) for x in sas.configs_of(SPEC)} for c in shipped)
    # The old rule took the 0 choice ("every core") for 1e-9: it never picked it for "inter-op = cores".
    assert all(c.inter_op_threads != 0 for c in legacy)


def test_the_model_seeded_entrant_plans_on_a_model_that_is_not_the_truth_then_measures_its_picks_first(
    truth: tuple[Path, list[dict]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, rows = truth
    monkeypatch.setitem(sas.VALIDATION, "tiny", sas.VALIDATION["mobilenet"])  # tiny has no live-grid validation
    space = sas.build_space(SPEC, rows)
    model = sas.SeedingModel(space, seed=0)
    configs = sas.configs_of(SPEC)
    truth_rps = {r["key"]: r["throughput_rps"] for r in rows}
    misses = [model.metrics(c)["throughput_rps"] / truth_rps[sas.key_of(c)] for c in configs]
    assert len({round(m, 6) for m in misses}) == len(configs)  # every config off by a draw of its own
    assert model.metrics(configs[3]) == sas.SeedingModel(space, seed=0).metrics(configs[3])  # one model per run
    assert model.metrics(configs[3]) != sas.SeedingModel(space, seed=1).metrics(configs[3])  # another run's differs

    plan = sas.make_plan(
        model.profile,
        sas.race_study(space, "autotune", 0),
        sas.dimensions(SPEC),
        sas.PROTOCOL,
        SPEC.cores,
        rng_seed=0,
        predict=model.metrics,
    )
    visited = sas.model_seeded_run(space, 0, space.size)
    picks = [sas.key_of(p.config) for p in plan.seeds if p.config != sas.ServingConfig()]
    assert picks and [p.key for p in visited[: 1 + len(picks)]] == [sas.key_of(sas.ServingConfig()), *picks]
    results = sas.race({SPEC.name: space}, ["model-seeded"], [0], {SPEC.name: 5 * space.size}, processes=1)
    assert results[SPEC.name]["model-seeded"].counts[0] <= space.size
