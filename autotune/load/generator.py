"""The load generator process: `python -m autotune.load.generator SPEC.json`.

It runs apart from the server and from the trial runner, so its CPU never
competes inside their processes and its own use can be reported. The runner
drives it over stdin with one JSON command per line:

  {"cmd": "level", "mode": "closed", "concurrency": 4}
  {"cmd": "level", "mode": "open", "rate": 50.0}
  {"cmd": "stop"}

and reads JSON events from stdout: `ready`, one `window` per measurement window,
`level_done` when a level hit its window cap. A level command may carry its own
`window_s`, `warmup_s` and `max_windows` (the model warm-up uses short windows).
Windows hold the requests *sent* in them (see `Generator`). Closed loop: N clients, each with
its own connection, send back to back. Open loop: Poisson arrivals at a rate;
latency is measured from the intended send time, so a slow server cannot hide
its queueing (no coordinated omission). Only loopback targets are accepted.
"""

from __future__ import annotations

import base64
import collections
import itertools
import json
import queue
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import psutil

from autotune.load.stats import percentiles
from autotune.loopback import LOOPBACK, host_of

Sender = Callable[[], tuple[bool, str]]
NextBody = Callable[[], tuple[str, bytes]]  # (REST path, body)
# A client that sees an exception backs off, so a dead server is not hammered in a spin.
ERROR_BACKOFF_S = 0.05


def round_robin(bodies: list[bytes], paths: list[str]) -> NextBody:
    """The (path, body) pairs in turn, shared by every client (next() on a count is atomic under the GIL)."""
    requests = list(zip(paths, bodies, strict=True))
    counter = itertools.count()
    return lambda: requests[next(counter) % len(requests)]


def _rest_sender(url: str, next_body: NextBody, timeout: float) -> Sender:
    # http.client rather than requests: requests' per-call overhead (~0.8 ms of CPU under the GIL) made
    # the generator, not the server, the limit for fast models (benchmarks/RESULTS.md, load generator).
    import http.client

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    headers = {"Content-Type": "application/json"}
    conn: http.client.HTTPConnection | None = None

    def close() -> None:
        nonlocal conn
        if conn is not None:
            conn.close()
            conn = None

    def post(path: str, body: bytes) -> http.client.HTTPResponse:
        nonlocal conn
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()  # the whole body: reading it is part of the latency
        if response.will_close:
            close()
        return response

    def send() -> tuple[bool, str]:
        reused = conn is not None
        path, body = next_body()
        try:
            try:
                response = post(path, body)
            except (BrokenPipeError, ConnectionResetError):  # RemoteDisconnected is a ConnectionResetError
                close()
                if not reused:
                    raise
                # The server closed an idle kept-alive connection: one fresh try, as urllib3.
                response = post(path, body)
        except TimeoutError:
            close()
            return False, "timeout"
        except (OSError, http.client.HTTPException):
            close()
            time.sleep(ERROR_BACKOFF_S)
            return False, "connection"
        ok = response.status == 200
        return ok, "ok" if ok else f"http_{response.status}"

    return send


def _grpc_sender(target: str, next_body: NextBody, timeout: float) -> Sender:
    import grpc

    # A private subchannel pool gives every client its own connection, as N real clients have.
    channel = grpc.insecure_channel(
        target,
        options=[("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 64 * 1024 * 1024)],
    )
    predict = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")

    def send() -> tuple[bool, str]:
        try:
            predict(next_body()[1], timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code == grpc.StatusCode.UNAVAILABLE:
                time.sleep(ERROR_BACKOFF_S)
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return False, "timeout"
            return False, f"grpc_{code.name if code else 'error'}"
        return True, "ok"

    return send


def drain_s(window_s: float, timeout_s: float) -> float:
    """How long a closed window waits for its last answers before censoring them (the runner waits as long)."""
    return min(timeout_s, max(2 * window_s, 2.0))


Record = tuple[float, float, bool, str]  # (sent, latency_s, ok, kind): sent is the intended time in open loop


class Generator:
    """Workers, records and windows for one target.

    A request belongs to the window in which it was sent (open loop: its intended send time), so a
    slow start or a stuck batch is charged to the window that caused it, never to a later one. A window
    is summarised once every request sent inside it has answered, or after a drain bound, when the ones
    still in flight are censored: counted for the percentiles with their elapsed time (a lower bound),
    never dropped. Open-loop arrivals not yet sent by then are counted as dropped. Throughput is the
    rate of answers arriving within the window.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        bodies = [base64.b64decode(b) for b in spec["bodies_b64"]]
        self.next_body = round_robin(bodies, spec.get("paths") or [urlsplit(spec["url"]).path or "/"] * len(bodies))
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        self.records: list[Record] = []
        self.completions: list[float] = []  # when answers arrived: throughput is a rate of completions
        self.inflight: dict[int, float] = {}  # worker index -> sent time of its request
        self.arrivals: collections.deque[tuple[int, float]] = collections.deque()
        self.closed_until = 0.0  # requests sent before this are accounted for; late answers are ignored
        self.mode = "idle"
        self.concurrency = 0
        self.generation = 0  # bumped per level so workers of an old level stand down
        self.level_answered = 0  # every answer of this level, warm-up included: what the server's own count sees
        self.workers: list[threading.Thread] = []
        self.stopping = False
        self.lag_ms = 0.0
        self.process = psutil.Process()

    def _sender(self) -> Sender:
        timeout = float(self.spec["timeout_s"])
        if self.spec["protocol"] == "grpc":
            return _grpc_sender(self.spec["target"], self.next_body, timeout)
        return _rest_sender(self.spec["url"], self.next_body, timeout)

    def _ensure_workers(self, n: int) -> None:
        while len(self.workers) < n:
            index = len(self.workers)
            t = threading.Thread(target=self._work, args=(index,), daemon=True)
            self.workers.append(t)
            t.start()

    def _next_arrival(self, index: int) -> tuple[int, float] | None:
        # Taking an arrival and marking it in flight is one step, so a window closing in between
        # finds it either queued (dropped) or in flight (censored), never lost.
        with self.arrived:
            if not self.arrivals:
                self.arrived.wait(0.05)
            if not self.arrivals or self.mode != "open":
                return None
            generation, intended = self.arrivals.popleft()
            if generation != self.generation or intended < self.closed_until:
                return None
            self.inflight[index] = intended
            return generation, intended

    def _finish(self, index: int, generation: int, sent: float, ok: bool, kind: str) -> None:
        done = time.monotonic()
        with self.lock:
            self.inflight.pop(index, None)
            if generation != self.generation:
                return
            self.level_answered += 1
            if ok:
                self.completions.append(done)
            if sent >= self.closed_until:
                self.records.append((sent, done - sent, ok, kind))

    def _work(self, index: int) -> None:
        send = self._sender()
        while not self.stopping:
            if self.mode == "closed":
                if index >= self.concurrency:
                    time.sleep(0.01)
                    continue
                with self.lock:
                    generation, sent = self.generation, time.monotonic()
                    self.inflight[index] = sent
                ok, kind = send()
                self._finish(index, generation, sent, ok, kind)
            elif self.mode == "open":
                taken = self._next_arrival(index)
                if taken is None:
                    continue
                generation, intended = taken
                delay = intended - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                ok, kind = send()
                self._finish(index, generation, intended, ok, kind)
            else:
                time.sleep(0.01)

    def _dispatch(self, generation: int, rate: float, seed: int) -> None:
        rng = random.Random(seed)
        intended = time.monotonic()
        while not self.stopping and generation == self.generation:
            intended += rng.expovariate(rate)
            delay = intended - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                self.lag_ms = max(self.lag_ms, -delay * 1000)
            with self.arrived:
                self.arrivals.append((generation, intended))
                self.arrived.notify()

    def start_level(self, cmd: dict[str, Any], measure_from: float) -> None:
        """Switch to a new load level; requests sent before MEASURE_FROM (its warm-up) are not measured."""
        with self.lock:
            self.generation += 1
            self.level_answered = 0
            self.mode = "idle"
            self.arrivals.clear()
            self.records.clear()
            self.completions.clear()
            self.closed_until = measure_from
        self.lag_ms = 0.0
        if cmd["mode"] == "closed":
            self.concurrency = int(cmd["concurrency"])
            self._ensure_workers(self.concurrency)
            self.mode = "closed"
        else:
            self._ensure_workers(int(cmd.get("max_inflight", self.spec.get("max_inflight", 64))))
            self.mode = "open"
            args = (self.generation, float(cmd["rate"]), int(self.spec.get("seed", 0)) + self.generation)
            threading.Thread(target=self._dispatch, args=args, daemon=True).start()

    def idle(self) -> None:
        with self.lock:
            self.generation += 1
            self.mode = "idle"
            self.arrivals.clear()

    def take_window(self, start: float, end: float, now: float, censor: bool) -> dict[str, Any] | None:
        """Summarise requests sent in [start, end); None while some are unanswered and CENSOR is off."""
        with self.lock:
            pending = [s for s in self.inflight.values() if s < end]
            queued = sum(1 for _, t in self.arrivals if t < end)
            if (pending or queued) and not censor:
                return None
            inside = [r for r in self.records if start <= r[0] < end]
            self.records = [r for r in self.records if r[0] >= end]
            answered = sum(1 for t in self.completions if start <= t < end)
            self.completions = [t for t in self.completions if t >= end]
            censored = [round((now - s) * 1000, 3) for s in pending if s >= start]
            dropped = 0
            while self.arrivals and self.arrivals[0][1] < end:
                _, t = self.arrivals.popleft()
                dropped += t >= start
            self.closed_until = max(self.closed_until, end)
        ok_latencies = [round(r[1] * 1000, 3) for r in inside if r[2]]
        kinds = collections.Counter(r[3] for r in inside if not r[2])
        if dropped:
            kinds["dropped"] = dropped
        duration = end - start
        # Censored requests are lower bounds: they count for the percentiles, not as answers.
        latencies = ok_latencies + censored
        return {
            "event": "window",
            "start": start,
            "end": end,
            "ok": len(ok_latencies),
            "errors": sum(kinds.values()),
            "censored": len(censored),
            "dropped": dropped,
            "error_kinds": dict(kinds),
            # Answers that arrived in the window, whenever sent: what the server delivered in it. (Under
            # overload the requests *sent* in a window are answered later, so counting them would report
            # the offered rate as throughput.)
            "throughput_rps": answered / duration,
            "offered_rps": (len(inside) + len(censored) + dropped) / duration if self.mode == "open" else None,
            "latency_ms": percentiles(latencies),
            "latencies_ms": latencies,
            "backlog": len(self.arrivals),
            "lag_ms": round(self.lag_ms, 3),
            "level_answered": self.level_answered,
        }


def _check_target(spec: dict[str, Any]) -> None:
    # A UNIX socket is local by construction; anything else must name a loopback host, or one the user named.
    hosts = [] if spec["target"].startswith("unix:") else [host_of(spec["target"])]
    if "url" in spec:
        hosts.append(urlsplit(spec["url"]).hostname or "")
    allowed = set(spec.get("allow_hosts") or [])
    for host in hosts:
        if host not in LOOPBACK and host not in allowed:
            raise SystemExit(f"autotune load generator: refusing non-loopback target {host!r}")


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def run(spec: dict[str, Any]) -> int:
    """Serve commands from stdin until stop, EOF or the lifetime bound."""
    _check_target(spec)
    gen = Generator(spec)
    commands: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            if line.strip():
                commands.put(json.loads(line))
        commands.put(None)  # EOF: the runner is gone, so are we

    threading.Thread(target=read_stdin, daemon=True).start()
    deadline = time.monotonic() + float(spec.get("max_lifetime_s", 3600))
    level: _Level | None = None
    _emit({"event": "ready"})
    while time.monotonic() < deadline:
        timeout = level.wait_s() if level else max(0.0, deadline - time.monotonic())
        try:
            cmd = commands.get(timeout=timeout)
        except queue.Empty:
            cmd = {"cmd": "_tick"}
        if cmd is None or cmd["cmd"] == "stop":
            break
        if cmd["cmd"] == "idle":
            gen.idle()
            level = None
        elif cmd["cmd"] == "level":
            level = _Level(gen, spec, cmd)
        elif cmd["cmd"] == "_tick" and level is not None and level.tick():
            gen.idle()
            _emit({"event": "level_done", "windows": level.emitted, "level": level.id})
            level = None
    gen.stopping = True
    _emit({"event": "stopped"})
    return 0


class _Level:
    """Window bookkeeping for one load level: boundaries, drain bound, client CPU per window."""

    def __init__(self, gen: Generator, spec: dict[str, Any], cmd: dict[str, Any]) -> None:
        self.gen = gen
        self.id = cmd.get("id", 0)
        # The runner's spec always carries the windows (autotune/windows.py declares their defaults).
        self.window_s = float(cmd.get("window_s", spec["window_s"]))
        self.max_windows = int(cmd.get("max_windows", spec["max_windows"]))
        warmup_s = float(cmd.get("warmup_s", spec["warmup_s"]))
        self.drain_s = drain_s(self.window_s, float(spec["timeout_s"]))
        # Warm-up: connections open, caches hot; requests sent before t0 are not measured.
        self.t0 = time.monotonic() + warmup_s
        gen.start_level(cmd, self.t0)
        self.emitted = 0
        self.cpu_mark = _cpu_seconds(gen.process)
        self.cpu_at = time.monotonic()

    def _bounds(self) -> tuple[float, float]:
        start = self.t0 + self.emitted * self.window_s
        return start, start + self.window_s

    def wait_s(self) -> float:
        """How long to wait for a command before the next window may be due (polls while draining)."""
        _, end = self._bounds()
        now = time.monotonic()
        return end - now if now < end else 0.02

    def tick(self) -> bool:
        """Emit the next window if it is complete; True when the level hit its window cap."""
        start, end = self._bounds()
        now = time.monotonic()
        if now < end:
            return False
        event = self.gen.take_window(start, end, now, censor=now >= end + self.drain_s)
        if event is None:
            return False
        cpu_now = _cpu_seconds(self.gen.process)
        event["client_cpu_cores"] = round((cpu_now - self.cpu_mark) / max(now - self.cpu_at, 1e-6), 4)
        self.cpu_mark, self.cpu_at = cpu_now, now
        event["index"] = self.emitted
        event["level"] = self.id
        _emit(event)
        self.emitted += 1
        return self.emitted >= self.max_windows


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python -m autotune.load.generator SPEC.json", file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    return run(spec)


if __name__ == "__main__":
    sys.exit(main())
