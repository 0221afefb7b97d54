"""What a fresh stand-in server costs a trial: start to AVAILABLE, and stop, for tiny; beside a bare TF import.

Every trial, confirmation round and live test starts and stops one, so these two figures bound how fast a job
(and the test suite) can go on this host. The server is `python -m autotune.servers.local`, found from the working
directory: run this from the root of the checkout whose server it times (another checkout's root for a "before").

    python benchmarks/server_start.py --runs 5 --out benchmarks/data/server-start.json
    (cd OLD_CHECKOUT && python NEW_CHECKOUT/benchmarks/server_start.py --runs 5 --out /tmp/server-start-before.json)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import provenance

from autotune.measure import free_ports
from autotune.models.resolve import ModelRef, resolve_model
from autotune.servers.argv import one_model_argv
from autotune.servers.backends import local_backend
from autotune.servers.process import ServerProcess

IMPORT_TF = "from autotune.tfimport import import_tensorflow; import_tensorflow(keras=False)"


def one_run(model: ModelRef) -> dict[str, float]:
    """One bare TF import in a fresh interpreter, then one MODEL server started, waited for and stopped."""
    began = time.monotonic()
    subprocess.run([sys.executable, "-c", IMPORT_TF], check=True, capture_output=True)
    imported = time.monotonic() - began
    grpc_port, rest_port = free_ports(2)
    argv = one_model_argv(local_backend().program, model.name, model.base_path, grpc_port, rest_port)
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(argv, Path(tmp) / "server.log")
        try:
            ready = server.wait_ready(rest_port, model.name, 120).load_time_s
        finally:
            began = time.monotonic()
            server.stop()
            stopped = time.monotonic() - began
    return {"tf_import_s": imported, "ready_s": ready, "stop_s": stopped}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    model, runs = resolve_model("tiny"), []
    for i in range(a.runs):
        runs.append(one_run(model))
        print(f"run {i}: " + ", ".join(f"{k} {v:.2f}" for k, v in runs[-1].items()), file=sys.stderr)
    medians = {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}
    doc = {"provenance": provenance("server_start.py"), "cwd": str(Path.cwd()), "runs": runs, "medians": medians}
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(medians))


if __name__ == "__main__":
    main()
