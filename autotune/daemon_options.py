"""The daemon's and its resource gate's options, declared once (autotune/options.py) for `autotune daemon` and
the code alike; light, so that the command line can read them without loading the daemon."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from autotune.options import option


@dataclass(frozen=True)
class GateSettings:
    """When the host counts as quiet enough to measure on."""

    max_foreign_cores: float = option(
        0.5, "gate: CPU load outside autotune, in cores", lo=0, env="AUTOTUNE_GATE_MAX_FOREIGN_CORES"
    )
    quiet_s: float = option(
        5.0, "gate: seconds the host must be quiet before a trial", lo=0, env="AUTOTUNE_GATE_QUIET_S"
    )
    sample_s: float = 1.0
    check_gpu: bool = True  # no compute processes of others on any GPU


@dataclass(frozen=True)
class DaemonOptions:
    """How the daemon runs: where it logs, how often it looks, its gate, its bounds."""

    log_file: Path | None = None
    poll_s: float = option(2.0, "how often to look for queued jobs and due schedules", lo=0, lo_open=True)
    metrics_port: int = option(
        9468, "Prometheus metrics on 127.0.0.1 (0: any free port)", lo=0, hi=65535, env="AUTOTUNE_METRICS_PORT"
    )
    gate: GateSettings = field(default_factory=GateSettings)
    # Heartbeats come every 2 s; less than a few missed ones would take jobs from live daemons.
    stale_after_s: float = option(
        120.0, "take back a job whose worker on another host has been silent this long (seconds)", lo=10
    )
    recover_every_s: float = 15.0
    heartbeat_s: float = 2.0
    # The job list in the status file is rewritten on every event, and at least this often (other hosts' jobs).
    status_every_s: float = 10.0
    # A daemon runs for months: its log rotates at this size, keeping LOG_BACKUPS old files.
    log_max_mb: float = option(10.0, "rotate --log-file at this size (3 old files are kept)", lo=0.01)
    log_backups: int = 3
    prune_days: float | None = option(
        None, "after each job, drop window detail of jobs finished this many days ago (db prune)", lo=0
    )

    @property
    def log_max_bytes(self) -> int:
        return int(self.log_max_mb * 2**20)
