"""User-facing errors: the CLI prints their message as one line and exits non-zero."""

from enum import StrEnum


class FailureReason(StrEnum):
    """Why a trial produced no usable measurement (DESIGN's failure_reason)."""

    server_start_failed = "server_start_failed"
    server_crashed = "server_crashed"
    timeout = "timeout"
    errors_over_limit = "errors_over_limit"
    oom = "oom"
    unstable = "unstable"  # measured, figures kept, but never trusted: infeasible, never exported
    interrupted = "interrupted"
    client_failed = "client_failed"


class AutotuneError(Exception):
    """An error caused by input or environment, reported without a traceback."""


class TrialError(Exception):
    """A trial that cannot produce a measurement; `reason` is a DESIGN failure_reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
