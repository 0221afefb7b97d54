"""Study files: valid ones load into typed objects, invalid ones are refused in one line."""

import dataclasses
from pathlib import Path

import pytest

from autotune.errors import AutotuneError
from autotune.spec import load_study, study_for_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["resnet", "mobilenet", "tiny"])
def test_shipped_studies_are_valid(name):
    study = load_study(ROOT / "studies" / f"{name}.toml")
    assert study.model == name
    assert study.objectives["throughput_rps"] == "maximize"
    assert study.trials > 0 and study.slo_p99_ms > 0


def test_model_name_uses_its_study_file_else_defaults():
    assert study_for_model("tiny").source.endswith("studies/tiny.toml")
    default = study_for_model("/some/path/model")
    assert default.source == "(defaults)" and default.model == "/some/path/model"


def write(tmp_path, text):
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def test_a_full_study_parses(tmp_path):
    study = load_study(
        write(
            tmp_path,
            """
model = "tiny"
backend = "local"
sampler = "random"
seed = 3
[slo]
latency_p99_ms = 50
max_error_rate = 0.01
[objectives]
throughput_rps = "maximize"
latency_p99_ms = "minimize"
cpu_cores = "minimize"
[space.max_batch_size]
low = 2
high = 16
log = true
[space.enable_batching]
value = true
[space.intra_op_threads]
choices = [0, 1]
[budget]
trials = 5
minutes = 2.5
[load]
protocol = "grpc"
rate = 100
""",
        )
    )
    assert study.sampler == "random" and study.seed == 3
    assert study.space["max_batch_size"].low == 2 and study.space["max_batch_size"].log is True
    assert study.space["enable_batching"].value is True
    assert study.space["intra_op_threads"].choices == (0, 1)
    assert study.rate == 100 and study.protocol == "grpc" and study.minutes == 2.5
    assert list(study.objectives) == ["throughput_rps", "latency_p99_ms", "cpu_cores"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('model = "tiny"\n[slo\n', "(syntax)"),
        ('backend = "local"\n', "model: is required"),
        ('model = "tiny"\n[space.turbo]\nvalue = 1\n', "space.turbo: unknown knob"),
        ('model = "tiny"\n[space.max_batch_size]\nlow = 64\nhigh = 8\n', "space.max_batch_size: low (64) > high (8)"),
        ('model = "tiny"\n[space.max_batch_size]\nlow = 1\n', "space.max_batch_size: a range needs both low and high"),
        ('model = "tiny"\n[space.max_batch_size]\nvalue = "big"\n', "space.max_batch_size.value: must be a number"),
        ('model = "tiny"\n[space.max_batch_size]\nvalue = 0\n', "space.max_batch_size.value: 0 is out of range"),
        ('model = "tiny"\n[objectives]\nfun = "maximize"\n', "objectives.fun: unknown objective"),
        ('model = "tiny"\n[objectives]\nthroughput_rps = "up"\n', "objectives.throughput_rps: must be one of"),
        ('model = "tiny"\n[budget]\ntrials = 0\n', "budget.trials: must be > 0"),
        ('model = "tiny"\n[budget]\ntrials = 2.5\n', "budget.trials: must be an integer"),
        ('model = "tiny"\n[load]\nconcurrency = 2\nrate = 5\n', "load: concurrency and rate are exclusive"),
        ('model = "tiny"\nsampler = "magic"\n', "sampler: must be one of"),
        ('model = "tiny"\nextra = 1\n', "extra: unknown key"),
        ('model = "tiny"\n[slo]\nmax_error_rate = 2\n', "slo.max_error_rate: must be in 0..1"),
        ('model = "tiny"\n[slo]\nmin_top1_agreement = 1.5\n', "slo.min_top1_agreement: must be in 0..1"),
        ('model = "tiny"\n[slo]\nmax_abs_error = -1\n', "slo.max_abs_error: must be > 0"),
        (
            'model = "tiny"\n[space.model_variant]\nchoices = ["tflite_fp16", "onnx"]\n',
            "space.model_variant.choices: must be one of savedmodel, tflite_fp16, tflite_int8, xla, got 'onnx'",
        ),
        ('model = "tiny"\n[space.model_variant]\nlow = 1\nhigh = 2\n', "space.model_variant: takes value or choices"),
        (
            'model = "tiny"\n[mix]\ntiny = 1\nmobilenet = 1\n[space.model_variant]\nvalue = "tflite_fp16"\n',
            "space.model_variant: a mix serves its models' SavedModels",
        ),
    ],
)
def test_invalid_studies_name_file_key_and_reason(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(AutotuneError) as info:
        load_study(path)
    assert str(info.value).startswith(str(path))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_study_sets_its_measurement_windows_and_jobs_keep_them(tmp_path):
    from dataclasses import asdict

    from autotune.job import study_settings
    from autotune.spec import study_from_dict
    from autotune.windows import WINDOW_DEFAULTS

    path = tmp_path / "s.toml"
    path.write_text('model = "tiny"\n[load]\nconcurrency = 4\nwindow_s = 0.5\nmax_windows = 6\ntolerance = 0.05\n')
    study = load_study(path)
    assert (study.windows.window_s, study.windows.warmup_s, study.windows.max_windows) == (0.5, 1.0, 6)
    assert (study.windows.tolerance, study.windows.p99_tolerance) == (0.05, WINDOW_DEFAULTS.p99_tolerance)
    assert study_from_dict(asdict(study)) == study  # a queued job's study, read back by the daemon
    settings = study_settings(study)
    assert (settings.window_s, settings.warmup_s, settings.max_windows) == (0.5, WINDOW_DEFAULTS.warmup_s, 6)
    assert (settings.tolerance, settings.p99_tolerance) == (0.05, WINDOW_DEFAULTS.p99_tolerance)
    stored_before = {k: v for k, v in asdict(study).items() if k != "windows"}
    assert study_from_dict(stored_before).windows == WINDOW_DEFAULTS  # jobs stored before windows existed
    later = {**asdict(study), "windows": {**asdict(study.windows), "an_option_added_later": 1}}
    assert study_from_dict(later).windows == study.windows  # a job a later version queued, read by this one

    path.write_text('model = "tiny"\n[load]\nwindow_s = 0\n')
    with pytest.raises(AutotuneError, match=r"s.toml: load.window_s: must be > 0, got 0"):
        load_study(path)
    path.write_text('model = "tiny"\n[load]\nmax_windows = 2.5\n')
    with pytest.raises(AutotuneError, match=r"load\.max_windows: must be an integer"):
        load_study(path)
    path.write_text('model = "tiny"\n[load]\np99_tolerance = -0.1\n')
    with pytest.raises(AutotuneError, match=r"load\.p99_tolerance: must be > 0, got -0.1"):
        load_study(path)


def test_a_studys_request_file_is_found_beside_it_and_jobs_send_it_batched(tmp_path):
    from autotune.job import study_settings

    (tmp_path / "traffic").mkdir()
    path = tmp_path / "traffic" / "s.toml"
    path.write_text('model = "tiny"\n[load]\nrequests = "requests.jsonl"\nbatch = 4\n')
    study = load_study(path)
    assert study.requests == str(tmp_path / "traffic" / "requests.jsonl") and study.batch == 4
    settings = study_settings(study)
    assert (settings.requests_file, settings.batch) == (study.requests, 4)
    path.write_text('model = "tiny"\n[load]\nbatch = 0\n')
    with pytest.raises(AutotuneError, match=r"load\.batch: must be > 0"):
        load_study(path)


def test_start_variants_adds_the_variant_knob_beside_the_savedmodel():
    from autotune.spec import Study, with_variants

    study = with_variants(Study(source="(defaults)", model="tiny"), ["tflite_int8", "tflite_fp16", "tflite_int8"])
    assert study.space["model_variant"].choices == ("savedmodel", "tflite_int8", "tflite_fp16")
    assert study.model_variants == ("tflite_int8", "tflite_fp16")  # what a model-seeded job profiles
    assert Study(source="(defaults)", model="tiny").model_variants == ()
    with pytest.raises(
        AutotuneError, match=r"^--variants: expected some of tflite_fp16, tflite_int8, xla, got 'onnx'$"
    ):
        with_variants(study, ["onnx"])
    mix = Study(source="(defaults)", model="tiny", mix={"tiny": 1.0, "mobilenet": 1.0})
    with pytest.raises(AutotuneError, match="a mix serves its models' SavedModels"):
        with_variants(mix, ["tflite_fp16"])


def test_start_with_an_unknown_variant_is_one_line_and_starts_nothing():
    from tests.conftest import autotune

    run = autotune("start", "--model", "tiny", "--variants", "tflite_fp16,onnx", "--foreground")
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "error: --variants: expected some of tflite_fp16, tflite_int8, xla, got 'tflite_fp16,onnx'"
    ]


def test_a_study_sets_how_its_confirmation_stops_and_what_change_counts(tmp_path):
    path = write(
        tmp_path,
        'model = "tiny"\n[budget]\nconfirm_repeats = 4\nconfirm_max_repeats = 12\nconfirm_precision = 0.03\n'
        "[min_effect]\nlatency_p99_ms = 0.05\n",
    )
    study = load_study(path)
    assert (study.confirm_repeats, study.confirm_max_repeats, study.confirm_precision) == (4, 12, 0.03)
    assert study.min_effect == {"latency_p99_ms": 0.05}
    for text, message in [
        ("[budget]\nconfirm_repeats = 2\n", "budget.confirm_repeats: must be 0 (off) or 3..20, got 2"),
        ("[budget]\nconfirm_repeats = 5\nconfirm_max_repeats = 4\n", "budget.confirm_max_repeats: must be in"),
        ("[budget]\nconfirm_precision = 5\n", "budget.confirm_precision: must be a fraction below 1"),
        ("[min_effect]\nthroughput = 0.02\n", "min_effect.throughput: unknown metric"),
        ("[min_effect]\nthroughput_rps = 2\n", "min_effect.throughput_rps: must be a fraction in [0, 1)"),
    ]:
        with pytest.raises(AutotuneError) as info:
            load_study(write(tmp_path, 'model = "tiny"\n' + text))
        assert message in str(info.value) and "\n" not in str(info.value)


def test_settings_a_job_stored_before_a_field_was_renamed_still_load_with_that_fields_default():
    from autotune.measure import MeasureSettings

    stored = {**dataclasses.asdict(MeasureSettings(window_s=0.5)), "a_field_since_renamed": 7}
    settings = MeasureSettings.from_stored(stored)
    assert settings.window_s == 0.5 and not hasattr(settings, "a_field_since_renamed")


def test_every_study_field_the_measurement_shares_reaches_the_settings_a_job_measures_with():
    from autotune.job import study_settings
    from autotune.measure import MeasureSettings
    from autotune.spec import Study

    study = Study(
        source="t",
        model="tiny",
        protocol="grpc",
        rate=40.0,
        slo_p99_ms=123.0,
        max_error_rate=0.05,
        core_hour_price=0.5,
        gpu_gib_hour_price=0.25,
        requests="/r.jsonl",
        batch=4,
        mix={"tiny": 1.0},
        min_top1_agreement=0.9,
        max_abs_error=0.1,
    )
    settings = study_settings(study, max_windows=7)
    assert (settings.protocol, settings.rate, settings.slo_ms, settings.max_error_rate) == ("grpc", 40.0, 123.0, 0.05)
    assert (settings.core_hour_price, settings.gpu_gib_hour_price, settings.requests_file) == (0.5, 0.25, "/r.jsonl")
    assert (settings.batch, settings.mix, settings.min_top1_agreement, settings.max_abs_error) == (
        4,
        {"tiny": 1.0},
        0.9,
        0.1,
    )
    assert settings.max_windows == 7 and settings.window_s == study.windows.window_s
    assert settings.concurrency is None and settings != MeasureSettings(max_windows=7)


def test_the_model_warm_up_windows_are_never_longer_than_the_measurement_windows() -> None:
    from autotune.measure import MeasureSettings

    assert MeasureSettings().model_warmup_windows_s == MeasureSettings().model_warmup_window_s == 0.5
    assert MeasureSettings(window_s=0.3).model_warmup_windows_s == 0.3


def test_a_study_sets_what_a_first_jobs_profile_of_its_model_may_spend(tmp_path):
    assert load_study(write(tmp_path, 'model = "tiny"\n')).profile_s == 5.0
    assert load_study(write(tmp_path, 'model = "tiny"\n[budget]\nprofile_s = 1.5\n')).profile_s == 1.5
    with pytest.raises(AutotuneError, match=r"budget.profile_s: must be >= 1"):
        load_study(write(tmp_path, 'model = "tiny"\n[budget]\nprofile_s = 0.5\n'))
