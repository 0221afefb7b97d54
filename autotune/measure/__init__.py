"""Measure one serving configuration on a live server (or a running one): the trial protocol.

settings (how) -> launch (what the server needs) -> live (server, monitor, load generator, every exit path)
-> levels (windows until they agree, the ramp, the operating point) -> results; failures name why a trial
ended early; target measures a server we did not start.
"""

from __future__ import annotations

from autotune.measure.failures import classify_failure
from autotune.measure.launch import PreparedLaunch, free_ports, prepare_launch
from autotune.measure.live import model_variant, run_trial, served_accuracy
from autotune.measure.results import LevelResult, TrialResult
from autotune.measure.settings import MeasureSettings
from autotune.measure.target import run_target

__all__ = [
    "LevelResult",
    "MeasureSettings",
    "PreparedLaunch",
    "TrialResult",
    "classify_failure",
    "free_ports",
    "model_variant",
    "prepare_launch",
    "run_target",
    "run_trial",
    "served_accuracy",
]
