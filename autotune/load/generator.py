"""The load generator process: `python -m autotune.load.generator SPEC.json`.

It runs apart from the server and from the trial runner, so its CPU never
competes inside their processes and its own use can be reported. The runner
drives it over stdin with one JSON command per line:

  {"cmd": "level", "mode": "closed", "concurrency": 4}
  {"cmd": "level", "mode": "open", "rate": 50.0}
  {"cmd": "stop"}

and reads JSON events from stdout: `ready`, one `window` per measurement window,
`level_done` when a level hit its window cap. Closed loop: N clients, each with
its own connection, send back to back. Open loop: Poisson arrivals at a rate;
latency is measured from the intended send time, so a slow server cannot hide
its queueing (no coordinated omission). Only loopback targets are accepted.
"""

from __future__ import annotations

import base64
import collections
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

LOOPBACK = ("127.0.0.1", "localhost", "::1")
Sender = Callable[[], tuple[bool, str]]
# A client that sees an exception backs off, so a dead server is not hammered in a spin.
ERROR_BACKOFF_S = 0.05


def _rest_sender(url: str, body: bytes, timeout: float) -> Sender:
    # http.client rather than requests: requests' per-call overhead (~0.8 ms of CPU under the GIL) made
    # the generator, not the server, the limit for fast models (benchmarks/RESULTS.md, load generator).
    import http.client

    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    headers = {"Content-Type": "application/json"}
    conn: http.client.HTTPConnection | None = None

    def close() -> None:
        nonlocal conn
        if conn is not None:
            conn.close()
            conn = None

    def post() -> http.client.HTTPResponse:
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
        try:
            try:
                response = post()
            except (BrokenPipeError, ConnectionResetError):  # RemoteDisconnected is a ConnectionResetError
                close()
                if not reused:
                    raise
                response = post()  # the server closed an idle kept-alive connection: one fresh try, as urllib3
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


def _grpc_sender(target: str, body: bytes, timeout: float) -> Sender:
    import grpc

    # A private subchannel pool gives every client its own connection, as N real clients have.
    channel = grpc.insecure_channel(
        target,
        options=[("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 64 * 1024 * 1024)],
    )
    predict = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")

    def send() -> tuple[bool, str]:
        try:
            predict(body, timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code == grpc.StatusCode.UNAVAILABLE:
                time.sleep(ERROR_BACKOFF_S)
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return False, "timeout"
            return False, f"grpc_{code.name if code else 'error'}"
        return True, "ok"

    return send


class Generator:
    """Workers, records and windows for one target."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.body = base64.b64decode(spec["body_b64"])
        self.records: collections.deque[tuple[float, float, bool, str]] = collections.deque()
        self.mode = "idle"
        self.concurrency = 0
        self.generation = 0  # bumped per level so workers of an old level stand down
        self.workers: list[threading.Thread] = []
        self.arrivals: queue.Queue[tuple[int, float]] = queue.Queue()
        self.stopping = False
        self.lag_ms = 0.0
        self.process = psutil.Process()

    def _sender(self) -> Sender:
        timeout = float(self.spec.get("timeout_s", 30.0))
        if self.spec["protocol"] == "grpc":
            return _grpc_sender(self.spec["target"], self.body, timeout)
        return _rest_sender(self.spec["url"], self.body, timeout)

    def _ensure_workers(self, n: int) -> None:
        while len(self.workers) < n:
            index = len(self.workers)
            t = threading.Thread(target=self._work, args=(index,), daemon=True)
            self.workers.append(t)
            t.start()

    def _work(self, index: int) -> None:
        send = self._sender()
        while not self.stopping:
            if self.mode == "closed":
                if index >= self.concurrency:
                    time.sleep(0.01)
                    continue
                generation = self.generation
                start = time.monotonic()
                ok, kind = send()
                done = time.monotonic()
                if generation == self.generation:
                    self.records.append((done, done - start, ok, kind))
            elif self.mode == "open":
                try:
                    generation, intended = self.arrivals.get(timeout=0.05)
                except queue.Empty:
                    continue
                if generation != self.generation:
                    continue
                delay = intended - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                ok, kind = send()
                done = time.monotonic()
                if generation == self.generation:
                    self.records.append((done, done - intended, ok, kind))
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
            self.arrivals.put((generation, intended))

    def start_level(self, cmd: dict[str, Any]) -> None:
        """Switch to a new load level; records of the old one are dropped."""
        self.generation += 1
        self.mode = "idle"
        while not self.arrivals.empty():
            self.arrivals.get_nowait()
        self.records.clear()
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
        self.generation += 1
        self.mode = "idle"

    def take_window(self, start: float, end: float, carry: list[tuple[float, float, bool, str]]) -> dict[str, Any]:
        """Summarise requests that completed in [start, end)."""
        rows = carry[:]
        carry.clear()
        while self.records:
            rows.append(self.records.popleft())
        inside = [r for r in rows if start <= r[0] < end]
        carry.extend(r for r in rows if r[0] >= end)
        ok_latencies = [round(r[1] * 1000, 3) for r in inside if r[2]]
        kinds = collections.Counter(r[3] for r in inside if not r[2])
        duration = end - start
        return {
            "event": "window",
            "start": start,
            "end": end,
            "ok": len(ok_latencies),
            "errors": sum(kinds.values()),
            "error_kinds": dict(kinds),
            "throughput_rps": len(ok_latencies) / duration,
            "latency_ms": percentiles(ok_latencies),
            "latencies_ms": ok_latencies,
            "backlog": self.arrivals.qsize(),
            "lag_ms": round(self.lag_ms, 3),
        }


def _check_target(spec: dict[str, Any]) -> None:
    # A UNIX socket is local by construction; anything else must name a loopback host.
    hosts = [] if spec["target"].startswith("unix:") else [spec["target"].rsplit(":", 1)[0].strip("[]")]
    if "url" in spec:
        hosts.append(urlsplit(spec["url"]).hostname or "")
    for host in hosts:
        if host not in LOOPBACK:
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
    window_s = float(spec.get("window_s", 2.0))
    warmup_s = float(spec.get("warmup_s", 1.0))
    max_windows = int(spec.get("max_windows", 10))
    carry: list[tuple[float, float, bool, str]] = []
    window_start = window_end = 0.0
    emitted = 0
    cpu_mark = 0.0
    level_id = 0
    _emit({"event": "ready"})
    while time.monotonic() < deadline:
        active = gen.mode != "idle"
        timeout = max(0.0, window_end - time.monotonic()) if active else max(0.0, deadline - time.monotonic())
        try:
            cmd = commands.get(timeout=timeout)
        except queue.Empty:
            cmd = {"cmd": "_window"}
        if cmd is None or cmd["cmd"] == "stop":
            break
        if cmd["cmd"] == "idle":
            gen.idle()
        elif cmd["cmd"] == "level":
            gen.start_level(cmd)
            level_id = cmd.get("id", 0)
            time.sleep(warmup_s)  # warm-up: connections open, caches hot; its requests are dropped
            window_start = time.monotonic()
            window_end = window_start + window_s
            gen.records.clear()
            carry.clear()
            emitted = 0
            cpu_mark = _cpu_seconds(gen.process)
        elif cmd["cmd"] == "_window" and active:
            event = gen.take_window(window_start, window_end, carry)
            cpu_now = _cpu_seconds(gen.process)
            event["client_cpu_cores"] = round((cpu_now - cpu_mark) / (window_end - window_start), 4)
            cpu_mark = cpu_now
            event["index"] = emitted
            event["level"] = level_id
            _emit(event)
            emitted += 1
            window_start, window_end = window_end, window_end + window_s
            if emitted >= max_windows:
                gen.idle()
                _emit({"event": "level_done", "windows": emitted, "level": level_id})
    gen.stopping = True
    _emit({"event": "stopped"})
    return 0


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
