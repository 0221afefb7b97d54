"""`autotune models build|optimize|list`: the built-in models and their variants."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from autotune import tables
from autotune.cli.app import models_app
from autotune.cli.common import ForceOpt, JsonOpt, SignatureOpt, emit, err, flag, load_tensorflow
from autotune.errors import AutotuneError
from autotune.options import MIN_TOP1_AGREEMENT


@models_app.command("build")
def models_build(
    name: Annotated[str, typer.Argument(help="resnet, mobilenet or tiny")],
    out_dir: Annotated[Path, typer.Option("--out", help="base directory; the model goes to OUT/1")],
    as_json: JsonOpt = False,
) -> None:
    """Write a built-in model as a SavedModel in TF Serving's layout (OUT/1/saved_model.pb)."""
    load_tensorflow()
    from autotune.models.builtin import build

    path = build(name, out_dir)
    emit(as_json, {"model": name, "path": str(path)}, f"wrote {name} to {path}")


@models_app.command("optimize")
def models_optimize(
    model: Annotated[str, typer.Argument(help="built-in name or SavedModel base directory")],
    out_dir: Annotated[Path, typer.Option("--out", help="directory for the variants (OUT/VARIANT/VERSION)")],
    variant: Annotated[
        list[str] | None, typer.Option(help="tflite_fp16, tflite_int8 or xla (repeatable; default all)")
    ] = None,
    requests_file: Annotated[
        Path | None,
        typer.Option("--requests", help="inputs for the accuracy check (and int8 calibration): a request file"),
    ] = None,
    samples: Annotated[int, typer.Option(help="synthetic inputs for the accuracy check without --requests")] = 128,
    min_top1_agreement: Annotated[float, flag(MIN_TOP1_AGREEMENT)] = MIN_TOP1_AGREEMENT.default,
    max_abs_error: Annotated[float | None, typer.Option(help="the guard for regressions: largest error")] = None,
    signature: SignatureOpt = "serving_default",
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Build a model's variants (TFLite where --prefer_tflite_model finds it, the SavedModel XLA-compiled) and check
    each one's answers against the original's."""
    from autotune.models.optimize import optimize
    from autotune.models.resolve import resolve_model
    from autotune.models.variants import VARIANTS
    from autotune.outdir import check_out_dir

    chosen = variant or list(VARIANTS)
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        raise AutotuneError(f"--variant {unknown[0]}: unknown (known: {', '.join(VARIANTS)})")
    if not 1 <= samples <= 100_000:
        raise AutotuneError(f"--samples must be in 1..100000, got {samples}")
    MIN_TOP1_AGREEMENT.check("min_top1_agreement", min_top1_agreement)
    target = check_out_dir(out_dir, force)
    with err.status(f"preparing model {model}"):
        ref = resolve_model(model, signature)
    load_tensorflow()
    if target.exists():
        import shutil

        shutil.rmtree(target)
    path = str(requests_file.expanduser().resolve()) if requests_file else None
    with err.status("optimizing") as status:
        checked = optimize(ref, chosen, target, path, samples, min_top1_agreement, max_abs_error, status.update)
    doc = {"model": ref.name, "out": str(target), "variants": [c.to_json() for c in checked]}
    (target / "optimize.json").write_text(json.dumps(doc, indent=2) + "\n")
    emit(as_json, doc, lambda: tables.print_variants(doc))


@models_app.command("list")
def models_list(as_json: JsonOpt = False) -> None:
    """List the built-in models and whether they are cached."""
    from autotune.models.builtin import BUILTINS
    from autotune.paths import models_dir

    rows = [{"name": n, "cached": (models_dir() / n / "1" / "saved_model.pb").exists()} for n in BUILTINS]
    lines = "\n".join(f"{r['name']}\t{'cached' if r['cached'] else 'not built'}" for r in rows)
    emit(as_json, rows, lines)
