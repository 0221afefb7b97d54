"""A job's progress: a bar and one line per finished trial in a terminal; in a log or pipe the lines alone."""

from __future__ import annotations

import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from autotune.errors import AutotuneError
from autotune.notes import note
from autotune.states import JobState, TrialState
from autotune.tables import err, short

# A follower that sees no daemon for this long says so, rather than waiting for a job nobody runs.
NO_DAEMON_S = 15.0


def _trial_line(number: int, config: dict[str, Any], outcome: str, metrics: dict[str, Any]) -> str:
    return f"trial {number}: {short(config)} -> {outcome} {short(metrics)}"


class _Lines:
    """The bar's stand-in where stderr is not a terminal (a log, cron, a pipe): no bar, only the trial lines."""

    console = err

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *args: Any, **fields: Any) -> int:
        return 0

    def update(self, *args: Any, **fields: Any) -> None:
        return None


def _bar(*columns: Any) -> Any:
    """A live bar in a terminal; elsewhere one that draws nothing (rich would print its last frame cut at 80)."""
    return Progress(*columns, console=err) if err.is_terminal else _Lines()


def _print_trial(bar: Any, line: str) -> None:
    # markup off: a config such as allowed_batch_sizes=[2, 4] is not rich markup.
    bar.console.print(line, markup=False, highlight=False)


def run_with_progress(study: Any, budget: int, minutes: float, settings: Any, backend: Any) -> Any:
    """Run a foreground job (job.run_job) under a progress bar; returns its JobResult."""
    from autotune.job import run_job
    from autotune.tuner import TrialHooks

    note(f"tuning {study.model} ({study.source}): {budget} trials, {minutes:g} min")
    best: dict[str, Any] = {"rps": 0.0, "text": "-"}
    columns = (TextColumn("trial"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn())
    fields = (TextColumn("best {task.fields[best]}"), TextColumn("{task.fields[now]}"))
    with _bar(*columns, *fields) as bar:
        task = bar.add_task("tune", total=budget, best="-", now="")

        def progress(number: int, config: Any, msg: str) -> None:
            bar.update(task, now=f"#{number} {short(config.to_dict())}: {msg}")

        def on_trial(t: Any) -> None:
            if t.goodput > best["rps"]:
                best.update(rps=t.goodput, text=f"{t.goodput:.1f} rps (#{t.number})")
            bar.update(task, advance=1, best=best["text"])
            outcome = "ok" if t.values is not None else f"failed: {t.failure_reason}"
            _print_trial(bar, _trial_line(t.number, t.config.to_dict(), outcome, t.result.metrics))

        hooks = TrialHooks(progress=progress, finished=on_trial, said=lambda msg: _print_trial(bar, msg))
        return run_job(study, budget, minutes, settings, hooks, backend)


def follow_job(job_id: int) -> Any:
    """Draw a daemon's job from the database until it ends and return its row; None when Ctrl-C detaches."""
    from autotune.daemon_control import read_status
    from autotune.store import Store, job_summary

    store = Store()
    shown: set[int] = set()
    no_daemon_since: float | None = None
    columns = (TextColumn(f"job {job_id}"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn())
    try:
        with _bar(*columns, TextColumn("{task.fields[note]}")) as bar:
            task = bar.add_task("job", total=None, note="")
            while True:
                job = store.job(job_id)
                if job is None:
                    raise AutotuneError(f"job {job_id} does not exist")
                info = job_summary(job)
                for t in job.trials:
                    if t.number not in shown and TrialState(t.state).finished:
                        shown.add(t.number)
                        outcome = "ok" if t.state == TrialState.complete else f"{t.state}: {t.failure_reason}"
                        _print_trial(bar, _trial_line(t.number, t.config, outcome, t.metrics))
                best = f"best {info['best_goodput_rps']:.1f} rps" if info["best_goodput_rps"] else ""
                bar.update(task, total=job.trials_total, completed=info["trials_done"], note=info["waiting"] or best)
                if not JobState(job.state).active:
                    return job
                if read_status() is None:
                    no_daemon_since = no_daemon_since or time.monotonic()
                    if time.monotonic() - no_daemon_since > NO_DAEMON_S:
                        raise AutotuneError(
                            f"no daemon is running job {job_id} (state {job.state}); start one: autotune daemon"
                        )
                else:
                    no_daemon_since = None
                time.sleep(1.0)
    except KeyboardInterrupt:
        err.print(f"detached; job {job_id} goes on in the daemon. Re-attach: autotune follow {job_id}")
        return None
