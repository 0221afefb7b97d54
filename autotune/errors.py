"""User-facing errors: the CLI prints their message as one line and exits non-zero."""


class AutotuneError(Exception):
    """An error caused by input or environment, reported without a traceback."""
