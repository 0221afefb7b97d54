"""`autotune profile`, `predict` and `plan`: the performance model's commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from autotune import tables
from autotune.cli.app import app
from autotune.cli.common import (
    ConcurrencyOpt,
    JsonOpt,
    ModelOpt,
    Protocol,
    ProtocolOpt,
    RateOpt,
    SetOpt,
    StudyFileOpt,
    StudyModelOpt,
    emit,
    here,
    study_of,
)
from autotune.errors import AutotuneError
from autotune.options import PROFILE_S

ProfileFileOpt = Annotated[
    Path | None, typer.Option("--profile", help="a profile JSON file (autotune profile --json) instead of the store's")
]

AnyHostOpt = Annotated[bool, typer.Option(help="accept a --profile measured on another host (costs there, not here)")]


def cached_profile(model_spec: str, profile_file: Path | None = None, any_host: bool = False) -> Any:
    """The profile of MODEL_SPEC's content on this host (or from PROFILE_FILE); one-line errors when none fits."""
    import json

    from autotune.perfmodel.profile import Profile

    if profile_file is not None:
        try:
            loaded = Profile.from_json(json.loads(profile_file.read_text()))
        except (OSError, ValueError) as exc:
            raise AutotuneError(f"--profile {profile_file}: cannot read it ({exc})") from None
        if not any_host and loaded.host_fingerprint != here():
            cpu = loaded.host.get("cpu_model", "another host")
            raise AutotuneError(f"--profile {profile_file} was measured on another host ({cpu}); add --any-host")
        return loaded
    from autotune.models.resolve import resolve_model
    from autotune.store.profiles import Profiles

    return Profile.from_json(Profiles().of_model(resolve_model(model_spec), here(), model_spec))


@app.command()
def profile(
    model: ModelOpt,
    max_batch: Annotated[int, typer.Option(min=1, max=4096, help="largest batch size measured")] = 64,
    budget_s: Annotated[  # the least budget is a job's own profile's (PROFILE_S)
        float, typer.Option(min=PROFILE_S.bounds.lo, help="seconds of repeats per thread count")
    ] = 20.0,
    refresh: Annotated[bool, typer.Option(help="measure again even when this host has a profile")] = False,
    transport: Annotated[
        list[Protocol] | None, typer.Option(help="protocols whose transport cost is measured (default: both)")
    ] = None,
    variants: Annotated[
        str | None,
        typer.Option(
            help="also profile these model variants, comma-separated (tflite_fp16,tflite_int8), each built and "
            "checked against the SavedModel's answers as a trial would; a cached profile gains those it lacks"
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure what one batch of MODEL costs here (no server), by batch size and intra-op threads; cached."""
    from autotune.knobs import SAVEDMODEL
    from autotune.models.resolve import resolve_model
    from autotune.perfmodel.measure import stored_profile
    from autotune.spec import variant_names

    wanted = tuple(v for v in dict.fromkeys(variant_names(variants)) if v != SAVEDMODEL) if variants else ()
    ref = resolve_model(model)
    say = None if as_json else (lambda m: tables.err.print(f"profile {ref.name}: {m}", markup=False))
    protocols = tuple(p.value for p in transport) if transport else ("rest", "grpc")
    result, cached = stored_profile(ref, here(), None, protocols, wanted, say, refresh, max_batch, budget_s)
    emit(as_json, {**result.to_json(), "cached": cached}, lambda: _print_profile(result, cached))


def _print_profile(p: Any, cached: bool) -> None:
    from rich.table import Table

    from autotune.knobs import SAVEDMODEL

    threads = sorted({pt.threads for pt in p.points})
    table = Table(title=f"{p.model}: one call's wall time, ms (CPU ms), by variant, batch and intra-op threads")
    table.add_column("variant", justify="left")
    table.add_column("batch", justify="right")
    for t in threads:
        table.add_column(f"{t} thread(s)", justify="right")
    by = {(pt.variant, pt.batch, pt.threads): pt for pt in p.points}
    for v, b in sorted({(pt.variant, pt.batch) for pt in p.points}, key=lambda vb: (vb[0] != SAVEDMODEL, vb)):
        cells = [f"{by[v, b, t].wall_ms:.2f} ({by[v, b, t].cpu_ms:.2f})" if (v, b, t) in by else "-" for t in threads]
        table.add_row(v, str(b), *cells)
    tables.show(table)
    for variant, figures in p.accuracy.items():
        if "failed" in figures:
            print(f"{variant}: not profiled: {figures['failed']}")
        elif figures.get("top1_agreement") is not None:
            print(f"{variant}: top-1 agreement {figures['top1_agreement']:.3f} over {figures['samples']} inputs")
    for t in p.transport:
        serving = "" if t.variant == SAVEDMODEL else f" serving {t.variant}"
        print(
            f"{t.protocol}{serving}: {t.wall_ms:.2f} ms a request outside the model "
            f"(server CPU {t.server_cpu_ms:.2f} ms, client CPU {t.client_cpu_ms:.2f} ms)"
        )
    source = "cached" if cached else f"measured in {p.seconds:.0f} s"
    print(f"{source} on {p.host.get('cpu_model', '?')}, {p.cpus} cores, {p.measured_at}")


# The ramp `bench` runs when no load is given: 1, 2, 4, ... clients until throughput stops growing.
RAMP_MAX = 64
RAMP_MIN_GROWTH = 0.05


@app.command()
def predict(
    model: ModelOpt,
    set_: SetOpt = None,
    concurrency: ConcurrencyOpt = None,
    rate: RateOpt = None,
    protocol: ProtocolOpt = Protocol.rest,
    cores: Annotated[float | None, typer.Option(min=0.5, help="simulate a host of this many cores")] = None,
    slo_ms: Annotated[float | None, typer.Option(help="p99 bound for the ramp's operating point")] = None,
    requests: Annotated[int, typer.Option(min=100, max=1_000_000, help="simulated answers counted")] = 2000,
    profile_file: ProfileFileOpt = None,
    any_host: AnyHostOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Predict what `bench` would measure for a config, from the cached profile (no server is started)."""
    from autotune.knobs import parse_assignments
    from autotune.perfmodel.simulate import Load, simulate

    config = parse_assignments(list(set_ or []))
    # Checked before the profile is read: a bad load is an input error (Load says which).
    load = None if concurrency is None and rate is None else Load(concurrency=concurrency, rate=rate)
    p = cached_profile(model, profile_file, any_host)
    if load is None:
        levels = []
        c = 1
        while c <= RAMP_MAX:
            pred = simulate(p, config, Load(concurrency=c), protocol.value, cores, requests)
            if levels and (pred.throughput_rps < levels[-1][1].throughput_rps * (1 + RAMP_MIN_GROWTH)):
                break
            if slo_ms is not None and pred.latency_p99_ms > slo_ms:
                break
            levels.append((c, pred))
            c *= 2
        if not levels:
            raise AutotuneError(f"no load meets the SLO: p99 at concurrency 1 is {pred.latency_p99_ms:.1f} ms")
        load_doc, pred = {"concurrency": levels[-1][0]}, levels[-1][1]
    else:
        pred = simulate(p, config, load, protocol.value, cores, requests)
        load_doc = {"concurrency": concurrency} if concurrency is not None else {"rate": rate}
    doc = {
        "model": p.model,
        "config": config.to_dict(),
        "protocol": protocol.value,
        "cores": cores or p.cpus,
        **load_doc,
        **pred.to_json(),
        "predicted": True,
    }
    where = ", ".join(f"{k}={v}" for k, v in load_doc.items())
    emit(
        as_json,
        doc,
        f"predicted ({p.model}, {protocol.value}, {where}, {doc['cores']:g} cores): {pred.throughput_rps:.1f} rps, "
        f"p50 {pred.latency_p50_ms:.1f} ms, p99 {pred.latency_p99_ms:.1f} ms, CPU {pred.cpu_cores:.2f} cores, "
        f"errors {pred.error_rate:.2%}, mean batch {pred.mean_batch_size:.1f}",
    )


@app.command()
def plan(
    model: StudyModelOpt = None,
    study_file: StudyFileOpt = None,
    concurrency: ConcurrencyOpt = None,
    rate: RateOpt = None,
    cores: Annotated[float | None, typer.Option(min=0.5, help="plan for a host of this many cores")] = None,
    max_configs: Annotated[
        int, typer.Option(min=10, max=100_000, help="configs simulated in full: the screen's best")
    ] = 200,
    seeds: Annotated[int, typer.Option(min=1, max=20, help="configs a job would measure first")] = 4,
    profile_file: ProfileFileOpt = None,
    any_host: AnyHostOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Predict a study's Pareto front from the cached profile, and the configs a job would measure first.

    No server starts: every config of the space's grid (a sample past 20,000) is simulated at the study's load,
    screened at fewer answers when there are more than --max-configs."""
    import dataclasses

    from autotune.plan import check_objectives, make_plan
    from autotune.space import Host, build_space

    study = study_of(model, study_file)
    if concurrency is not None or rate is not None:
        study = dataclasses.replace(study, concurrency=concurrency, rate=rate)
    check_objectives(study)  # before the profile: an input error first
    profile = cached_profile(study.model, profile_file, any_host)
    host_cores = cores or profile.cpus
    host = Host(max(int(host_cores), 1), 0)  # the space as on that host; its GPUs are not modelled here
    space = build_space(study.space, host, tuple(study.objectives))
    result = make_plan(profile, study, space, study.protocol, cores, max_configs, seeds=seeds)
    emit(as_json, {"model": profile.model, "objectives": study.objectives, **result.to_json()}, lambda: _show(result))


def _show(result: Any) -> None:
    from rich.table import Table

    load = ", ".join(f"{k} {v:g}" for k, v in result.load.items())
    table = Table(title=f"predicted front · {load} · {result.cores:g} cores (predicted, not measured)")
    for col in ("seed", "config", "rps", "p99 ms", "cpu cores"):
        table.add_column(col, justify="left" if col == "config" else "right")
    seeds = {id(p) for p in result.seeds}
    behind = result.seeds_behind_front
    for p in [*result.front, *behind]:
        m = p.metrics
        knobs = " ".join(f"{k}={v}" for k, v in p.config.to_dict().items())
        mark = "*" if id(p) in seeds else ""
        table.add_row(mark, knobs, f"{m['throughput_rps']:.1f}", f"{m['latency_p99_ms']:.1f}", f"{m['cpu_cores']:.2f}")
    if result.front:
        tables.show(table)
    else:
        tables.err.print("no config is predicted to meet the study's constraints: nothing to plan", markup=False)
    for variant, why in result.left_out.items():
        tables.err.print(f"{variant}: not planned: {why}", markup=False)
    tables.err.print(
        f"{result.coverage}, {result.feasible} feasible, in {result.seconds:.1f} s; "
        f"* = the {len(result.seeds)} a job would measure first"
        + (
            f" ({len(behind)} from behind the front, listed last: the model predicts the rest of it alike)"
            if behind
            else ""
        ),
        markup=False,
    )
