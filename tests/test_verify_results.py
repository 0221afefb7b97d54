"""benchmarks/verify_results.py: every headline figure recomputed from its data file, a changed one caught."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _module():
    spec = importlib.util.spec_from_file_location("verify_results", ROOT / "benchmarks" / "verify_results.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["verify_results"] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_every_registered_headline_figure_matches_its_data_file():
    assert _module().check() == []


def test_a_figure_no_document_prints_or_a_missing_file_is_a_mismatch():
    v = _module()
    wrong = v.Claim("made up", "tuned-tiny.json", lambda: "x9.99 (9.00-9.99)")
    gone = v.Claim("gone", "no-such-file.json", lambda: "x1.00")
    problems = v.check((wrong, gone))
    assert "recomputed 'x9.99 (9.00-9.99)' from tuned-tiny.json; no document prints it" in problems[0]
    assert "benchmarks/data/no-such-file.json is missing" in problems[1]


def test_paired_compares_are_recomputed_by_round_and_a_failed_run_drops_its_pair():
    v = _module()

    def side(values):
        return {"all_runs": [{"round": i, "ok": x is not None, "metrics": {"m": x}} for i, x in enumerate(values)]}

    compare = {"a": side([100.0, 100.0, None, 100.0]), "b": side([110.0, 111.0, 500.0, 109.0])}
    assert v.ratio(json.loads(json.dumps(compare)), "m").startswith("x1.10 (")


def test_a_suites_wall_time_is_read_from_pytests_last_summary_line(tmp_path, monkeypatch):
    v = _module()
    monkeypatch.setattr(v, "DATA", tmp_path)
    for name, seconds in (("a.txt", "612.49"), ("b.txt", "590.2"), ("c.txt", "595.5")):
        # A test named "passed ... in 1.00s" in the listing must not be taken for the summary.
        listed = "1.00s call tests/t.py::test_passed_in_1.00s\n"
        (tmp_path / name).write_text(f"{listed}530 passed, 3 skipped, 33 warnings in {seconds}s (0:10:12)\nexit=0\n")
    assert v.suite_runs("a.txt", "b.txt", "c.txt") == "612, 590 and 596 s (median 596 s)"
    (tmp_path / "cut.txt").write_text("....... [ 27%]\n")  # a run that never finished
    with pytest.raises(ValueError, match="no pytest summary line"):
        v.suite_seconds("cut.txt")


def test_a_tests_and_a_files_seconds_are_read_from_the_durations_listing(tmp_path, monkeypatch):
    v = _module()
    monkeypatch.setattr(v, "DATA", tmp_path)
    listing = (
        "12.50s call     tests/test_a.py::test_one\n"
        "3.25s setup    tests/test_a.py::test_one\n"
        "1.00s call     tests/test_a.py::test_one_more\n"
        "9.00s call     tests/test_b.py::test_one\n"
        "530 passed in 600.00s\n"
    )
    (tmp_path / "run.txt").write_text(listing)
    assert v.test_seconds("run.txt", "tests/test_a.py::test_one") == 12.5  # the call, not the setup or a prefix
    assert v.test_seconds("run.txt", "tests/test_a.py::test_one", "setup") == 3.25
    assert v.file_seconds("run.txt", "tests/test_a.py") == pytest.approx(16.75)
    with pytest.raises(ValueError, match="lists no call of"):
        v.test_seconds("run.txt", "tests/test_c.py::test_one")
