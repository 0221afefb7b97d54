"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class AutotuneError(Exception):
    """An error caused by input or environment, reported without a traceback."""


class TrialError(Exception):
    """A trial that cannot produce a measurement; `reason` is a DESIGN failure_reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
