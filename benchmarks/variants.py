"""Model variants against the SavedModel: speed, load time and accuracy, judged by `compare`.

    python benchmarks/variants.py --model mobilenet_float --protocol grpc --concurrency 4 --repeats 3
    python benchmarks/variants.py --model resnet_float --protocol grpc --concurrency 4 --repeats 3

For each TFLite variant, the guard's figures (top-1 agreement and max abs error against the SavedModel,
over the request file's images) and a `compare` of TF Serving's defaults serving the SavedModel (A)
against the same defaults serving the variant with --prefer_tflite_model (B): REPEATS fresh servers a
side, interleaved ABBA, throughput, p99, CPU and load time as ratios B/A with 95% intervals and verdicts.

The requests are IMAGES decoded pixel images (synthetic JPEGs decoded and resized to 224x224, float32
0..255), written once as a TFRecord of PredictionLogs and replayed by every trial; the same images are
the guard's inputs, and calibrate tflite_int8 (full integer: activations too). The built-ins have random
weights: agreement figures say how a variant moves these answers, not how a trained model's accuracy would.
Raw per-run metrics go to benchmarks/data/variants-MODEL-PROTOCOL-cC.json; markdown to stdout and --out.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import provenance

from autotune.compare import compare, live_measure
from autotune.knobs import ServingConfig
from autotune.measure import MeasureSettings
from autotune.models.optimize import checked_variant
from autotune.models.resolve import ModelRef, resolve_model
from autotune.procs import interrupt_on_sigterm
from autotune.servers.backends import resolve_backend

DATA = Path(__file__).parent / "data"
VARIANTS = ("tflite_fp16", "tflite_int8")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def write_pixel_requests(model: ModelRef, images: int, path: Path) -> Path:
    """IMAGES decoded synthetic JPEGs, one per request, as a TFRecord of PredictionLogs at PATH."""
    import numpy as np
    import tensorflow as tf

    from autotune.traffic.payload import payload_of, synthetic_jpeg
    from autotune.warmup import write_warmup_file

    (name,) = model.signature.inputs
    size = model.signature.inputs[name].shape[1:3]
    payloads = []
    for seed in range(images):
        pixels = tf.image.resize(tf.io.decode_jpeg(synthetic_jpeg(seed=seed), channels=3), size).numpy()
        payloads.append(payload_of(model.name, model.signature.name, {name: pixels[np.newaxis].astype("float32")}))
    write_warmup_file(path, payloads)
    return path


def _row(variant: str, checked: Any, result: dict[str, Any]) -> str:
    def cell(metric: str) -> str:
        m = result["metrics"][metric]
        if m["ratio"] is None:
            return "-"
        lo, hi = m["ratio_ci95"]
        return f"x{m['ratio']:.3f} ({lo:.3f}-{hi:.3f}) {m['verdict'].replace('_', ' ')}"

    accuracy = checked.accuracy
    a, b = result["a"]["median"], result["b"]["median"]
    load = result["metrics"]["load_time_s"]
    return (
        f"| {variant} | {checked.variant.size_bytes / 2**20:.1f} MiB | {accuracy.top1_agreement:.3f} | "
        f"{accuracy.max_abs_error:.2g} | {checked.problem or 'passes'} | {a['throughput_rps']:.1f} → "
        f"{b['throughput_rps']:.1f} | {cell('throughput_rps')} | {a['latency_p99_ms']:.1f} → "
        f"{b['latency_p99_ms']:.1f} | {cell('latency_p99_ms')} | {cell('cpu_cores')} | "
        f"{load['a_median']:.2f} → {load['b_median']:.2f} s | {cell('load_time_s')} | {result['verdict']} |"
    )


def run(a: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    model, backend = resolve_model(a.model), resolve_backend("local")
    with tempfile.TemporaryDirectory(prefix="autotune-variants-") as tmp:
        requests = str(write_pixel_requests(model, a.images, Path(tmp) / "images.tfrecord"))
        settings = MeasureSettings(
            protocol=a.protocol,
            concurrency=a.concurrency,
            window_s=a.window_s,
            measure_unloaded=False,
            requests_file=requests,
        )
        measure = live_measure(model, settings, backend)
        rows, data = [], {"variants": {}}
        for variant in VARIANTS:
            _say(f"{variant}: building and checking against the SavedModel")
            checked = checked_variant(model, variant, requests)
            _say(f"{variant}: {checked.accuracy.to_json()} {checked.problem or 'passes'}")
            config = ServingConfig(model_variant=variant)
            result = compare(ServingConfig(), config, a.repeats, measure, _say).to_json()
            tp, p99 = result["metrics"]["throughput_rps"], result["metrics"]["latency_p99_ms"]
            _say(f"{variant}: throughput x{tp['ratio']:.3f} {tp['verdict']}, p99 x{p99['ratio']:.3f} {p99['verdict']}")
            rows.append(_row(variant, checked, result))
            data["variants"][variant] = {**checked.to_json(), "compare": result}
    requests_per_run = [
        r["requests"] for v in data["variants"].values() for side in "ab" for r in v["compare"][side]["runs"]
    ]
    lines = [
        f"### Variants: {a.model}, {a.protocol}, concurrency {a.concurrency}, {a.repeats}+{a.repeats} fresh "
        f"servers per variant, A = the SavedModel, B = the variant (both TF Serving's defaults)",
        "",
        *provenance("variants.py"),
        f"- requests: {a.images} decoded synthetic images, replayed; {min(requests_per_run)}-"
        f"{max(requests_per_run)} requests per run; the guard's inputs are the same images",
        "",
        "| variant | model.tflite | top-1 agreement | max abs error | guard (≥ 0.99) | rps A → B | throughput B/A "
        "(95% CI) | p99 ms A → B | p99 B/A | CPU B/A | load A → B | load B/A | verdict |",
        "| --- | ---: | ---: | ---: | --- | ---: | --- | ---: | --- | --- | ---: | --- | --- |",
        *rows,
    ]
    return lines, data


def main() -> None:
    interrupt_on_sigterm()  # a SIGTERM stops what it started, as Ctrl-C does
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="mobilenet_float")
    p.add_argument("--protocol", default="grpc", choices=("rest", "grpc"))
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--window-s", type=float, default=2.0)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    lines, data = run(a)
    text = "\n".join(lines) + "\n"
    print(text)
    DATA.mkdir(exist_ok=True)
    path = DATA / f"variants-{a.model}-{a.protocol}-c{a.concurrency}.json"
    path.write_text(json.dumps({"args": vars(a) | {"out": str(a.out)}, **data}, indent=2) + "\n")
    if a.out:
        a.out.write_text(text)


if __name__ == "__main__":
    main()
