"""Options declared once (autotune/options.py): one declaration gives the default, the help, the bounds and the
error wording, for the command line, study files and the code alike."""

from __future__ import annotations

import dataclasses

import pytest

from autotune.daemon_options import DaemonOptions, GateSettings
from autotune.errors import AutotuneError
from autotune.options import CONCURRENCY, RATE, Bounds, checked, declared, problems


@pytest.mark.parametrize(
    ("bounds", "value", "problem"),
    [
        (Bounds(1, 4096), 0, "must be in 1..4096"),
        (Bounds(1, 4096), 4096, None),
        (Bounds(0, 3600, lo_open=True), 0.0, "must be in (0, 3600]"),
        (Bounds(0, lo_open=True), 0.0, "must be > 0"),
        (Bounds(10), 9.5, "must be >= 10"),
        (Bounds(10), None, None),  # unset: nothing to check
    ],
)
def test_a_bound_words_its_problem_the_way_every_error_does(bounds, value, problem):
    assert bounds.problem(value) == problem


def test_the_daemons_defaults_are_its_declarations_and_all_lie_within_their_bounds():
    opts = DaemonOptions()
    assert opts.poll_s == declared(DaemonOptions, "poll_s").default
    assert problems(opts) == {} and problems(GateSettings()) == {}
    assert opts.log_max_bytes == int(declared(DaemonOptions, "log_max_mb").default * 2**20)


def test_an_option_out_of_range_is_one_line_naming_its_flag():
    with pytest.raises(AutotuneError, match=r"^--stale-after-s must be >= 10, got 5$"):
        checked(dataclasses.replace(DaemonOptions(), stale_after_s=5))
    with pytest.raises(AutotuneError, match=r"^--max-foreign-cores must be >= 0, got -1$"):
        checked(GateSettings(max_foreign_cores=-1))


def test_a_study_and_the_command_line_bound_the_load_alike(tmp_path):
    from autotune.spec import load_study

    study = tmp_path / "s.toml"
    study.write_text('model = "tiny"\n[load]\nconcurrency = 5000\n')
    with pytest.raises(AutotuneError, match=rf"load.concurrency: {CONCURRENCY.bounds.problem(5000)}, got 5000"):
        load_study(study)
    study.write_text('model = "tiny"\n[load]\nrate = 0\n')
    with pytest.raises(AutotuneError, match=r"load.rate: must be in \(0, 1000000\], got 0"):
        load_study(study)
    with pytest.raises(AutotuneError, match=r"^--concurrency must be in 1..4096, got 5000$"):
        CONCURRENCY.check("concurrency", 5000)
    assert RATE.bounds.problem(0.5) is None


def test_the_daemons_command_reads_its_options_help_and_environment_from_the_declarations():
    from typer.testing import CliRunner

    from autotune.cli import app

    shown = " ".join(CliRunner().invoke(app, ["daemon", "-h"]).output.split())  # as wrapped at any width
    for cls, name in ((DaemonOptions, "poll_s"), (GateSettings, "quiet_s"), (DaemonOptions, "metrics_port")):
        assert declared(cls, name).help in shown
    assert "AUTOTUNE_GATE_QUIET_S" in shown and "AUTOTUNE_METRICS_PORT" in shown
