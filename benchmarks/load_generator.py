"""Load generator ceiling: how many requests/s autotune's generator drives against a trivial endpoint.

REST: nginx (worker_processes 1, 127.0.0.1 only) answers every POST with a fixed TF-Serving-shaped body,
so the endpoint costs almost nothing; our generator, wrk and hey drive the same URL, closed loop, at
several concurrencies. gRPC: a Python gRPC server answering Predict with a fixed PredictResponse (no
C++ trivial gRPC server is available from the package registries here, so this endpoint may itself be
the limit: the script reports the server's CPU so that shows). CPU per 1k requests is the client's.

    python benchmarks/load_generator.py --seconds 4 --out benchmarks/load_generator.md
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path

import psutil
from _common import provenance

from autotune.load.client import LoadGenerator, LoadSpec
from autotune.measure import free_ports
from autotune.procs import interrupt_on_sigterm
from autotune.traffic.payload import Payload

BODY = json.dumps({"instances": [[0.0] * 16]}).encode()
REPLY = '{"predictions": [[0.5, 0.5]]}'
NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{ default_type application/json; return 200 '{reply}'; }}
  }}
}}
"""


def start_nginx(workdir: Path, port: int) -> subprocess.Popen:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=workdir, port=port, reply=REPLY))
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(workdir), "-g", "daemon off;"], start_new_session=True)
    time.sleep(0.5)
    if proc.poll() is not None:
        raise SystemExit(f"error: nginx did not start: {(workdir / 'error.log').read_text()[-300:]}")
    return proc


def start_grpc_server(port: int) -> tuple[object, futures.ThreadPoolExecutor]:
    import grpc
    from tensorflow_serving.apis import predict_pb2

    reply = predict_pb2.PredictResponse().SerializeToString()
    handler = grpc.method_handlers_generic_handler(
        "tensorflow.serving.PredictionService",
        {"Predict": grpc.unary_unary_rpc_method_handler(lambda req, ctx: reply)},
    )
    pool = futures.ThreadPoolExecutor(max_workers=16)
    server = grpc.server(pool)
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, pool


def ours(protocol: str, port: int, concurrency: int, seconds: float, workdir: Path) -> dict:
    """Our generator: one closed-loop level, windows of SECONDS/3, the last windows' mean."""
    spec = LoadSpec(protocol, port, port, "bench", window_s=seconds / 3, warmup_s=0.5, max_windows=3)
    payload = Payload(rest_body=BODY, grpc_request=b"")
    gen = LoadGenerator(spec, [payload], workdir)
    try:
        gen.wait_ready()
        gen.closed_loop(concurrency, 1)
        windows = []
        while True:
            event = gen.next_event(seconds + 30)
            if event.get("event") == "window":
                windows.append(event)
            if event.get("event") == "level_done" or len(windows) == 3:
                break
    finally:
        gen.stop()
    rps = sum(w["throughput_rps"] for w in windows) / len(windows)
    cpu = sum(w["client_cpu_cores"] for w in windows) / len(windows)
    errors = sum(w["errors"] for w in windows)
    return {"rps": rps, "client_cores": cpu, "errors": errors}


def external(argv: list[str], parse: str) -> dict:
    """Run wrk or hey; its requests/s from its output and its CPU from rusage of children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False).stdout
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) / wall
    match = re.search(parse, out)
    if not match:
        raise SystemExit(f"error: cannot read requests/s from {argv[0]}: {out[-300:]}")
    return {"rps": float(match.group(1)), "client_cores": cpu, "errors": 0}


def main() -> None:
    interrupt_on_sigterm()  # a SIGTERM stops what it started, as Ctrl-C does
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--concurrency", default="1,4,16,64")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    levels = [int(c) for c in a.concurrency.split(",")]
    rows: list[tuple[str, str, int, dict]] = []
    with tempfile.TemporaryDirectory(prefix="autotune-loadgen-") as tmp:
        workdir = Path(tmp)
        rest_port, grpc_port = free_ports(2)
        nginx = start_nginx(workdir, rest_port)
        url = f"http://127.0.0.1:{rest_port}/v1/models/bench:predict"
        (workdir / "body.json").write_bytes(BODY)
        (workdir / "post.lua").write_text(
            f'wrk.method = "POST"\nwrk.body = \'{BODY.decode()}\'\nwrk.headers["Content-Type"] = "application/json"\n'
        )
        try:
            for c in levels:
                rows.append(("rest", "autotune", c, ours("rest", rest_port, c, a.seconds, workdir)))
                if shutil.which("wrk"):
                    argv = ["wrk", "-t1", f"-c{c}", f"-d{a.seconds:g}s", "-s", str(workdir / "post.lua"), url]
                    rows.append(("rest", "wrk", c, external(argv, r"Requests/sec:\s+([\d.]+)")))
                if shutil.which("hey"):
                    argv = ["hey", "-z", f"{a.seconds:g}s", "-c", str(c), "-m", "POST", "-T", "application/json"]
                    argv += ["-D", str(workdir / "body.json"), url]
                    rows.append(("rest", "hey", c, external(argv, r"Requests/sec:\s+([\d.]+)")))
                print(rows[-1], file=sys.stderr, flush=True)
        finally:
            nginx.terminate()
            nginx.wait(10)
        server, pool = start_grpc_server(grpc_port)
        me = psutil.Process()
        try:
            for c in levels:
                cpu0 = me.cpu_times()
                t0 = time.monotonic()
                r = ours("grpc", grpc_port, c, a.seconds, workdir)
                cpu1 = me.cpu_times()
                r["server_cores"] = (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / (time.monotonic() - t0)
                rows.append(("grpc", "autotune", c, r))
                print(rows[-1], file=sys.stderr, flush=True)
        finally:
            server.stop(0)  # type: ignore[attr-defined]
            pool.shutdown(wait=False)
    lines = [
        "## Load generator ceiling: a trivial endpoint on 127.0.0.1",
        "",
        *provenance("load_generator.py"),
        "",
        "| protocol | generator | concurrency | requests/s | client CPU (cores) | client CPU-ms per 1k requests |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for proto, name, c, r in rows:
        per_k = 1000 * r["client_cores"] / r["rps"] * 1000 if r["rps"] else float("nan")
        extra = f" (server {r['server_cores']:.2f} cores)" if "server_cores" in r else ""
        lines.append(f"| {proto} | {name} | {c} | {r['rps']:.0f} | {r['client_cores']:.2f}{extra} | {per_k:.0f} |")
    text = "\n".join(lines)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
