"""`autotune report`: a job's Pareto plot (PNG and interactive HTML) and its trials, as gains over defaults.

Goodput is the throughput of a trial that met the SLO and error limit, 0 otherwise,
so "x1.4 over defaults" always compares configurations under the same SLO.
"""

from __future__ import annotations

import csv
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

from autotune import outdir
from autotune.knobs import MIXED_PRECISION, SAVEDMODEL, ServingConfig, is_default_config
from autotune.model_check import DRIFT_LIMIT, STORED, ModelCheck, relative_error
from autotune.states import TrialState
from autotune.store.pareto import front, trial_goodput
from autotune.store.schema import JobRow, TrialRow

_DEFAULTS = ServingConfig().to_dict()


@dataclass
class Row:
    """One trial in the report."""

    number: int
    state: str
    feasible: bool
    pareto: bool
    defaults: bool
    config: dict[str, Any]
    metrics: dict[str, Any]
    goodput_rps: float
    gain_goodput: float | None
    gain_throughput: float | None
    gain_p99: float | None
    failure_reason: str | None
    predicted: dict[str, float] | None = None  # the performance model's figures (model-seeded jobs)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def is_defaults(trial: TrialRow) -> bool:
    """Whether a trial measured TF Serving's defaults (the baseline)."""
    return is_default_config(trial.config)


def rows_of(job: JobRow) -> tuple[list[Row], dict[str, Any]]:
    """Every trial with its gain over the defaults trial, and the job's headline figures."""
    base = next((t for t in job.trials if is_defaults(t) and t.state == TrialState.complete), None)
    base_tp = base.metrics.get("throughput_rps") if base else None
    base_p99 = base.metrics.get("latency_p99_ms") if base else None
    base_good = trial_goodput(base) if base else None
    on_front = {t.number for t in front(job)}
    rows = []
    for t in job.trials:
        m = t.metrics or {}
        good = trial_goodput(t)
        rows.append(
            Row(
                number=t.number,
                state=t.state,
                feasible=t.feasible,
                pareto=t.number in on_front,
                defaults=is_defaults(t),
                config=t.config,
                metrics=m,
                goodput_rps=good,
                gain_goodput=_ratio(good, base_good) if good else None,
                gain_throughput=_ratio(m.get("throughput_rps"), base_tp),
                gain_p99=_ratio(m.get("latency_p99_ms"), base_p99),
                failure_reason=t.failure_reason,
                predicted=predicted_of(t),
            )
        )
    best = max(rows, key=lambda r: r.goodput_rps, default=None)
    study = job.spec
    summary = {
        "job_id": job.id,
        "study": job.study_name,
        "model": job.model.name,
        "host": job.host.info,
        "state": job.state,
        "slo_p99_ms": study.slo_p99_ms,
        "max_error_rate": study.max_error_rate,
        "trials": len(rows),
        "defaults_goodput_rps": base_good,
        "defaults_feasible": bool(base and base.feasible),
        "best_trial": best.number if best and best.goodput_rps > 0 else None,
        "best_goodput_rps": best.goodput_rps if best else 0.0,
        "best_gain_goodput": _ratio(best.goodput_rps, base_good) if best and best.goodput_rps else None,
    }
    return rows, summary


def predicted_of(trial: TrialRow) -> dict[str, float] | None:
    """What the model predicted for TRIAL, or None when its job did not use the model."""
    figures = {k: getattr(trial, f"predicted_{k}") for k in STORED}
    return {k: v for k, v in figures.items() if v is not None} or None


def calibration_of(rows: list[Row]) -> dict[str, Any] | None:
    """The model against the measurement over a job's complete, stable trials: the median miss of each figure,
    and the trial after which the job's drift rule (model_check) stopped trusting the model; None without any."""
    judged = [
        r
        for r in sorted(rows, key=lambda r: r.number)
        if r.predicted and r.state == TrialState.complete and r.metrics.get("stable") is not False
    ]
    if not judged:
        return None
    check, drifted_after = ModelCheck(), None
    for r in judged:
        check.add(r.predicted, r.metrics)
        if drifted_after is None and check.drift():
            drifted_after = r.number
    misses = {}
    for k in STORED:
        errors = [e for r in judged if (e := relative_error((r.predicted or {}).get(k), r.metrics.get(k))) is not None]
        misses[k] = round(median(errors), 3) if errors else None
    return {
        "trials": len(judged),
        "median_abs_error": misses,
        "drift_limit": DRIFT_LIMIT,
        "drifted_after_trial": drifted_after,
        "points": [
            {"trial": r.number, "predicted": r.predicted, "measured": {k: r.metrics.get(k) for k in STORED}}
            for r in judged
        ],
    }


def calibration_png(calibration: dict[str, Any], model: str) -> bytes:
    """Predicted against measured throughput and p99, one point per trial, the line where they agree."""
    fig, axes = _axes(2)
    panels = (("throughput_rps", "throughput (requests/s)"), ("latency_p99_ms", "p99 (ms)"))
    for ax, (metric, label) in zip(axes, panels, strict=True):
        pts = [
            (p["trial"], p["measured"][metric], p["predicted"][metric])
            for p in calibration["points"]
            if p["measured"].get(metric) is not None and p["predicted"].get(metric) is not None
        ]
        if not pts:
            continue
        ax.plot([x for _, x, _ in pts], [y for _, _, y in pts], "o", color="tab:blue", label="trials")
        top = max(max(x, y) for _, x, y in pts) * 1.1
        ax.plot([0, top], [0, top], "--", color="grey", label="predicted = measured")
        for trial, x, y in pts:
            ax.annotate(str(trial), (x, y), xytext=(3, 3), textcoords="offset points", fontsize=8)
        ax.set_xlabel(f"measured {label}")
        ax.set_ylabel(f"predicted {label}")
        ax.legend(loc="best")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{model}: the performance model against the trials")
    return _save(fig)


def fronts_html(predicted: list[dict[str, Any]] | None, confirmed: list[dict[str, Any]]) -> str:
    """The model's predicted front beside the front the job confirmed on fresh servers."""
    if not predicted:
        return ""
    e = html.escape

    def knobs(config: dict[str, Any]) -> str:
        return " ".join(f"{k}={v}" for k, v in config.items() if v != _DEFAULTS.get(k)) or "TF Serving defaults"

    def figures(m: dict[str, Any]) -> str:
        rps, p99 = m.get("throughput_rps"), m.get("latency_p99_ms")
        return f"<td>{'-' if rps is None else f'{rps:.1f}'}</td><td>{'-' if p99 is None else f'{p99:.1f}'}</td>"

    head = "<tr><th>config</th><th>rps</th><th>p99 ms</th></tr>"
    pred = "".join(f"<tr><td>{e(knobs(p['config']))}</td>{figures(p['predicted'])}</tr>" for p in predicted)
    conf = "".join(f"<tr><td>{e(knobs(c['config']))}</td>{figures(c.get('metrics') or {})}</tr>" for c in confirmed)
    return (
        "<h2>The predicted front and the confirmed one</h2>"
        f"<p>Predicted by the model before any trial ({len(predicted)} configs):</p><table>{head}{pred}</table>"
        f"<p>Confirmed on fresh servers ({len(confirmed)} configs):</p><table>{head}{conf or ''}</table>"
    )


def calibration_html(calibration: dict[str, Any] | None) -> str:
    """The model's misses per figure, and whether the job stopped trusting it."""
    if not calibration:
        return ""
    e = html.escape
    miss = ", ".join(f"{k} {v:.0%}" for k, v in calibration["median_abs_error"].items() if v is not None)
    after = calibration["drifted_after_trial"]
    verdict = (
        f"the job stopped trusting the model after trial {after} (median throughput miss over "
        f"{calibration['drift_limit']:.0%})"
        if after is not None
        else f"within the drift limit ({calibration['drift_limit']:.0%} median throughput miss) throughout"
    )
    return (
        "<h2>The performance model against the trials</h2>"
        f"<p>{calibration['trials']} trials; median miss: {e(miss)}; {e(verdict)}.</p>"
        '<p><img src="calibration.png" alt="predicted against measured"></p>'
    )


def _points(rows: list[Row]) -> dict[str, list[Row]]:
    measured = [r for r in rows if r.metrics.get("latency_p99_ms") is not None and r.state == TrialState.complete]
    return {
        "infeasible": [r for r in measured if not r.feasible],
        "feasible": [r for r in measured if r.feasible and not r.pareto],
        "Pareto set": sorted((r for r in measured if r.pareto), key=lambda r: r.metrics["latency_p99_ms"]),
    }


def _label(r: Row) -> str:
    knobs = " ".join(f"{k}={v}" for k, v in r.config.items() if v != _DEFAULTS.get(k))
    return f"trial {r.number}" + (" (TF Serving defaults)" if r.defaults else f": {knobs}")


def _axes(panels: int = 1) -> tuple[Any, Any]:
    """A figure for a PNG (PANELS side by side), drawn without a display."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt.subplots(1, panels, figsize=(8 * panels if panels > 1 else 8, 5), dpi=110)


def _save(fig: Any) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    from matplotlib import pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _png(fig: Any, ax: Any, xlabel: str, ylabel: str, title: str) -> bytes:
    """Label, legend and grid AX, then the figure as PNG bytes (the figure is closed)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return _save(fig)


def pareto_png(rows: list[Row], summary: dict[str, Any]) -> bytes:
    """Throughput vs p99 scatter with the Pareto front, the defaults and the SLO."""
    fig, ax = _axes()
    style = {"infeasible": ("x", "tab:orange"), "feasible": ("o", "tab:blue"), "Pareto set": ("o", "tab:red")}
    for name, pts in _points(rows).items():
        if pts:
            xs = [r.metrics["latency_p99_ms"] for r in pts]
            ys = [r.metrics["throughput_rps"] for r in pts]
            marker, color = style[name]
            ax.plot(xs, ys, marker, color=color, label=name, linestyle="-" if name == "Pareto set" else "none")
    for r in rows:
        if r.defaults and r.metrics.get("latency_p99_ms") is not None:
            ax.plot(r.metrics["latency_p99_ms"], r.metrics["throughput_rps"], "*", ms=16, color="black")
            xy = (r.metrics["latency_p99_ms"], r.metrics["throughput_rps"])
            ax.annotate("TF Serving defaults", xy, xytext=(10, -4), textcoords="offset points")
    if summary.get("slo_p99_ms"):
        ax.axvline(summary["slo_p99_ms"], linestyle="--", color="grey", label=f"SLO p99 {summary['slo_p99_ms']:g} ms")
    title = f"{summary['model']} · job {summary['job_id']} · {summary['trials']} trials"
    return _png(fig, ax, "latency p99 (ms)", "throughput (requests/s)", title)


def pareto_html(rows: list[Row], summary: dict[str, Any]) -> str:
    """The same plot, interactive (plotly, self-contained: serving hosts are often offline)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, pts in _points(rows).items():
        fig.add_trace(
            go.Scatter(
                x=[r.metrics["latency_p99_ms"] for r in pts],
                y=[r.metrics["throughput_rps"] for r in pts],
                mode="lines+markers" if name == "Pareto set" else "markers",
                name=name,
                text=[_label(r) for r in pts],
                hovertemplate="%{text}<br>p99 %{x:.1f} ms<br>%{y:.1f} rps<extra></extra>",
            )
        )
    if summary.get("slo_p99_ms"):
        fig.add_vline(x=summary["slo_p99_ms"], line_dash="dash", annotation_text="SLO")
    fig.update_layout(
        title=f"{summary['model']} · job {summary['job_id']}",
        xaxis_title="latency p99 (ms)",
        yaxis_title="throughput (requests/s)",
    )
    return fig.to_html(include_plotlyjs=True, full_html=True)


_COLUMNS = (
    "trial",
    "state",
    "pareto",
    "stable",
    "goodput rps",
    "x goodput",
    "rps",
    "rps 95% CI",
    "x rps",
    "p99 ms",
    "p99 95% CI",
    "x p99",
    "requests",
    "cpu cores",
    "cpus",
    "RSS peak/mean MiB",
    "throttled",
    "cost /1k req",
    "load s",
    "top-1 agreement",
)


def _cells(r: Row) -> list[str]:
    def f(x: Any, nd: int = 1) -> str:
        return "-" if x is None else f"{x:.{nd}f}" if isinstance(x, float) else str(x)

    m = r.metrics
    return [
        _label(r),
        r.state if r.state != TrialState.failed else f"failed: {r.failure_reason}",
        "yes" if r.pareto else "",
        {True: "yes", False: "NO"}.get(m.get("stable"), "-"),  # type: ignore[arg-type]
        f(r.goodput_rps),
        f(r.gain_goodput, 2),
        f(m.get("throughput_rps")),
        _ci(m.get("throughput_ci95")),
        f(r.gain_throughput, 2),
        f(m.get("latency_p99_ms")),
        _ci(m.get("latency_p99_ci95")),
        f(r.gain_p99, 2),
        f(m.get("requests")),
        f(m.get("cpu_cores"), 2),
        f(m.get("cpus_allocated"), 1),
        "-" if m.get("rss_mb") is None else f"{m['rss_mb']:.0f}/{m.get('rss_mean_mb') or m['rss_mb']:.0f}",
        "-" if m.get("throttled_periods") is None else f"{m['throttled_periods']} ({m.get('throttled_s') or 0:.1f} s)",
        "-" if m.get("cost_per_1k_requests") is None else f"{m['cost_per_1k_requests']:.4g}",
        f(m.get("load_time_s"), 2),
        _agreement(m.get("accuracy")),
    ]


def _agreement(accuracy: dict[str, Any] | None) -> str:
    """A variant's top-1 agreement with the SavedModel, and its guard's verdict (- for the SavedModel)."""
    if not accuracy:
        return "-"
    top1 = accuracy.get("top1_agreement")
    figure = f"{top1:.3f}" if top1 is not None else f"max abs err {accuracy.get('max_abs_error') or 0:.2g}"
    return figure + (f" (FAILS: {accuracy['problem']})" if accuracy.get("problem") else "")


def _numerics(config: dict[str, Any]) -> str:
    """How a config computes its answers: the model variant, with the mixed precision a SavedModel runs under."""
    variant, precision = config.get("model_variant", SAVEDMODEL), config.get("mixed_precision", MIXED_PRECISION[0])
    return variant if variant != SAVEDMODEL or precision == MIXED_PRECISION[0] else f"{variant}+{precision}"


def variants_of(rows: list[Row]) -> list[dict[str, Any]]:
    """Speed against accuracy, one entry per model variant a job measured (empty when it measured the SavedModel
    only): its best goodput and throughput, its median load time, its accuracy against the SavedModel."""
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(_numerics(r.config), []).append(r)
    if set(groups) <= {SAVEDMODEL}:
        return []
    out = []
    for name, group in groups.items():
        done = [r for r in group if r.state == TrialState.complete and r.metrics.get("throughput_rps") is not None]
        loads = sorted(r.metrics["load_time_s"] for r in done if r.metrics.get("load_time_s") is not None)
        accuracy = next((r.metrics["accuracy"] for r in group if r.metrics.get("accuracy")), None)
        out.append(
            {
                "variant": name,
                "trials": len(group),
                "best_goodput_rps": max((r.goodput_rps for r in done), default=None),
                "best_throughput_rps": max((r.metrics["throughput_rps"] for r in done), default=None),
                "median_load_time_s": loads[len(loads) // 2] if loads else None,
                "accuracy": accuracy,
                "guard": "reference" if name == SAVEDMODEL else (accuracy or {}).get("problem") or "passes",
            }
        )
    return out


def variants_html(variants: list[dict[str, Any]]) -> str:
    """The speed-against-accuracy table (nothing when the job measured the SavedModel only)."""
    if not variants:
        return ""

    def f(x: Any, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    rows = "".join(
        f"<tr><td>{html.escape(v['variant'])}</td><td>{v['trials']}</td><td>{f(v['best_goodput_rps'], '.1f')}</td>"
        f"<td>{f(v['best_throughput_rps'], '.1f')}</td><td>{f(v['median_load_time_s'], '.2f')}</td>"
        f"<td>{html.escape(_agreement(v['accuracy']))}</td>"
        f"<td>{f((v['accuracy'] or {}).get('max_abs_error'), '.2g')}</td><td>{html.escape(v['guard'])}</td></tr>"
        for v in variants
    )
    head = "".join(
        f"<th>{c}</th>"
        for c in ("variant", "trials", "best goodput rps", "best rps", "load s", "top-1", "max abs err", "guard")
    )
    return f"<h2>Model variants: speed against accuracy</h2><table><tr>{head}</tr>{rows}</table>"


def _ci(ci: list[float] | None) -> str:
    return "-" if not ci else f"{ci[0]:.1f}-{ci[1]:.1f}"


def trials_csv(rows: list[Row]) -> str:
    """Every trial, one per line, with its gains over defaults and its config as JSON."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([*_COLUMNS, "feasible", "config"])
    for r in rows:
        w.writerow([*_cells(r), r.feasible, json.dumps(r.config, sort_keys=True)])
    return buf.getvalue()


def report_html(rows: list[Row], summary: dict[str, Any]) -> str:
    """A single page: headline, the plot, and the trial table."""
    e = html.escape
    gain = summary["best_gain_goodput"]
    if summary.get("verdict_line"):
        headline = f"Confirmed on fresh servers: {summary['verdict_line']}."
    elif summary["best_trial"] is None:
        headline = "No configuration met the SLO."
    elif not summary["defaults_feasible"]:
        headline = (
            f"Best goodput {summary['best_goodput_rps']:.1f} rps (trial {summary['best_trial']}); "
            "TF Serving's defaults miss the SLO (goodput 0)."
        )
    else:
        headline = (
            f"Best goodput {summary['best_goodput_rps']:.1f} rps (trial {summary['best_trial']}), "
            f"x{gain:.2f} over TF Serving's defaults under the same SLO, from single draws "
            "(not confirmed: no verdict on significance)."
        )
    head = "".join(f"<th>{e(c)}</th>" for c in _COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in _cells(r)) + "</tr>" for r in rows)
    host = summary["host"] or {}
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>autotune report: {e(summary["model"])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}</style></head>
<body><h1>{e(summary["model"])}: job {summary["job_id"]} ({e(summary["state"])})</h1>
<p>{e(headline)}</p>
<p>SLO: p99 &le; {e(str(summary["slo_p99_ms"]))} ms, error rate &le; {e(str(summary["max_error_rate"]))}.
Host: {e(str(host.get("cpu_model")))}, {e(str(host.get("cpus")))} CPUs, GPUs: {e(str(host.get("gpus") or "none"))}.
Study: {e(summary["study"])}.</p>
<p><img src="pareto.png" alt="Pareto plot"><br><a href="pareto.html">interactive plot</a> ·
<a href="trials.csv">trials.csv</a> · <a href="summary.json">summary.json</a></p>
<table><tr>{head}</tr>{body}</table>
{variants_html(summary.get("variants") or [])}
{sweep_html(summary.get("sweeps") or [])}
{drift_html(summary.get("drift") or [])}
{calibration_html(summary.get("calibration"))}
{fronts_html(summary.get("predicted_front"), summary.get("confirmed_front") or [])}
</body></html>
"""


def sweep_png(sweeps: list[dict[str, Any]], model: str) -> bytes:
    """Latency against throughput as the load ramps, one curve per swept config, the SLO as a line."""
    fig, ax = _axes()
    for s in sweeps:
        pts = [p for p in s["points"] if p["latency_p99_ms"] is not None]
        xs, ys = [p["throughput_rps"] for p in pts], [p["latency_p99_ms"] for p in pts]
        ax.plot(xs, ys, "o-", label=f"trial {s['trial']} p99")
        for p in pts:
            ax.annotate(
                f"c={p['concurrency']}",
                (p["throughput_rps"], p["latency_p99_ms"]),
                xytext=(4, 4),
                textcoords="offset points",
            )
    slo = next((s["slo_ms"] for s in sweeps if s.get("slo_ms")), None)
    if slo:
        ax.axhline(slo, linestyle="--", color="grey", label=f"SLO p99 {slo:g} ms")
    return _png(fig, ax, "throughput (requests/s)", "latency p99 (ms)", f"{model}: load ramp of the deployed pick")


_SWEEP_COLUMNS = {
    "concurrency": "clients",
    "throughput_rps": "rps",
    "latency_p50_ms": "p50 ms",
    "latency_p99_ms": "p99 ms",
    "requests": "requests",
    "stable": "stable",
    "cpu_cores": "cpu",
    "rss_mb": "RSS MiB",
    "throttled_periods": "throttled",
}


def sweep_html(sweeps: list[dict[str, Any]]) -> str:
    """The ramp's levels and where each swept config's SLO broke."""
    if not sweeps:
        return ""
    e = html.escape
    parts = ["<h2>Load ramp of the deployed pick</h2>", '<p><img src="sweep.png" alt="latency vs throughput"></p>']
    for s in sweeps:
        if s["slo_breaks_at_concurrency"] is not None:
            verdict = f"p99 breaks the SLO at {s['slo_breaks_at_concurrency']} concurrent clients"
        else:
            verdict = f"the SLO held up to the ramp's end ({s['stopped']})"
        within = s["max_concurrency_within_slo"]
        parts.append(f"<p>trial {s['trial']}: {e(verdict)}; most clients within the SLO: {e(str(within))}.</p>")
        head = "<tr>" + "".join(f"<th>{c}</th>" for c in _SWEEP_COLUMNS.values()) + "</tr>"
        rows = "".join(
            "<tr>" + "".join(f"<td>{e('-' if p.get(k) is None else str(p[k]))}</td>" for k in _SWEEP_COLUMNS) + "</tr>"
            for p in s["points"]
        )
        parts.append(f"<table>{head}{rows}</table>")
    return "".join(parts)


def drift_html(drift: list[dict[str, Any]]) -> str:
    """The retune's re-measurements of the previous Pareto set, drifted ones first."""
    if not drift:
        return ""
    e = html.escape
    lines = []
    for d in sorted(drift, key=lambda d: not d["drifted"]):
        change = "-" if d["change"] is None else f"{d['change']:+.1%}"
        knobs = " ".join(f"{k}={v}" for k, v in d["config"].items() if v != _DEFAULTS.get(k)) or "TF Serving defaults"
        causes = ", ".join(d["causes"]) or ""
        lines.append(
            f"<tr><td>{e(knobs)}</td><td>{d['before_goodput_rps']:.1f}</td><td>{d['after_goodput_rps']:.1f}</td>"
            f"<td>{e(change)}</td><td>{'DRIFT' if d['drifted'] else 'within noise'}</td><td>{e(causes)}</td></tr>"
        )
    head = "<tr><th>config</th><th>before rps</th><th>now rps</th><th>change</th><th></th><th>causes</th></tr>"
    return f"<h2>Drift since job {drift[0]['previous_job_id']}</h2><table>{head}{''.join(lines)}</table>"


def write_report(job: JobRow, out: Path, force: bool) -> Path:
    """Write report.html, pareto.png, pareto.html, trials.csv and summary.json into OUT atomically."""
    from autotune.confirm import summary_line
    from autotune.store import Store

    target = outdir.check_out_dir(out, force)
    rows, summary = rows_of(job)
    store = Store()
    summary["drift"] = store.drift_checks(job.id)
    entries = store.job_front(job)
    summary["confirmed_front"] = [e for e in entries if e.get("confirmed")]
    summary["verdict_line"] = summary_line(entries, job.objectives)
    summary["sweeps"] = [{"trial": e["trial"], **e["sweep"]} for e in entries if e.get("sweep")]
    summary["variants"] = variants_of(rows)
    summary["calibration"] = calibration_of(rows)
    summary["predicted_front"] = job.predicted_front
    files: dict[str, str | bytes] = {
        "report.html": report_html(rows, summary),
        "pareto.png": pareto_png(rows, summary),
        "pareto.html": pareto_html(rows, summary),
        "trials.csv": trials_csv(rows),
        "summary.json": json.dumps(summary, indent=2) + "\n",
    }
    if summary["sweeps"]:
        files["sweep.png"] = sweep_png(summary["sweeps"], summary["model"])
    if summary["calibration"]:
        files["calibration.png"] = calibration_png(summary["calibration"], summary["model"])
    outdir.write_dir(files, target)
    return target
