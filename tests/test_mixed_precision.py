"""bfloat16 mixed precision: TF Serving's --mixed_precision, searched only where the CPU computes bf16 natively, its
answers checked against the SavedModel's through the running server."""

from __future__ import annotations

from pathlib import Path

import pytest

from autotune.cpufeatures import bf16_problem, cpu_flags
from autotune.errors import AutotuneError
from autotune.knobs import ServingConfig, parse_assignments
from autotune.servers.argv import ServerPaths, tfserving_flags
from autotune.servers.local.flags import parse_flags
from autotune.space import Host, build_space
from autotune.spec import KnobSpec, Study, with_mixed_precision


def test_native_bf16_is_read_from_the_cpu_flags():
    assert cpu_flags("processor: 0\nflags\t\t: fpu avx2 avx512_bf16\n") == {"fpu", "avx2", "avx512_bf16"}
    assert bf16_problem({"avx2", "amx_bf16"}) is None and bf16_problem({"avx512_bf16"}) is None
    assert bf16_problem({"avx2", "avx512f"}) == (
        "this CPU has no native bfloat16 (avx512_bf16 or amx_bf16): oneDNN would emulate it"
    )


def test_the_knob_is_tf_servings_flag_and_off_by_default():
    assert "mixed_precision" not in ServingConfig().to_dict()
    config = parse_assignments(["mixed_precision=bfloat16"])
    assert config.to_dict()["mixed_precision"] == "bfloat16"
    paths = ServerPaths("m", Path("/m"), 8500, 8501)
    flags = tfserving_flags(config, paths)
    assert "--mixed_precision=bfloat16" in flags and parse_flags(flags).mixed_precision == "bfloat16"
    assert not any("mixed_precision" in f for f in tfserving_flags(ServingConfig(), paths))
    with pytest.raises(AutotuneError, match="mixed_precision: expected one of off, bfloat16, got 'fp8'"):
        parse_assignments(["mixed_precision=fp8"])


def test_a_cpu_without_native_bf16_is_told_why_it_is_not_searched():
    no_bf16 = Host(cpus=2, gpus=0, bf16_problem=bf16_problem(set()))
    with pytest.raises(AutotuneError, match=r"^space.mixed_precision: this CPU has no native bfloat16"):
        build_space({"mixed_precision": KnobSpec(choices=("off", "bfloat16"))}, no_bf16)
    assert "mixed_precision" in build_space({"mixed_precision": KnobSpec(value="off")}, no_bf16)
    with pytest.raises(AutotuneError, match=r"^--mixed-precision: this CPU has no native bfloat16"):
        with_mixed_precision(Study(source="(defaults)", model="tiny"), bf16_problem(set()))
    study = with_mixed_precision(Study(source="(defaults)", model="tiny"), None)
    assert study.space["mixed_precision"].choices == ("off", "bfloat16")


@pytest.mark.slow
def test_a_trial_under_bf16_checks_the_servers_own_answers_once(tiny_model):
    from autotune.measure import MeasureSettings, run_trial
    from autotune.servers.backends import local_backend

    settings = MeasureSettings(concurrency=2, window_s=0.3, warmup_s=0.1, max_windows=4, measure_unloaded=False)
    config = parse_assignments(["mixed_precision=bfloat16"])
    result = run_trial(tiny_model, config, settings, local_backend())
    assert result.ok, result.failure_message
    assert "--mixed_precision=bfloat16" in result.argv
    assert "bfloat16 auto mixed precision" in (result.server_log_tail or "")
    accuracy = result.metrics["accuracy"]
    assert accuracy["variant"] == "mixed_precision=bfloat16" and accuracy["samples"] == 128
    # bfloat16 keeps 8 bits of mantissa: the answers move (the rewrite ran) but stay within a few percent.
    assert 0 < accuracy["max_abs_error"] < 0.05 and accuracy["top1_agreement"] > 0.8
    again = run_trial(tiny_model, config, settings, local_backend())
    assert again.metrics["accuracy"] == accuracy  # read back, not asked again
