"""Hostile input, generated: study files and `--set` assignments either parse or fail with our one error type."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autotune.errors import AutotuneError
from autotune.knobs import KNOBS, ServingConfig, parse_assignments
from autotune.models.resolve import check_spec, resolve_model
from autotune.spec import load_study, parse_study

KNOB_NAMES = sorted(KNOBS)
scalars = st.one_of(
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
TOP_KEYS = ["model", "backend", "slo", "objectives", "space", "budget", "load", "sampler", "seed"]
keys = st.sampled_from(TOP_KEYS) | st.text(max_size=10)
knob_tables = st.dictionaries(st.sampled_from(["low", "high", "log", "choices", "value"]), values, max_size=3)
objective_names = st.sampled_from(["throughput_rps", "latency_p99_ms", "cpu_cores", "nope"])
sections = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["tiny", "resnet", "../etc", "", "a b"]) | st.text(max_size=12),
        "slo": st.dictionaries(st.sampled_from(["latency_p99_ms", "max_error_rate", "x"]), scalars, max_size=3),
        "objectives": st.dictionaries(
            objective_names, st.sampled_from(["maximize", "minimize", "up"]) | scalars, max_size=3
        ),
        "space": st.dictionaries(st.sampled_from([*KNOB_NAMES, "bogus"]), knob_tables | scalars, max_size=4),
        "budget": st.dictionaries(st.sampled_from(["trials", "minutes", "x"]), scalars, max_size=2),
        "load": st.dictionaries(st.sampled_from(["protocol", "concurrency", "rate"]), scalars, max_size=3),
        "sampler": scalars,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(sections, st.dictionaries(keys, values, max_size=6)))
def test_any_study_document_parses_or_is_refused_with_one_line(doc):
    try:
        study = parse_study(doc, "fuzz.toml")
    except AutotuneError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("fuzz.toml")
        return
    assert study.trials > 0 and study.objectives


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_as_a_study_file_parse_or_are_refused(tmp_path: Path, raw: bytes):
    path = tmp_path / "study.toml"
    path.write_bytes(raw)
    try:
        load_study(path)
    except AutotuneError as exc:
        assert "\n" not in str(exc).strip() or "syntax" in str(exc)
        assert str(exc).startswith(str(path))


assignment = st.tuples(st.sampled_from(KNOB_NAMES) | st.text(max_size=8), st.text(max_size=12)).map("=".join)


@settings(max_examples=400, deadline=None)
@given(st.lists(assignment | st.text(max_size=15), max_size=4))
def test_any_set_assignments_give_a_valid_config_or_one_error(items):
    try:
        config = parse_assignments(items)
    except AutotuneError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(config, ServingConfig)
    assert config.max_batch_size >= 1 and config.num_batch_threads >= 1 and 0 <= config.gpu_memory_fraction <= 1


@settings(max_examples=200, deadline=None)
@given(
    st.builds(
        dict,
        max_batch_size=st.integers(1, 4096),
        batch_timeout_micros=st.integers(0, 10**7),
        num_batch_threads=st.integers(1, 256),
        intra_op_threads=st.integers(0, 256),
        inter_op_threads=st.integers(0, 256),
    )
)
def test_set_assignments_round_trip(values):
    config = parse_assignments([f"{k}={v}" for k, v in values.items()])
    assert config.enable_batching and all(getattr(config, k) == v for k, v in values.items())


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_model_specs_are_names_or_paths_never_a_crash(spec):
    try:
        check_spec(spec)
    except AutotuneError as exc:
        assert "\n" not in str(exc)


def test_out_of_range_numbers_in_a_study_are_refused_by_knob(tmp_path):
    path = tmp_path / "huge.toml"
    path.write_text("model = 'tiny'\n[space.max_batch_size]\nlow = 1e400\nhigh = 99999999999999999999\n")
    with pytest.raises(AutotuneError, match="max_batch_size"):
        load_study(path)


@pytest.mark.slow
def test_model_paths_with_spaces_symlinks_and_dotdot_are_served_as_the_directory_they_name(tmp_path, tiny_model):
    import json
    import shutil

    from tests.conftest import autotune

    real = tmp_path / "dir with spaces" / "my model; $(id)"
    shutil.copytree(tiny_model.base_path, real)
    link = tmp_path / "link"
    link.symlink_to(real)
    dotted = tmp_path / "elsewhere" / ".." / "link"
    (tmp_path / "elsewhere").mkdir()
    ref = resolve_model(str(dotted))
    assert ref.base_path == real.resolve() and ref.name == "my_model____id_"  # URL-safe served name
    proc = autotune(
        "bench", "--model", str(dotted), "--concurrency", "1", "--json",
        "--window-s", "0.3", "--warmup-s", "0.2", "--max-windows", "3",
        timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["throughput_rps"] > 0
    # The server loads the directory named, through the version directory rebuilt beside it for the warm-up
    # file: every entry links to the real one (a dry run keeps that directory to look at).
    dry = autotune("bench", "--model", str(dotted), "--backend", "local", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    (base,) = [a.split("=", 1)[1] for a in json.loads(dry.stdout)["argv"] if a.startswith("--model_base_path=")]
    assert (Path(base) / "1" / "saved_model.pb").resolve() == (real / "1" / "saved_model.pb").resolve()
