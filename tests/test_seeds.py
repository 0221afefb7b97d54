"""The autotune sampler's informed first trials: derived from host and load, fit to the study's space."""

from __future__ import annotations

import optuna

from autotune.knobs import ServingConfig
from autotune.seeds import heuristic_seeds
from autotune.space import Dimension, Host, build_space, default_space, params_of, suggest
from autotune.spec import KnobSpec


def test_seeds_follow_the_batching_guide_for_the_host_and_load():
    seeds = heuristic_seeds(default_space(Host(4, 0)), cpus=4, concurrency=6)
    first = seeds[0]
    assert first.enable_batching and first.max_batch_size == 8  # the concurrency, rounded up to a power of 2
    assert first.num_batch_threads == 4 and first.intra_op_threads == 1  # one batch thread per core
    assert first.inter_op_threads == 4  # ...whose single-threaded ops run side by side, one per core
    assert any(not s.enable_batching and s.intra_op_threads == 1 for s in seeds)
    assert ServingConfig() not in seeds  # the defaults are trial 0 already
    assert len(set(seeds)) == len(seeds)


def test_no_seed_confines_the_server_to_one_core():
    # intra 1 with inter 1 runs one op at a time on one thread: on ResNet50 (2 cores), half the throughput.
    for cpus in (2, 4, 16):
        for seed in heuristic_seeds(default_space(Host(cpus, 0)), cpus=cpus, concurrency=8):
            assert (seed.intra_op_threads, seed.inter_op_threads) != (1, 1)


def test_seeds_stay_inside_a_narrowed_space_and_honour_fixed_knobs():
    space = build_space(
        {"max_batch_size": KnobSpec(low=1, high=4, log=True), "max_enqueued_batches": KnobSpec(value=7)}, Host(8, 0)
    )
    seeds = heuristic_seeds(space, cpus=8, concurrency=64)
    batching = [s for s in seeds if s.enable_batching]
    assert batching and all(s.max_batch_size <= 4 and s.max_enqueued_batches == 7 for s in batching)
    assert all(s.intra_op_threads <= 8 and s.inter_op_threads <= 8 for s in seeds)


def test_with_batching_fixed_off_only_thread_seeds_remain():
    space = default_space(Host(2, 0))
    space["enable_batching"] = Dimension("enable_batching", fixed=False)
    seeds = heuristic_seeds(space, cpus=2, concurrency=8)
    assert seeds and all(not s.enable_batching for s in seeds)


def test_every_seed_round_trips_through_optuna_as_the_tuner_enqueues_it():
    space = build_space({"max_batch_size": KnobSpec(low=1, high=32, log=True)}, Host(2, 0))
    study = optuna.create_study(directions=["maximize", "minimize"])
    seeds = heuristic_seeds(space, cpus=2, concurrency=8)
    for seed in seeds:
        study.enqueue_trial(params_of(seed, space))
    asked = [suggest(study.ask(), space) for _ in seeds]
    assert asked == seeds


def test_a_zero_choice_is_read_as_tf_serving_reads_it_when_seeds_are_fitted():
    cores = 16
    space = {
        "enable_batching": Dimension("enable_batching", choices=(False, True)),
        "max_batch_size": Dimension("max_batch_size", choices=(4, 16, 64)),
        "batch_timeout_micros": Dimension("batch_timeout_micros", choices=(0, 1000, 10000)),
        "num_batch_threads": Dimension("num_batch_threads", choices=(1, 4, 8, 16)),
        "intra_op_threads": Dimension("intra_op_threads", choices=(0, 1, 4, 8)),
        "inter_op_threads": Dimension("inter_op_threads", choices=(0, 1, 4, 8)),
    }
    seeds = heuristic_seeds(space, cores, 32)
    guide = seeds[0]  # one batch thread and one inter-op thread per core, no wait
    assert (guide.inter_op_threads, guide.batch_timeout_micros) == (0, 0)  # 0: every core; 0 µs: no wait
    assert len({(s.batch_timeout_micros, s.num_batch_threads, s.intra_op_threads) for s in seeds}) == len(seeds)
    assert all(not (s.intra_op_threads == 1 and s.inter_op_threads == 1) for s in seeds)
