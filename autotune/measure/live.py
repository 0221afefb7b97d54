"""Measure one serving configuration on a live server: the trial protocol.

prepare (batching file, ports, argv) -> start server (own process group) -> wait
until AVAILABLE -> load generator (own process) -> warm the model up until its
unloaded latency settles -> per load level: warm-up, then windows (requests
belong to the window they were sent in) until the last K agree and hold enough
requests, or the cap is hit (then once more) -> operating point -> stop
everything, on every exit path."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from autotune.errors import AutotuneError, TrialError
from autotune.knobs import MIXED_PRECISION, SAVEDMODEL, ServingConfig
from autotune.leftovers import claim
from autotune.load.client import LoadGenerator, LoadGeneratorError
from autotune.measure.failures import check_errors, classify_failure
from autotune.measure.launch import PreparedLaunch, mix_others, prepare_launch
from autotune.measure.levels import LevelRunner, measure_point
from autotune.measure.results import TrialResult
from autotune.measure.settings import MeasureSettings
from autotune.models.resolve import ModelRef
from autotune.monitor import ResourceMonitor
from autotune.multimodel import mixed_payloads
from autotune.servers.backends import Backend, Launch
from autotune.servers.process import ServerProcess, ServerStartError
from autotune.servers.scrape import scrape
from autotune.states import FailureReason
from autotune.traffic.payload import Payload
from autotune.traffic.requests import load_requests


class LiveTrial:
    """Owns a trial's server, resource monitor and load generator; stops all three on every exit path."""

    def __init__(
        self, model: ModelRef, prepared: PreparedLaunch, settings: MeasureSettings, payloads: list[Payload]
    ) -> None:
        self.model, self.prepared, self.settings, self.payloads = model, prepared, settings, payloads
        self.server: ServerProcess | None = None
        self.monitor: ResourceMonitor | None = None
        self.gen: LoadGenerator | None = None
        self.log_tail: str | None = None
        self.stopping_at: float | None = None
        self.hung = False  # the server stopped answering: nothing graceful will come of it
        # Disjoint cores for server and generator where the host has enough (prepared.cpu); else they share.
        self.client_cores = prepared.cpu.client_cores or None

    def __enter__(self) -> LiveTrial:
        return self

    def start(self, on_server_start: Callable[[int], None] | None) -> float:
        """Start the server and the generator; return the model's load time once it is AVAILABLE."""
        launch, paths, s = self.prepared.launch, self.prepared.paths, self.settings
        self.server = ServerProcess(
            launch.argv, self.prepared.workdir / "server.log", cleanup=launch.cleanup, cpu=launch.cpu
        )
        if on_server_start:
            on_server_start(self.server.pid)
        spec = s.load_spec(self.model.name, paths.rest_port, launch.grpc_target)
        # The generator starts while the model loads (it sends nothing until told): its start-up
        # is hidden behind the server's instead of added to every trial.
        self.gen = LoadGenerator(spec, self.payloads, self.prepared.workdir, cores=self.client_cores)
        ready = self.server.wait_ready(paths.rest_port, self.model.name, s.ready_timeout_s)
        sampled = self.prepared.backend.monitor_pid(launch, self.server.pid)
        self.monitor = ResourceMonitor(sampled).start()
        self.monitor.add_own_pid(self.gen.pid)
        self.gen.wait_ready()
        return ready.load_time_s

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Load first, then sampling, then the server; the log tail is read before the workdir goes. A hung server
        # is killed at once, first: its graceful stop would time out, and the generator's requests to it with it.
        if self.hung:
            self._stop_server(grace_s=0.0)
        if self.gen is not None:
            self.gen.stop()
        if self.monitor is not None:
            self.monitor.stop()
        self.stopping_at = time.monotonic()
        if not self.hung:
            self._stop_server(grace_s=5.0)

    def _stop_server(self, grace_s: float) -> None:
        if self.server is not None:
            self.server.stop(grace_s)
            self.log_tail = self.server.log_tail(30)


def run_trial(
    model: ModelRef,
    config: ServingConfig,
    settings: MeasureSettings,
    backend: Backend,
    progress: Callable[[str], None] | None = None,
    on_server_start: Callable[[int], None] | None = None,
) -> TrialResult:
    """Measure CONFIG for MODEL; never raises for server or load failures (see failure_reason)."""
    say = progress or (lambda _msg: None)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="autotune-trial-") as tmp:
        claim(Path(tmp))  # so that a sweep after a kill -9 knows whose it was
        try:
            served, accuracy = model_variant(model, config, settings, say)
        except AutotuneError as exc:  # the model cannot become the variant (an op TFLite or XLA lacks)
            failed = TrialResult(model.name, backend.name, settings.protocol, config, [])
            failed.failure_reason, failed.failure_message = FailureReason.variant_failed, str(exc)
            return failed
        try:
            # Read and checked before the server starts: a request file gone bad since the job began fails here.
            requests = load_requests(settings.requests_file, model.signature, settings.batch)
            payloads = requests.payloads(model.name, model.signature.name)
            others = mix_others(model, settings)
            prepared = prepare_launch(served, config, backend, Path(tmp), settings.monitoring, payloads, others)
            if others:  # the generator sends every model's requests, in the mix's proportion
                by_model = {model.name: payloads, **{o.model.name: o.payloads for o in others}}
                payloads = mixed_payloads(by_model, settings.shares)
        except AutotuneError as exc:  # an allowance this host cannot give (a config stored on another host)
            failed = TrialResult(model.name, backend.name, settings.protocol, config, [])
            failed.failure_reason, failed.failure_message = FailureReason.server_start_failed, str(exc)
            return failed
        result = TrialResult(model.name, backend.name, settings.protocol, config, prepared.launch.argv)
        live = LiveTrial(model, prepared, settings, payloads)
        measure_started: float | None = None
        with live:
            try:
                say("starting server")
                load_time_s = live.start(on_server_start)
                say(f"model AVAILABLE after {load_time_s:.1f}s")
                accuracy = accuracy or served_accuracy(model, config, settings, backend.name, prepared.launch, say)
                measure_started = time.monotonic()
                base_url = f"http://127.0.0.1:{prepared.paths.rest_port}"
                scraper = (lambda: scrape(base_url, model.name)) if settings.monitoring else None
                assert live.server and live.monitor and live.gen
                runner = LevelRunner(
                    live.server, live.monitor, live.gen, settings, started + settings.trial_timeout_s, say, scraper
                )
                point = measure_point(result, runner, requests, load_time_s, prepared.cpu)
                if settings.mix:
                    assert result.traffic is not None
                    result.traffic["mix"] = settings.shares
                # Sharing cores with the server, a generator using a quarter of their CPU can slow it.
                share = result.metrics.get("client_cpu_share") or 0.0
                result.metrics["cores_shared"] = live.client_cores is None
                result.metrics["client_interference"] = live.client_cores is None and share > 0.25
                check_errors(point, settings)
            except (ServerStartError, TrialError, LoadGeneratorError, KeyboardInterrupt) as exc:
                result.failure_reason, result.failure_message = classify_failure(exc, live.server)
                live.hung = result.failure_reason == FailureReason.timeout
        result.server_log_tail = live.log_tail
        if accuracy is not None:
            result.metrics["accuracy"] = accuracy
        # Where the trial's time went (benchmarks/trial_overhead.py): start-up and teardown are overhead.
        stopping = live.stopping_at or time.monotonic()
        result.metrics["trial_wall_s"] = round(time.monotonic() - started, 3)
        if measure_started is not None:
            result.metrics["setup_s"] = round(measure_started - started, 3)
            result.metrics["measure_s"] = round(stopping - measure_started, 3)
            result.metrics["teardown_s"] = round(time.monotonic() - stopping, 3)
    return result


def model_variant(
    model: ModelRef, config: ServingConfig, settings: MeasureSettings, say: Callable[[str], None]
) -> tuple[ModelRef, dict[str, Any] | None]:
    """The model as CONFIG serves it: MODEL itself, or its variant (built and checked once, then cached) with
    the variant's accuracy against MODEL and why it fails the guard. Raises AutotuneError when MODEL cannot
    become the variant."""
    if config.model_variant == SAVEDMODEL:
        return model, None
    from autotune.models.optimize import checked_variant

    say(f"preparing {config.model_variant}")
    checked = checked_variant(
        model, config.model_variant, settings.requests_file, settings.min_top1_agreement, settings.max_abs_error
    )
    figures = {"variant": config.model_variant, **checked.accuracy.to_json(), "problem": checked.problem}
    figures["model_bytes"] = checked.variant.size_bytes
    return replace(model, base_path=checked.variant.base), figures


def served_accuracy(
    model: ModelRef,
    config: ServingConfig,
    settings: MeasureSettings,
    backend: str,
    launch: Launch,
    say: Callable[[str], None],
) -> dict[str, Any] | None:
    """For CONFIG's mixed precision, the running server's answers against MODEL's own (asked once per model, input
    set and BACKEND: TF Serving's kernels are not the stand-in's), and why they fail the guard; None when CONFIG
    changes no numerics in the server, or a variant's own check already stands."""
    if config.mixed_precision == MIXED_PRECISION[0] or config.model_variant != SAVEDMODEL:
        return None
    from autotune.models.accuracy import served_outputs
    from autotune.models.optimize import checked_served

    say(f"checking the answers under {config.mixed_precision} mixed precision")
    name = f"mixed_precision_{config.mixed_precision}-{backend}"

    def ask(inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return served_outputs(launch.grpc_target, model.name, model.signature.name, inputs)

    try:
        accuracy, problem = checked_served(
            model, name, ask, settings.requests_file, settings.min_top1_agreement, settings.max_abs_error
        )
    except AutotuneError as exc:
        raise TrialError(FailureReason.variant_failed, str(exc)) from None
    return {"variant": f"mixed_precision={config.mixed_precision}", **accuracy.to_json(), "problem": problem}
