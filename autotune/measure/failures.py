"""Why a trial ended early, named: the server's death (OOM or crash), its errors, the user's interrupt."""

from __future__ import annotations

from autotune.errors import TrialError
from autotune.measure.results import LevelResult
from autotune.measure.settings import MeasureSettings
from autotune.servers.process import ServerProcess, ServerStartError
from autotune.states import FailureReason

# "failed to map segment" is the dynamic loader's mmap failing: under an address-space limit that is
# the first thing to run out, before any allocation TensorFlow makes itself.
_OOM_MARKERS = (
    "MemoryError",
    "std::bad_alloc",
    "OOM",
    "Out of memory",
    "ResourceExhausted",
    "Cannot allocate memory",
    "failed to map segment",
)


def exit_reason(server: ServerProcess) -> FailureReason:
    # SIGKILL alone is not proof of OOM (a user or the daemon may send it), so look for the words.
    tail = server.log_tail(40)
    return FailureReason.oom if any(m in tail for m in _OOM_MARKERS) else FailureReason.server_crashed


def classify_failure(exc: BaseException, server: ServerProcess | None) -> tuple[str, str]:
    """(failure_reason, message) for anything that ended a trial early; a dead server explains most."""
    dead = server is not None and not server.alive()
    if isinstance(exc, KeyboardInterrupt):
        return FailureReason.interrupted, "interrupted by the user"
    if isinstance(exc, ServerStartError):
        return (FailureReason.oom if dead and exit_reason(server) is FailureReason.oom else exc.reason), str(exc)  # type: ignore[arg-type]
    if isinstance(exc, TrialError):
        return exc.reason, str(exc)
    if dead:  # the generator lost its server: the server's death is the cause
        return exit_reason(server), f"server died during measurement: {server.last_error_line()}"  # type: ignore[union-attr]
    return FailureReason.client_failed, str(exc)


def check_errors(point: LevelResult, settings: MeasureSettings) -> None:
    """Fail a trial whose operating point errs more than the limit allows."""
    if point.error_rate > settings.max_error_rate:
        raise TrialError(
            FailureReason.errors_over_limit,
            f"error rate {point.error_rate:.1%} over the limit {settings.max_error_rate:.1%} ({_error_kinds(point)})",
        )


def _error_kinds(level: LevelResult) -> str:
    kinds: dict[str, int] = {}
    for w in level.windows:
        for k, n in w.get("error_kinds", {}).items():
            kinds[k] = kinds.get(k, 0) + n
    return ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items())) or "none"
