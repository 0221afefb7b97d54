"""Measure a TF Serving that is already running (`--target`): nothing is started, stopped or changed there."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from autotune.errors import AutotuneError, TrialError
from autotune.knobs import ServingConfig
from autotune.leftovers import claim
from autotune.load.client import LoadGenerator, LoadGeneratorError
from autotune.measure.failures import check_errors, classify_failure
from autotune.measure.levels import LevelRunner, measure_point
from autotune.measure.results import TrialResult
from autotune.measure.settings import MeasureSettings
from autotune.models.signature import Signature
from autotune.monitor import ResourceMonitor
from autotune.servers.scrape import scrape
from autotune.servers.target import RunningServer, Target, listening_pid
from autotune.traffic.requests import load_requests


def run_target(
    target: Target,
    model_name: str,
    signature: Signature,
    settings: MeasureSettings,
    config: ServingConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrialResult:
    """Measure the server already running at TARGET, as it is (CONFIG: what the user says it runs, if known).

    Nothing is started, stopped or changed there; its process is sampled when it is visible on this host."""
    say = progress or (lambda _msg: None)
    started = time.monotonic()
    requests = load_requests(settings.requests_file, signature, settings.batch)
    server = RunningServer(target, listening_pid(target.rest_port) if target.loopback else None)
    result = TrialResult(model_name, "target", settings.protocol, config, [], target=target.url)
    if settings.protocol == "grpc" and target.grpc_target is None:
        raise AutotuneError("--protocol grpc with --target needs --target-grpc HOST:PORT (TF Serving's --port)")
    spec = settings.load_spec(
        model_name, target.rest_port, target.grpc_target, host=target.host, allow_hosts=target.remote_hosts
    )
    with tempfile.TemporaryDirectory(prefix="autotune-target-") as tmp:
        claim(Path(tmp))
        gen = LoadGenerator(spec, requests.payloads(model_name, signature.name), Path(tmp))
        monitor = ResourceMonitor(server.pid).start()
        monitor.add_own_pid(gen.pid)
        try:
            gen.wait_ready()
            # Its own counters, when it exposes them: they show traffic from others during the measurement.
            scraper = (lambda: scrape(target.url, model_name)) if scrape(target.url, model_name) else None
            runner = LevelRunner(server, monitor, gen, settings, started + settings.trial_timeout_s, say, scraper)  # type: ignore[arg-type]
            point = measure_point(result, runner, requests, None, None)
            result.metrics["server_pid"] = server.pid
            result.metrics["client_answered"] = (point.server or {}).get("client_answered")
            check_errors(point, settings)
        except (TrialError, LoadGeneratorError, KeyboardInterrupt) as exc:
            result.failure_reason, result.failure_message = classify_failure(exc, server)  # type: ignore[arg-type]
        finally:
            gen.stop()
            monitor.stop()
    result.metrics["trial_wall_s"] = round(time.monotonic() - started, 3)
    return result
