"""The load generator against a real socket server whose service time we control."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from autotune.load.client import LoadGenerator, LoadSpec
from autotune.traffic.payload import Payload

SERVICE_S = 0.02  # one request at a time, 20 ms each: capacity 50 requests/s


class _Slow(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else the split header/body writes stall on delayed ACKs
    lock = threading.Lock()
    seen: ClassVar[list[bytes]] = []  # request bodies in the order served

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:  # a single-worker server: requests queue here
            self.seen.append(body)
            time.sleep(SERVICE_S)
        body = b'{"predictions": [1]}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def slow_server():
    from socketserver import ThreadingMixIn

    class Server(ThreadingMixIn, HTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), _Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def _windows(gen: LoadGenerator, level: int, n: int) -> list[dict]:
    out = []
    while len(out) < n:
        ev = gen.next_event(30)
        if ev["event"] == "window" and ev["level"] == level:
            out.append(ev)
    return out


def _generator(port: int, tmp_path: Path, bodies: tuple[bytes, ...] = (b'{"instances": [1]}',)) -> LoadGenerator:
    spec = LoadSpec("rest", port, port, "m", window_s=1.0, warmup_s=0.2, max_windows=10, max_lifetime_s=120)
    gen = LoadGenerator(spec, [Payload(body, b"") for body in bodies], tmp_path)
    gen.wait_ready()
    return gen


def _measure(
    port: int, tmp_path: Path, start: Callable[[LoadGenerator], None], n: int, bodies: tuple[bytes, ...] = ()
) -> list[dict]:
    """Start a generator, begin level 1 with START, collect N windows, stop it on every path."""
    gen = _generator(port, tmp_path, *([bodies] if bodies else []))
    try:
        start(gen)
        return _windows(gen, 1, n)
    finally:
        gen.stop()


def test_closed_loop_latency_is_the_service_time(slow_server, tmp_path):
    windows = _measure(slow_server, tmp_path, lambda gen: gen.closed_loop(1, 1), 2)
    w = windows[-1]
    assert w["errors"] == 0
    assert 30 < w["throughput_rps"] <= 55
    assert SERVICE_S * 1000 <= w["latency_ms"]["p50"] < SERVICE_S * 1000 * 2


def test_a_request_files_bodies_are_sent_round_robin_over_every_client(slow_server, tmp_path):
    bodies = tuple(b'{"instances": [%d]}' % i for i in range(3))
    _Slow.seen.clear()
    _measure(slow_server, tmp_path, lambda gen: gen.closed_loop(2, 1), 1, bodies)
    seen = list(_Slow.seen)
    assert len(seen) > 20
    counts = [seen.count(body) for body in bodies]
    assert max(counts) - min(counts) <= 2  # in turn: at most the requests in flight apart
    assert set(seen) == set(bodies)


@pytest.mark.slow
def test_open_loop_over_capacity_counts_queueing_no_coordinated_omission(slow_server, tmp_path):
    """At 80/s offered to a 50/s server the backlog grows; latency from intended send time shows it."""
    windows = _measure(slow_server, tmp_path, lambda gen: gen.open_loop(80.0, 1), 3)
    p99s = [w["latency_ms"]["p99"] for w in windows]
    assert p99s[-1] > 10 * SERVICE_S * 1000  # a closed-loop client would report ~20 ms here
    assert p99s[-1] > p99s[0]  # and it keeps growing while the queue does
    assert all(w["throughput_rps"] <= 55 for w in windows)


def test_dead_target_counts_errors_and_does_not_spin(tmp_path):
    from autotune.measure import free_ports

    (port,) = free_ports(1)
    (w,) = _measure(port, tmp_path, lambda gen: gen.closed_loop(2, 1), 1)
    assert w["ok"] == 0 and w["errors"] > 0
    assert w["error_kinds"].get("connection", 0) == w["errors"]
    assert w["errors"] < 2 / 0.05 * 1.5 + 5  # bounded by the back-off, not a busy loop


def test_non_loopback_targets_are_refused(tmp_path):
    import json
    import subprocess
    import sys

    spec = tmp_path / "spec.json"
    doc = {"protocol": "rest", "target": "10.0.0.1:80", "url": "http://10.0.0.1/", "bodies_b64": []}
    spec.write_text(json.dumps(doc))
    proc = subprocess.run(
        [sys.executable, "-m", "autotune.load.generator", str(spec)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0 and "non-loopback" in proc.stderr


class _Closing(BaseHTTPRequestHandler):
    """Keep-alive, but every connection ends after 3 answers: said in a header, or silently (as an
    idle-timeout close that races the next request looks to the client)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    announce = True

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        self.answered = 0

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.answered += 1
        last = self.answered == 3
        body = b'{"predictions": [1]}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        if last and self.announce:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = last


@pytest.mark.parametrize("announce", [True, False], ids=["connection-close-header", "silent-close"])
def test_connections_the_server_closes_are_reopened_without_errors(tmp_path, announce):
    from socketserver import ThreadingMixIn

    class Server(ThreadingMixIn, HTTPServer):
        daemon_threads = True

    handler = type("Handler", (_Closing,), {"announce": announce})
    server = Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (w,) = _measure(server.server_address[1], tmp_path, lambda gen: gen.closed_loop(2, 1), 1)
    finally:
        server.shutdown()
    assert w["ok"] > 30 and w["errors"] == 0, w.get("error_kinds")
