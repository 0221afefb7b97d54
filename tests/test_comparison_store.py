"""Every compare and confirmation is stored whole: both sides of every run, with pids and start times."""

from __future__ import annotations

import pytest

from autotune.store import Store


def test_a_comparison_is_stored_with_both_sides_and_read_back_by_model(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    result = {
        "a": {"all_runs": [{"round": 0, "server_pid": 11, "started_at": "2026-12-04T16:00:00.000Z", "ok": True}]},
        "b": {"all_runs": [{"round": 0, "server_pid": 12, "started_at": "2026-12-04T16:00:09.000Z", "ok": True}]},
        "verdict": "equivalent",
    }
    first = store.record_comparison("compare", "tiny", result, "equivalent")
    store.record_comparison("compare", "resnet", result, "inconclusive")
    (row,) = store.comparisons("tiny")
    assert row.id == first and row.kind == "compare" and row.verdict == "equivalent"
    assert row.result["b"]["all_runs"][0]["server_pid"] == 12
    assert [r.model for r in store.comparisons()] == ["tiny", "resnet"]
    with pytest.raises(ValueError, match="compare or a confirm"):
        store.record_comparison("bench", "tiny", result)
