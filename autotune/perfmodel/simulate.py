"""A discrete-event model (SimPy) of one TF Serving server under load: what `bench` would report for a config.

The parts, each with the measured cost that drives it (perfmodel/profile.py):
- clients: N closed-loop clients, or Poisson arrivals at a rate (latency from the intended send time);
- transport: the load generator's CPU per request, the server's handling beyond the model (serialized
  by a GIL for the Python stand-in), and the rest of the round trip as a pure delay;
- the BasicBatchScheduler: one queue of batches, the last one open; a batch runs when full, or when its
  timeout since its first request has passed and a batch thread is free; a request that needs a new batch
  while max_enqueued_batches are queued is rejected; allowed_batch_sizes pad a batch up to the next size; a
  request that joins a batch first spends the batch op's own CPU (the stand-in's in-graph op: each request is a
  call of its own, where the profile's batch is one), beside other work;
- executions: at most inter-op threads at once (TF's pick: the schedulable cores), each a call of the
  (padded) batch with intra-op threads, whose cost is the profile's wall time and CPU; waiting calls are taken
  as Eigen's thread pool takes them (per-thread queues, idle threads steal the newest), not in arrival order;
- cores: every running piece of work asks for its CPU (cores busy when alone) and the host's cores are
  shared in proportion; the server's share is capped at its `cpus` allowance. The cores are planned as the
  stand-in plans them (cpulimit.plan_cpus): where the load generator gets cores of its own, it runs there;
  it is one Python process, so it never uses more than one core.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from autotune.cpulimit import plan_cpus
from autotune.errors import AutotuneError
from autotune.knobs import SAVEDMODEL, ServingConfig
from autotune.perfmodel.profile import CostCurve, DeviceCurve, Profile, Transport

# TF Serving handles at most this many requests at once per schedulable core, REST and gRPC alike
# (model_servers/server.h: http_num_threads and grpc_max_threads = 4 * NumSchedulableCPUs; the stand-in follows);
# the rest wait for a handler, so no more than these ever reach the batch queue.
HANDLER_THREADS_PER_CORE = 4
# The load generator is one Python process: its work is serialized by its GIL to one core at most.
CLIENT_CORES = 1.0


@dataclass(frozen=True)
class Load:
    """Closed loop at CONCURRENCY, or open loop at RATE requests/s."""

    concurrency: int | None = None
    rate: float | None = None

    def __post_init__(self) -> None:
        if (self.concurrency is None) == (self.rate is None):
            raise AutotuneError("give a concurrency or a rate, not both")
        if self.concurrency is not None and self.concurrency < 1:
            raise AutotuneError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.rate is not None and not self.rate > 0:
            raise AutotuneError(f"rate must be positive, got {self.rate}")


@dataclass(frozen=True)
class Prediction:
    """What the model predicts `bench` would measure, under bench's metric names."""

    throughput_rps: float
    latency_p50_ms: float
    latency_p90_ms: float
    latency_p99_ms: float
    cpu_cores: float
    error_rate: float
    mean_batch_size: float
    requests: int

    def to_json(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in self.__dict__.items()}


class CpuPool:
    """C cores shared by running work in proportion to what each asks for (fluid processor sharing).

    All server work progresses at one rate and all client work at another, so each class keeps a virtual
    clock (alone-seconds done so far) and a heap of finish marks on it: O(log n) per event."""

    def __init__(self, env: simpy.Environment, cores: float, server_cap: float, client_apart: bool = False) -> None:
        self.env, self.cores, self.cap = env, cores, min(server_cap, cores)
        self.client_apart = client_apart  # the generator runs on cores of its own, outside the server's
        # Per class (server, client): virtual clock, total demand, heap of (finish mark, seq, demand, event).
        self.clock = [0.0, 0.0]
        self.demand = [0.0, 0.0]
        self.heaps: list[list[tuple[float, int, float, simpy.Event]]] = [[], []]
        self.server_cpu_s = 0.0
        self._seq = 0
        self._last = 0.0
        self._timer_gen = 0

    def run(self, seconds: float, demand: float, server: bool = True) -> simpy.Event:
        """An event fired when work that takes SECONDS alone, using DEMAND cores, is done."""
        done = self.env.event()
        if seconds <= 0:
            done.succeed()
            return done
        self._advance()
        k = 0 if server else 1
        demand = max(demand, 1e-3)
        self._seq += 1
        heapq.heappush(self.heaps[k], (self.clock[k] + seconds, self._seq, demand, done))
        self.demand[k] += demand
        self._settle()
        return done

    def _rates(self) -> tuple[float, float]:
        """Progress per second of server and client work (1: as fast as alone)."""
        d_server, d_client = self.demand
        total = d_server + d_client
        if total <= 1e-12:
            return 1.0, 1.0
        if self.client_apart:
            s_alloc, c_alloc = min(d_server, self.cap), min(d_client, CLIENT_CORES)
        else:
            share = self.cores * d_server / total
            s_alloc = min(d_server, self.cap, max(share, self.cores - min(d_client, CLIENT_CORES)))
            c_alloc = min(d_client, CLIENT_CORES, self.cores - s_alloc)
        return (s_alloc / d_server if d_server > 1e-12 else 1.0), (c_alloc / d_client if d_client > 1e-12 else 1.0)

    def _advance(self) -> None:
        """Move the virtual clocks over the time since the last change, at the rates that held."""
        elapsed = self.env.now - self._last
        self._last = self.env.now
        if elapsed <= 0:
            return
        rs, rc = self._rates()
        self.clock[0] += elapsed * rs
        self.clock[1] += elapsed * rc
        self.server_cpu_s += elapsed * rs * self.demand[0]

    def _settle(self, _event: Any = None) -> None:
        """Finish the work that is done, then set one timer for the next finish (older timers go stale)."""
        self._advance()
        for k in (0, 1):
            heap = self.heaps[k]
            while heap and heap[0][0] <= self.clock[k] + 1e-12:
                _, _, demand, done = heapq.heappop(heap)
                self.demand[k] = max(self.demand[k] - demand, 0.0) if heap else 0.0
                done.succeed()
        self._timer_gen += 1
        if self.heaps[0] or self.heaps[1]:
            rates = self._rates()
            soonest = min((h[0][0] - self.clock[k]) / rates[k] for k, h in enumerate(self.heaps) if h)
            gen = self._timer_gen
            timer = self.env.timeout(max(soonest, 0.0))
            timer.callbacks.append(lambda e: self._settle() if gen == self._timer_gen else None)


class InterOpPool:
    """TF's inter-op pool as Eigen's thread pool runs calls: each thread has its own queue, a call from outside
    the pool joins the back of a random thread's queue, a thread takes its own queue's front and, when that is
    empty, steals the back (the newest) of another's. One thread is first come, first served; several are not."""

    def __init__(self, env: simpy.Environment, threads: int, rng: np.random.Generator) -> None:
        self.env, self.rng = env, rng
        self.queues: list[deque[simpy.Event]] = [deque() for _ in range(threads)]
        self.idle = list(range(threads))

    def acquire(self) -> simpy.Event:
        """An event fired with the thread that runs the call, once one takes it."""
        got = self.env.event()
        self.queues[int(self.rng.integers(len(self.queues)))].append(got)
        if self.idle:
            self._take(self.idle.pop(int(self.rng.integers(len(self.idle)))))
        return got

    def release(self, thread: int) -> None:
        self._take(thread)

    def _take(self, thread: int) -> None:
        own = self.queues[thread]
        if own:
            own.popleft().succeed(thread)
            return
        victims = [q for q in self.queues if q]
        if not victims:
            self.idle.append(thread)
            return
        victims[int(self.rng.integers(len(victims)))].pop().succeed(thread)


@dataclass(frozen=True)
class Batching:
    max_batch_size: int
    timeout_s: float
    threads: int
    max_enqueued: int
    allowed: tuple[int, ...]

    def padded(self, size: int) -> int:
        """The size a batch of SIZE runs at: the next allowed size (TF Serving pads up to it)."""
        for allowed in self.allowed:
            if allowed >= size:
                return allowed
        return size


class Server:
    """One server's scheduling: the batch queue, batch threads, inter-op slots, the GIL."""

    def __init__(
        self,
        env: simpy.Environment,
        pool: CpuPool,
        curve: CostCurve | DeviceCurve,
        config: ServingConfig,
        sched_cores: int,
        transport: Transport,
        rng: np.random.Generator,
        batch_op_ms: float = 0.0,
    ) -> None:
        self.env, self.pool, self.curve, self.transport, self.rng = env, pool, curve, transport, rng
        self.batch_op_ms = batch_op_ms
        self.intra = config.intra_op_threads or sched_cores
        self.slots = InterOpPool(env, config.inter_op_threads or sched_cores, rng)
        self.handlers = simpy.Resource(env, capacity=HANDLER_THREADS_PER_CORE * sched_cores)
        self.gil = simpy.Resource(env, capacity=1) if transport.gil else None
        # An accelerator runs one call at a time; a CPU curve has no such queue.
        self.device = simpy.Resource(env, capacity=1) if curve.serial_device else None
        self.batching = (
            Batching(
                config.max_batch_size,
                config.batch_timeout_micros / 1e6,
                config.num_batch_threads,
                config.max_enqueued_batches,
                config.allowed_batch_sizes,
            )
            if config.enable_batching
            else None
        )
        self.batches: deque[list[Any]] = deque()  # [opened at, [done events]]; the last one is open
        self._wake = env.event()
        self.batch_sizes: list[int] = []
        if self.batching:
            for _ in range(self.batching.threads):
                env.process(self._batch_thread())

    def _execute(self, size: int) -> Generator[Any, Any, None]:
        """One call of the model on SIZE instances, in an inter-op slot, sharing the cores."""
        wall_ms, cpu_ms = self.curve.cost(size, self.intra)
        spread = self.curve.spread(size, self.intra)
        factor = math.exp(self.rng.normal(0.0, spread) - spread**2 / 2) if spread > 0 else 1.0
        thread = yield self.slots.acquire()
        try:
            if self.device is None:
                yield self.pool.run(wall_ms * factor / 1000, cpu_ms / wall_ms)
                return
            with self.device.request() as device:
                yield device
                yield self.pool.run(wall_ms * factor / 1000, cpu_ms / wall_ms)
        finally:
            self.slots.release(thread)

    def handle(self) -> Generator[Any, Any, bool]:
        """One request inside the server, once a handler thread takes it; False when the batch queue rejected it."""
        with self.handlers.request() as handler:
            yield handler
            return (yield from self._handled())

    def _handled(self) -> Generator[Any, Any, bool]:
        t = self.transport
        held_ms = t.held_ms()
        if self.gil is not None:
            with self.gil.request() as held:
                yield held
                yield self.pool.run(held_ms / 1000, 1.0)
        if t.server_cpu_ms > held_ms:  # the served form's runtime around the call: beside other requests
            yield self.pool.run((t.server_cpu_ms - held_ms) / 1000, 1.0)
        if self.batching is None:
            yield from self._execute(1)
            return True
        if self.batch_op_ms > 0:
            yield self.pool.run(self.batch_op_ms / 1000, 1.0)
        done = self._submit()
        if done is None:
            return False
        yield done
        return True

    def _submit(self) -> simpy.Event | None:
        """Join the open batch, opening a new one if needed; None when the queue is full."""
        b = self.batching
        assert b is not None
        if not self.batches or len(self.batches[-1][1]) >= b.max_batch_size:
            if len(self.batches) >= b.max_enqueued:
                return None
            self.batches.append([self.env.now, []])
        done = self.env.event()
        self.batches[-1][1].append(done)
        if not self._wake.triggered:
            self._wake.succeed()
        return done

    def _batch_thread(self) -> Generator[Any, Any, None]:
        b = self.batching
        assert b is not None
        while True:
            if self.batches:
                opened, members = self.batches[0]
                ready = len(self.batches) > 1 or len(members) >= b.max_batch_size
                due = opened + b.timeout_s
                if ready or self.env.now >= due:
                    self.batches.popleft()
                    self.batch_sizes.append(len(members))
                    yield from self._execute(b.padded(len(members)))
                    for done in members:
                        done.succeed()
                    continue
                if self._wake.triggered:
                    self._wake = self.env.event()
                yield self._wake | self.env.timeout(due - self.env.now)
            else:
                if self._wake.triggered:
                    self._wake = self.env.event()
                yield self._wake


def simulate(
    profile: Profile,
    config: ServingConfig,
    load: Load,
    protocol: str = "rest",
    cores: float | None = None,
    requests: int = 2000,
    seed: int = 0,
    curve: CostCurve | DeviceCurve | None = None,
    transport: Transport | None = None,
    batch_op_cpu_ms: float | None = None,
) -> Prediction:
    """Predict CONFIG at LOAD on a host of CORES (the profile's by default) from REQUESTS simulated answers.

    CURVE, TRANSPORT and BATCH_OP_CPU_MS replace the profile's (a device curve; TF Serving's C++ transport, with no
    GIL; TF Serving's batching, which is not an op in the graph).
    The first tenth of the requests warms the model up (queues fill) and is not counted."""
    curve = curve or profile.curve(config.model_variant if config.model_variant != SAVEDMODEL else SAVEDMODEL)
    host = float(cores or profile.cpus)
    allowance, sched, apart = _cpu_plan(config.cpus, host)
    env = simpy.Environment()
    rng = np.random.default_rng(seed)
    pool = CpuPool(env, host, allowance, client_apart=apart)
    transport = transport or profile.transport_for(protocol, config.model_variant)
    batch_op_ms = profile.batch_op_cpu_ms if batch_op_cpu_ms is None else batch_op_cpu_ms
    server = Server(env, pool, curve, config, sched, transport, rng, max(batch_op_ms, 0.0))
    delay_s = max(transport.wall_ms - transport.client_cpu_ms - transport.server_cpu_ms, 0.0) / 1000
    warm = max(requests // 10, 1)
    log: list[tuple[float, float, bool]] = []  # (sent, answered, ok)
    finished = env.event()
    marks: dict[str, float] = {}

    def one(sent: float) -> Generator[Any, Any, None]:
        yield pool.run(transport.client_cpu_ms / 1000, 1.0, server=False)
        yield env.timeout(delay_s)
        ok = yield from server.handle()
        log.append((sent, env.now, ok))
        if len(log) == warm:
            marks["start"], marks["cpu"] = env.now, pool.server_cpu_s
        if len(log) == warm + requests and not finished.triggered:
            marks["end"], marks["cpu_end"] = env.now, pool.server_cpu_s
            finished.succeed()

    def client() -> Generator[Any, Any, None]:
        while not finished.triggered:
            yield from one(env.now)

    def arrivals(rate: float) -> Generator[Any, Any, None]:
        while not finished.triggered:
            env.process(one(env.now))
            yield env.timeout(rng.exponential(1.0 / rate))

    if load.concurrency is not None:
        for _ in range(load.concurrency):
            env.process(client())
    else:
        env.process(arrivals(float(load.rate)))  # type: ignore[arg-type]
    env.run(until=finished)
    return _summarize(log[warm : warm + requests], marks, server.batch_sizes)


def equivalence_key(config: ServingConfig, load: Load, host: float) -> tuple[Any, ...]:
    """A key two configs share only when simulate() treats them alike, event for event: the knobs as it reads
    them. Threads at 0 are the schedulable cores; the allowance is its core plan; in a closed loop of N clients
    no more than N requests are queued, so a queue bound past N and a batch size past N + 1 are never reached;
    a batch of one is ready at once, whatever its timeout. A plan simulates each key once."""
    allowance, sched, apart = _cpu_plan(config.cpus, host)
    batching: tuple[Any, ...] | None = None
    if config.enable_batching:
        clients = load.concurrency
        size, enqueued = config.max_batch_size, config.max_enqueued_batches
        if clients is not None:
            enqueued = min(enqueued, clients)
            if not config.allowed_batch_sizes:  # with padding, the size is what batches run at
                size = min(size, clients + 1)
        timeout = config.batch_timeout_micros if size > 1 else None
        batching = (size, timeout, config.num_batch_threads, enqueued, config.allowed_batch_sizes)
    threads = (config.intra_op_threads or sched, config.inter_op_threads or sched)
    return (config.model_variant, allowance, sched, apart, threads, batching)


def _cpu_plan(cpus: float, host: float) -> tuple[float, int, bool]:
    """The server's allowance, its schedulable cores, and whether the generator has cores of its own."""
    if cpus > host:
        raise AutotuneError(f"cpus={cpus:g} is more than the host's {host:g} cores")
    if not float(host).is_integer():  # a fractional host (--cores 2.5) has no core plan: all is shared
        allowance = cpus or host
        return allowance, math.ceil(allowance), False
    plan = plan_cpus(cpus, list(range(int(host))))
    # The stand-in pins whole cores, then a quota trims fractions.
    return plan.cpus or float(len(plan.server_cores)), len(plan.server_cores), bool(plan.client_cores)


def _summarize(log: list[tuple[float, float, bool]], marks: dict[str, float], sizes: list[int]) -> Prediction:
    span = max(marks["end"] - marks["start"], 1e-9)
    answered = [(a - s) * 1000 for s, a, ok in log if ok]
    lat = np.array(answered or [math.inf])
    errors = sum(1 for *_, ok in log if not ok)
    return Prediction(
        throughput_rps=len(answered) / span,
        latency_p50_ms=float(np.percentile(lat, 50)),
        latency_p90_ms=float(np.percentile(lat, 90)),
        latency_p99_ms=float(np.percentile(lat, 99)),
        cpu_cores=(marks["cpu_end"] - marks["cpu"]) / span,
        error_rate=errors / len(log),
        mean_batch_size=float(np.mean(sizes)) if sizes else 1.0,
        requests=len(log),
    )
