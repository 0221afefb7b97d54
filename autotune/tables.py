"""How results look: rich tables in a terminal, whole aligned text in a log or pipe, TSV under --plain.

JSON output needs none of this.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

# soft_wrap: a line printed to a log or a pipe stays one line; rich would fold it at 80 columns there.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

# Set by the CLI's --plain: every table as tab-separated values (a header row, then one row per line).
PLAIN = False


def show(table: Table) -> None:
    """Print TABLE: boxed in a terminal; elsewhere every cell whole (never cut to a width), aligned or as TSV."""
    if out.is_terminal and not PLAIN:
        out.print(table, soft_wrap=False)
        return
    header = [_cell(c.header) for c in table.columns]
    columns = [[_cell(v) for v in c.cells] for c in table.columns]
    rows = [list(r) for r in zip(*columns, strict=True)] if columns else []
    if PLAIN:
        print("\n".join("\t".join(r) for r in [header, *rows]))
        return
    widths = [max(len(v) for v in [h, *col]) for h, col in zip(header, columns, strict=True)]
    right = [c.justify == "right" for c in table.columns]

    def line(cells: list[str]) -> str:
        padded = (v.rjust(w) if r else v.ljust(w) for v, w, r in zip(cells, widths, right, strict=True))
        return "  ".join(padded).rstrip()

    title = [_cell(table.title)] if table.title else []
    print("\n".join([*title, line(header), *(line(r) for r in rows)]))


def _cell(value: Any) -> str:
    # Tabs and newlines would break a row of TSV or of aligned text in two.
    text = getattr(value, "plain", value)
    return " ".join(str(text).split()) if text is not None else ""


def print_comparison(result: Any) -> None:
    table = Table(title=f"B against A · {result.a.medians()['runs']} + {result.b.medians()['runs']} fresh servers")
    for col in ("metric", "A median", "B median", "B/A", "95% CI", "mde", "verdict"):
        table.add_column(col, justify="right" if col != "metric" else "left")
    for name, m in result.metrics.items():
        ci = f"{m.ratio_ci95[0]:.3f}-{m.ratio_ci95[1]:.3f}" if m.ratio_ci95 else "-"
        ratio = f"x{m.ratio:.3f}" if m.ratio is not None else "-"
        mde = f"{m.mde:.1%}" if m.mde is not None else "-"  # the smallest change these runs could detect
        table.add_row(name, fmt(m.a_median, 2), fmt(m.b_median, 2), ratio, ci, mde, m.verdict.value)
    show(table)
    out.print(f"verdict on {', '.join(result.objectives)}: {result.verdict.value} ({result.message()})")


def print_result(result: Any) -> None:
    table = Table(title=f"{result.model} · {result.backend} · {result.protocol}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.metrics.items():
        if isinstance(value, dict):  # a variant's accuracy: one row per figure
            for inner, v in value.items():
                table.add_row(f"{key}.{inner}", "-" if v is None else str(v))
            continue
        table.add_row(key, "-" if value is None else str(value))
    show(table)
    if result.levels:
        levels = Table(title="load levels")
        for col in ("load", "rps", "p50 ms", "p99 ms", "errors", "cpu cores", "stable"):
            levels.add_column(col, justify="right")
        for lv in result.levels:
            load = f"c={lv.concurrency}" if lv.mode == "closed" else f"{lv.rate:g}/s"
            levels.add_row(
                load,
                f"{lv.throughput_rps:.1f}",
                fmt(lv.latency_p50_ms),
                fmt(lv.latency_p99_ms),
                f"{lv.error_rate:.2%}",
                fmt(lv.cpu_cores, 2),
                str(lv.stable),
            )
        show(levels)


def fmt(x: float | None, nd: int = 1) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def print_status(
    daemon_info: dict[str, Any] | None,
    jobs: list[dict[str, Any]],
    drift: list[dict[str, Any]],
    schedules: list[dict[str, Any]],
) -> None:
    if daemon_info:
        gate = daemon_info["gate"] + (f" ({daemon_info['gate_reason']})" if daemon_info.get("gate_reason") else "")
        out.print(f"daemon pid {daemon_info['pid']}, up {daemon_info['uptime_s']}s, gate {gate}", markup=False)
    else:
        out.print("daemon not running")
    table = Table(title="jobs")
    for col in ("id", "model", "state", "trials", "best goodput rps", "note"):
        table.add_column(col)
    for j in jobs:
        best = j["best_goodput_rps"]
        table.add_row(
            str(j["id"]),
            j["model"],
            j["state"],
            f"{j['trials_done']}/{j['trials_total']}",
            "-" if best is None else f"{best:.1f}",
            j["waiting"] or j["error"] or "",
        )
    show(table)
    for d in drift:
        if d["drifted"]:
            out.print(
                f"drift: {d['model']} job {d['job_id']}: {short(d['config'])} {d['before_goodput_rps']:.1f} -> "
                f"{d['after_goodput_rps']:.1f} rps {'(' + ', '.join(d['causes']) + ')' if d['causes'] else ''}",
                markup=False,
            )
    for r in schedules:
        if r["skipped_runs"]:
            out.print(
                f"schedule {r['id']} ({r['model']}): {r['skipped_runs']} run(s) skipped; last: {r['last_skip_reason']}",
                markup=False,
            )


_SHOWN = ("throughput_rps", "latency_p99_ms", "cpu_cores", "concurrency", "stable")


def short(d: dict[str, Any]) -> str:
    """One line: a config's non-default knobs, or a metrics dict's headline figures."""
    if "throughput_rps" in d:
        keep = {k: d[k] for k in _SHOWN if k in d}
    else:
        keep = {k: v for k, v in d.items() if v not in (None, 0, 0.0, [], False) or k == "enable_batching"}
    return " ".join(f"{k}={v}" for k, v in keep.items())


def print_pareto(rows: list[dict[str, Any]], title: str, objectives: list[str]) -> None:
    table = Table(title=title)
    for col in (
        "trial",
        "config",
        "throughput rps (95% CI)",
        "p99 ms (95% CI)",
        "requests",
        "cpu cores",
        "cost /1k req",
        "vs defaults",
    ):
        table.add_column(col)
    for row in sorted(rows, key=lambda r: (-(r["metrics"].get("throughput_rps") or 0), r["trial"])):
        m = row["metrics"]
        if row.get("confirmed"):
            # A cost study is judged on cost; the others lead with throughput.
            name, label = (
                ("cost_per_1k_requests", "cost") if m.get("cost_per_1k_requests") else ("throughput_rps", "tp")
            )
            ratio = row["vs_defaults"].get(name, {}).get("ratio")
            versus = f"{row['verdict']} ({label} x{ratio:.2f}, {m.get('runs')} runs)" if ratio else row["verdict"]
        else:
            versus = "not confirmed"
        table.add_row(
            str(row["trial"]),
            short(row["config"]),
            with_ci(m.get("throughput_rps"), m.get("throughput_ci95")),
            with_ci(m.get("latency_p99_ms"), m.get("latency_p99_ci95")),
            str(m.get("requests", "-")),
            str(m.get("cpu_cores")),
            "-" if m.get("cost_per_1k_requests") is None else f"{m['cost_per_1k_requests']:.4g}",
            versus,
        )
    if not rows:
        err.print("no feasible trial yet: no configuration met the SLO and error limit")
    show(table)


def with_ci(value: float | None, ci: list[float] | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} ({ci[0]:.1f}-{ci[1]:.1f})" if ci else f"{value:.1f}"


def print_schedules(rows: list[dict[str, Any]]) -> None:
    table = Table(title="schedules")
    for col in ("id", "model", "cron", "next run (UTC)", "last job", "last late s", "skipped runs"):
        table.add_column(col)
    for r in rows:
        late = "-" if r["late_s"] is None else f"{r['late_s']:.0f}"
        table.add_row(
            str(r["id"]),
            r["model"],
            r["cron"],
            r["next_run_at"],
            str(r["last_job_id"] or "-"),
            late,
            str(r["skipped_runs"]),
        )
    show(table)


def print_variants(doc: dict[str, Any]) -> None:
    """`models optimize`: each variant's size, conversion time and accuracy against the original."""
    table = Table(title=f"{doc['model']} variants · {doc['out']}")
    for col in ("variant", "model file", "convert s", "inputs", "top-1 agreement", "max abs err", "guard"):
        table.add_column(col, justify="left" if col in ("variant", "guard") else "right")
    for v in doc["variants"]:
        acc = v["accuracy"]
        top1 = "-" if acc["top1_agreement"] is None else f"{acc['top1_agreement']:.4f}"
        err_ = "-" if acc["max_abs_error"] is None else f"{acc['max_abs_error']:.3g}"
        guard = "passes" if v["passes"] else f"REJECTED: {v['problem']}"
        table.add_row(
            v["variant"],
            f"{v['model_bytes'] / 1024:.0f} KiB",
            str(v["convert_s"]),
            str(acc["samples"]),
            top1,
            err_,
            guard,
        )
    show(table)
