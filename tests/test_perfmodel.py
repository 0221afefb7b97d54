"""The performance model: the simulator against what queueing theory says, and the curves read from a profile."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import simpy

from autotune.errors import AutotuneError
from autotune.knobs import ServingConfig
from autotune.perfmodel.profile import BatchCost, CostCurve, DeviceCurve, Profile, Transport, serial_fraction
from autotune.perfmodel.simulate import Batching, InterOpPool, Load, equivalence_key, simulate


def synthetic_profile(
    fixed_ms: float = 10.0,
    per_item_ms: float = 2.0,
    speedup: float = 1.6,
    transport_ms: float = 1.0,
    gil: bool = False,
    host_fingerprint: str = "test-host",
) -> Profile:
    """A profile with an exact affine cost curve, one-thread calls busy one core, two-thread calls SPEEDUP faster."""
    points = []
    for threads, factor in ((1, 1.0), (2, 1 / speedup)):
        for batch in (1, 2, 4, 8, 16, 32):
            wall = (fixed_ms + per_item_ms * batch) * factor
            cpu = wall * (1.0 if threads == 1 else speedup)
            points.append(BatchCost("savedmodel", threads, batch, wall, (wall, wall), cpu, 5, 0.0))
    transport = (Transport("rest", transport_ms, 0.0, 0.0, gil), Transport("grpc", transport_ms, 0.0, 0.0, gil))
    return Profile("synthetic", "hash", host_fingerprint, 2, tuple(points), transport)


def test_one_client_waits_for_the_transport_and_one_call_per_request() -> None:
    p = synthetic_profile()
    pred = simulate(p, ServingConfig(), Load(concurrency=1))
    call_ms = (10.0 + 2.0) / 1.6  # TF's default: intra-op threads = the 2 cores
    assert pred.throughput_rps == pytest.approx(1000 / (1.0 + call_ms), rel=0.01)
    assert pred.latency_p50_ms == pytest.approx(1.0 + call_ms, rel=0.01)
    assert pred.error_rate == 0.0


def test_a_batch_timeout_is_waited_out_when_too_few_requests_come_to_fill_the_batch() -> None:
    p = synthetic_profile()
    batched = ServingConfig(enable_batching=True, max_batch_size=8, batch_timeout_micros=20_000, num_batch_threads=1)
    pred = simulate(p, batched, Load(concurrency=1))
    assert pred.latency_p50_ms == pytest.approx(1.0 + 20.0 + 12.0 / 1.6, rel=0.02)
    assert pred.mean_batch_size == pytest.approx(1.0)


def test_concurrent_requests_are_merged_into_batches_up_to_the_maximum() -> None:
    p = synthetic_profile()
    batched = ServingConfig(enable_batching=True, max_batch_size=4, batch_timeout_micros=50_000, num_batch_threads=1)
    pred = simulate(p, batched, Load(concurrency=16))
    assert pred.mean_batch_size == pytest.approx(4.0, rel=0.05)


def test_a_full_batch_queue_rejects_requests() -> None:
    p = synthetic_profile()
    tight = ServingConfig(
        enable_batching=True, max_batch_size=1, batch_timeout_micros=0, num_batch_threads=1, max_enqueued_batches=1
    )
    roomy = tight.replace(max_enqueued_batches=1000)
    assert simulate(p, tight, Load(concurrency=8)).error_rate > 0.3
    assert simulate(p, roomy, Load(concurrency=8)).error_rate == 0.0


def test_allowed_batch_sizes_pad_a_batch_up_to_the_next_size() -> None:
    b = Batching(max_batch_size=8, timeout_s=0.0, threads=1, max_enqueued=10, allowed=(2, 4, 8))
    assert [b.padded(n) for n in (1, 2, 3, 5, 8)] == [2, 2, 4, 8, 8]
    assert Batching(8, 0.0, 1, 10, ()).padded(3) == 3


def test_single_threaded_calls_side_by_side_use_both_cores_and_no_more() -> None:
    p = synthetic_profile(transport_ms=0.0)
    one_at_a_time = simulate(p, ServingConfig(intra_op_threads=1, inter_op_threads=1), Load(concurrency=8))
    side_by_side = simulate(p, ServingConfig(intra_op_threads=1, inter_op_threads=4), Load(concurrency=8))
    assert one_at_a_time.throughput_rps == pytest.approx(1000 / 12.0, rel=0.02)
    assert side_by_side.throughput_rps == pytest.approx(2 * 1000 / 12.0, rel=0.02)  # 4 calls share 2 cores
    assert side_by_side.cpu_cores == pytest.approx(2.0, rel=0.02)


def test_a_cpu_allowance_caps_the_server_cores() -> None:
    p = synthetic_profile(transport_ms=0.0)
    config = ServingConfig(intra_op_threads=1, inter_op_threads=4)
    full = simulate(p, config, Load(concurrency=8))
    half = simulate(p, config.replace(cpus=1.0), Load(concurrency=8))
    assert half.cpu_cores == pytest.approx(1.0, rel=0.02)
    assert half.throughput_rps == pytest.approx(full.throughput_rps / 2, rel=0.03)


def test_from_four_cores_an_unlimited_server_leaves_one_core_to_the_load_generator() -> None:
    p = synthetic_profile(transport_ms=0.0)
    wide = ServingConfig(intra_op_threads=1, inter_op_threads=16)
    pred = simulate(p, wide, Load(concurrency=32), cores=16)
    assert pred.cpu_cores == pytest.approx(15.0, rel=0.02)  # as cpulimit.plan_cpus pins it
    assert pred.throughput_rps == pytest.approx(15 * 1000 / 12.0, rel=0.03)
    pinned = simulate(p, wide.replace(cpus=16.0), Load(concurrency=32), cores=16)
    assert pinned.cpu_cores == pytest.approx(16.0, rel=0.02)  # an allowance of every core: they share


def test_the_load_generator_is_one_process_and_never_uses_more_than_one_core() -> None:
    p = synthetic_profile(fixed_ms=0.1, per_item_ms=0.0, transport_ms=0.0)
    heavy_client = Transport("rest", 4.0, 0.0, 4.0, gil=False)
    config = ServingConfig(intra_op_threads=1, inter_op_threads=2)
    pred = simulate(p, config, Load(concurrency=16), cores=8, transport=heavy_client)
    assert pred.throughput_rps == pytest.approx(1000 / 4.0, rel=0.05)  # 4 ms of client CPU each, one core


def test_a_batched_request_pays_the_batch_ops_cpu_and_an_unbatched_one_does_not() -> None:
    p = synthetic_profile()
    priced = dataclasses.replace(p, batch_op_cpu_ms=2.0)
    load = Load(concurrency=8)
    batched = ServingConfig(True, 4, 1_000_000, 2, intra_op_threads=1, inter_op_threads=2)  # batches always full

    def cpu_ms_per_request(profile: Profile, config: ServingConfig) -> float:
        pred = simulate(profile, config, load)
        return 1000 * pred.cpu_cores / pred.throughput_rps

    before, after = cpu_ms_per_request(p, batched), cpu_ms_per_request(priced, batched)
    assert after - before == pytest.approx(2.0, rel=0.1)
    assert simulate(priced, batched, load).throughput_rps < simulate(p, batched, load).throughput_rps
    unbatched = ServingConfig(intra_op_threads=1, inter_op_threads=2)
    assert simulate(priced, unbatched, load) == simulate(p, unbatched, load)
    # TF Serving batches outside the graph: a caller can price its batching at nothing.
    assert simulate(priced, batched, load, batch_op_cpu_ms=0.0) == simulate(p, batched, load)


def test_a_python_servers_gil_serializes_request_handling() -> None:
    fast = synthetic_profile(fixed_ms=0.1, per_item_ms=0.0, transport_ms=0.0)
    handled = Transport("rest", 4.0, 4.0, 0.0, gil=True)
    pred = simulate(fast, ServingConfig(intra_op_threads=1, inter_op_threads=4), Load(concurrency=8), transport=handled)
    assert pred.throughput_rps == pytest.approx(1000 / (4.0 + 0.1 / 4), rel=0.05)  # one handler at a time


def _with_variant(base: Profile, variant_cpu_ms: float, savedmodel_cpu_ms: float) -> Profile:
    """BASE with a one-thread variant as fast as its SavedModel and gRPC residuals measured while each served."""
    from dataclasses import replace

    extra = tuple(replace(p, variant="tflite_fp16") for p in base.points if p.threads == 1)
    transport = (
        Transport("grpc", 1.0, savedmodel_cpu_ms, 0.0, gil=True),
        Transport("grpc", 1.0, variant_cpu_ms, 0.0, gil=True, variant="tflite_fp16"),
    )
    return replace(base, points=base.points + extra, transport=transport)


def test_only_the_handling_every_served_form_shares_holds_the_gil() -> None:
    p = _with_variant(synthetic_profile(), variant_cpu_ms=3.0, savedmodel_cpu_ms=30.0)
    own = p.transport_for("grpc", "tflite_fp16")
    assert (own.server_cpu_ms, own.held_ms()) == (3.0, 3.0)
    savedmodel = p.transport_for("grpc")
    assert (savedmodel.server_cpu_ms, savedmodel.held_ms()) == (30.0, 3.0)  # the other 27 ms run beside requests
    assert p.transport_for("grpc", "xla").server_cpu_ms == 30.0  # a form never measured: the SavedModel's
    from dataclasses import replace

    alone = replace(p, transport=p.transport[:1])
    assert alone.transport_for("grpc").held_ms() == 30.0  # nothing but the SavedModel measured: all of it, as before
    assert alone.lacks_transport("tflite_fp16") and not p.lacks_transport("tflite_fp16")  # a cached one to grow
    assert not replace(p, transport=()).lacks_transport("savedmodel")  # only variants are grown


def test_a_served_form_whose_runtime_costs_little_is_not_capped_by_the_savedmodels_residual() -> None:
    # Two one-call slots on two cores, 10 ms calls: the variant's 3 ms residual leaves it near 2 / 13 ms, where the
    # SavedModel's 30 ms, were it all under the GIL, would cap every form at 1 / 30 ms.
    p = _with_variant(synthetic_profile(fixed_ms=10.0, per_item_ms=0.0), variant_cpu_ms=3.0, savedmodel_cpu_ms=30.0)
    config = ServingConfig(model_variant="tflite_fp16", intra_op_threads=1, inter_op_threads=2)
    pred = simulate(p, config, Load(concurrency=8), protocol="grpc")
    assert pred.throughput_rps == pytest.approx(2 * 1000 / 13.0, rel=0.08)
    savedmodel = simulate(p, config.replace(model_variant="savedmodel"), Load(concurrency=8), protocol="grpc")
    assert savedmodel.throughput_rps == pytest.approx(2 * 1000 / 40.0, rel=0.08)  # 40 ms of CPU each, two cores


def test_an_accelerator_runs_one_call_at_a_time_and_batches_amortize_its_fixed_cost() -> None:
    p = synthetic_profile(transport_ms=0.0)
    gpu = DeviceCurve(fixed_ms=5.0, per_item_ms=0.5, host_cpu=0.1)
    unbatched = simulate(p, ServingConfig(inter_op_threads=8), Load(concurrency=16), curve=gpu)
    batched = ServingConfig(enable_batching=True, max_batch_size=16, batch_timeout_micros=1000, num_batch_threads=2)
    assert unbatched.throughput_rps == pytest.approx(1000 / 5.5, rel=0.02)
    assert simulate(p, batched, Load(concurrency=16), curve=gpu).throughput_rps > 3 * unbatched.throughput_rps


def test_open_loop_below_capacity_serves_the_offered_rate() -> None:
    p = synthetic_profile()
    pred = simulate(p, ServingConfig(), Load(rate=20.0), requests=1500)
    assert pred.throughput_rps == pytest.approx(20.0, rel=0.1)
    assert pred.latency_p99_ms > pred.latency_p50_ms  # Poisson arrivals queue now and then


def test_a_load_is_a_concurrency_or_a_rate_and_a_sane_one() -> None:
    for bad in ({}, {"concurrency": 2, "rate": 3.0}, {"concurrency": 0}, {"rate": -1.0}):
        with pytest.raises(AutotuneError):
            Load(**bad)


def test_curves_interpolate_between_measured_batches_and_extrapolate_the_last_slope() -> None:
    curve = synthetic_profile().curve()
    assert curve.cost(3, 1)[0] == pytest.approx(10 + 2 * 3)
    assert curve.cost(100, 1)[0] == pytest.approx(10 + 2 * 100)


def test_threads_beyond_the_measured_follow_amdahls_law_fitted_on_the_measured() -> None:
    curve = synthetic_profile(speedup=1.6).curve()
    serial = serial_fraction(12.0, 1, 12.0 / 1.6, 2)
    assert serial == pytest.approx(0.25)  # 1.6x on 2 threads is Amdahl with a quarter serial
    walls = [curve.cost(1, t)[0] for t in (2, 4, 8, 64)]
    assert walls == sorted(walls, reverse=True)
    assert walls[-1] > 12.0 * serial  # never faster than the serial part


def test_a_profile_round_trips_through_json_and_a_malformed_one_is_one_error() -> None:
    p = synthetic_profile()
    assert Profile.from_json(p.to_json()) == p
    measured = dataclasses.replace(p, batch_op_cpu_ms=0.8, batch_op_ci95_ms=(0.5, 1.1))
    assert Profile.from_json(measured.to_json()) == measured
    older = {k: v for k, v in p.to_json().items() if not k.startswith("batch_op")}  # before the op was measured
    assert Profile.from_json(older).batch_op_cpu_ms == 0.0
    for broken in ({}, {"format": 1}, {**p.to_json(), "points": [{"batch": 1}]}, []):
        with pytest.raises(AutotuneError) as err:
            Profile.from_json(broken)  # type: ignore[arg-type]
        assert "\n" not in str(err.value)
    with pytest.raises(AutotuneError, match="no variant"):
        p.curve("tflite_int8")


def _order_served(threads: int, seed: int) -> list[int]:
    """The order in which 3 calls, queued behind THREADS busy threads, are taken as the threads free up."""
    env = simpy.Environment()
    pool = InterOpPool(env, threads, np.random.default_rng(seed))
    busy = [pool.acquire() for _ in range(threads)]
    waiting = [pool.acquire() for _ in range(3)]
    served: list[int] = []
    for i, got in enumerate(waiting):
        got.callbacks.append(lambda e, i=i: served.append(i))
    free = [b.value for b in busy]
    while len(served) < 3:
        thread = free.pop(0) if free else waiting[served[-1]].value
        pool.release(thread)
        env.run()
    return served


def test_one_inter_op_thread_serves_calls_first_come_first_served_several_do_not() -> None:
    # Eigen's pool: a call joins a random thread's queue; an idle thread steals another queue's newest call.
    assert {tuple(_order_served(1, seed)) for seed in range(20)} == {(0, 1, 2)}
    orders = {tuple(_order_served(2, seed)) for seed in range(20)}
    assert any(order[0] != 0 for order in orders)  # a newer call overtook the oldest


def test_calls_overtaking_each_other_widen_the_latency_tail() -> None:
    p = synthetic_profile(transport_ms=0.0)  # calls with no spread of their own: any spread is the order
    in_order = simulate(p, ServingConfig(intra_op_threads=2, inter_op_threads=1), Load(concurrency=8))
    overtaken = simulate(p, ServingConfig(intra_op_threads=1, inter_op_threads=2), Load(concurrency=8))
    assert in_order.latency_p99_ms / in_order.latency_p50_ms == pytest.approx(1.0, abs=0.01)
    assert overtaken.latency_p99_ms / overtaken.latency_p50_ms > 1.3


def test_simulation_is_deterministic_for_a_seed() -> None:
    p = synthetic_profile()
    config = ServingConfig(enable_batching=True, max_batch_size=8, batch_timeout_micros=2000, num_batch_threads=2)
    a = simulate(p, config, Load(rate=50.0), seed=3)
    assert a == simulate(p, config, Load(rate=50.0), seed=3)
    assert not math.isnan(a.latency_p99_ms)


def test_cost_curve_needs_no_more_than_one_point_per_thread_count() -> None:
    curve = CostCurve([BatchCost("savedmodel", 1, 4, 8.0, (8.0, 8.0), 8.0, 3)])
    assert curve.cost(8, 1)[0] == pytest.approx(16.0)  # proportional from the one point
    assert curve.cost(8, 4)[0] == pytest.approx(16.0)  # one thread count: no speed-up to carry on


def test_no_more_requests_reach_the_batch_queue_than_the_server_has_handler_threads() -> None:
    p = synthetic_profile()
    waits = ServingConfig(enable_batching=True, max_batch_size=64, batch_timeout_micros=20_000, num_batch_threads=1)
    pred = simulate(p, waits, Load(concurrency=32))
    assert pred.mean_batch_size == pytest.approx(8.0, rel=0.05)  # 4 handler threads per core, 2 cores


def test_configs_the_simulation_reads_alike_share_a_key_and_get_the_same_answer() -> None:
    p, load = synthetic_profile(), Load(concurrency=4)
    batched = ServingConfig(
        enable_batching=True, max_batch_size=4, batch_timeout_micros=2000, num_batch_threads=2, max_enqueued_batches=64
    )

    def key(config: ServingConfig, at: Load = load) -> tuple:
        return equivalence_key(config, at, 2.0)

    alike = [
        (ServingConfig(), ServingConfig(intra_op_threads=2, inter_op_threads=2)),  # 0 threads: the 2 cores
        (batched, dataclasses.replace(batched, max_enqueued_batches=4)),  # 4 clients queue no more than 4
        (dataclasses.replace(batched, max_batch_size=8), dataclasses.replace(batched, max_batch_size=64)),
        (
            dataclasses.replace(batched, max_batch_size=1, batch_timeout_micros=32),
            dataclasses.replace(batched, max_batch_size=1, batch_timeout_micros=100_000),
        ),
    ]
    for a, b in alike:
        assert key(a) == key(b)
        assert simulate(p, a, load, requests=300) == simulate(p, b, load, requests=300)
    # The rules' edges: a bound the clients can reach, a batch they can fill, a timeout, a thread count.
    assert key(dataclasses.replace(batched, max_enqueued_batches=3)) != key(batched)
    assert key(dataclasses.replace(batched, batch_timeout_micros=5000)) != key(batched)
    for a, b in [
        (batched, dataclasses.replace(batched, max_batch_size=5)),
        (ServingConfig(), ServingConfig(intra_op_threads=1)),
    ]:
        assert key(a) != key(b)
        assert simulate(p, a, load, requests=300) != simulate(p, b, load, requests=300)
    assert key(batched, Load(rate=50.0)) != key(dataclasses.replace(batched, max_enqueued_batches=4), Load(rate=50.0))


def test_a_profile_budget_below_the_jobs_shortens_the_transport_windows_in_proportion_and_never_below_a_floor() -> None:
    from autotune.perfmodel.measure import FULL_WINDOWS_BUDGET_S, MIN_WINDOW_S, TRANSPORT_WINDOW_S, transport_window_s

    assert transport_window_s(20.0) == transport_window_s(FULL_WINDOWS_BUDGET_S) == TRANSPORT_WINDOW_S  # as validated
    assert transport_window_s(FULL_WINDOWS_BUDGET_S / 2) == TRANSPORT_WINDOW_S / 2
    assert transport_window_s(1.0) == MIN_WINDOW_S


def test_a_rough_profiles_transport_levels_stop_sooner_and_are_not_measured_again_a_full_one_is_as_validated():
    from autotune.measure import MeasureSettings
    from autotune.perfmodel.measure import FULL_WINDOWS_BUDGET_S, ROUGH_MAX_WINDOWS, transport_settings

    full = transport_settings("grpc", 4, FULL_WINDOWS_BUDGET_S)
    assert (full.protocol, full.concurrency, full.window_s, full.warmup_s) == ("grpc", 4, 1.0, 0.5)
    assert full.max_windows == MeasureSettings().max_windows and full.remeasure_unstable
    rough = transport_settings("rest", 1, 1.0)
    assert (rough.window_s, rough.warmup_s) == (0.25, 0.25)
    assert rough.max_windows == ROUGH_MAX_WINDOWS < full.max_windows and not rough.remeasure_unstable
    assert not full.measure_unloaded and not rough.measure_unloaded  # one level: the concurrency asked for
