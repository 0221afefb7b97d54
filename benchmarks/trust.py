"""Can the figures be trusted? Repeatability across fresh servers, and `compare`'s error rates.

    python benchmarks/trust.py repeat --model tiny --protocol grpc --concurrency 8 --repeats 5
    python benchmarks/trust.py repeat --model mobilenet --protocol rest --concurrency 16 --repeats 5
    python benchmarks/trust.py repeat --model resnet --protocol rest --concurrency 8 --repeats 5
    python benchmarks/trust.py aa --model tiny --protocol grpc --concurrency 8 --runs 20
    python benchmarks/trust.py ab --model mobilenet --concurrency 8 --runs 5
    python benchmarks/trust.py target --model mobilenet --concurrency 8 --runs 3

`target` compares a server already running, measured with --target's path (nothing started, its
process found by its port), against fresh servers of the same config (TF Serving's defaults), RUNS
times: a --target reading should be within the noise of a normal bench.

`repeat` measures TF Serving's defaults REPEATS times, a fresh server each, with autotune's protocol
(send-time windows, model warm-up, stable span of >= 200 requests, one re-measure); it reports the
coefficient of variation of throughput and p99 across the repeats, and p99/p50. `aa` runs `compare`
with the same config on both sides RUNS times and counts `better`/`worse` (false positives),
`equivalent` and `inconclusive`, and how often the verdict's interval holds the true ratio 1 (coverage);
`ab` compares 1 intra-op / 1 inter-op thread against the defaults (a known loss on a multi-core host)
RUNS times and counts how often it is found `worse`. compare runs sequentially (pairs until every
objective's 95% interval is within +-PRECISION, MIN..MAX-REPEATS a side) unless --repeats fixes the count.
Both sides of every run (figures, server pid, start time) go to benchmarks/data/trust-*.json; the
markdown summary to stdout and --out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from statistics import median
from typing import Any

from _common import provenance, stop_if_interrupted

from autotune.compare import check_min_effect, compare, describe, live_measure, running_side_a, stop_rule
from autotune.knobs import ServingConfig
from autotune.load.stats import coefficient_of_variation
from autotune.measure import MeasureSettings
from autotune.models.resolve import resolve_model
from autotune.procs import interrupt_on_sigterm
from autotune.servers.backends import resolve_backend

DATA = Path(__file__).parent / "data"


def _settings(a: argparse.Namespace) -> MeasureSettings:
    return MeasureSettings(protocol=a.protocol, concurrency=a.concurrency, window_s=a.window_s, measure_unloaded=False)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def repeat(a: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    model, backend = resolve_model(a.model), resolve_backend("local")
    runs = []
    measure = live_measure(model, _settings(a), backend)  # each run keeps its server's pid
    for i in range(a.repeats):
        started = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        r = measure(ServingConfig(), None)
        stop_if_interrupted(r.failure_reason)
        m = {**r.metrics, "failure_reason": r.failure_reason, "started_at": started}
        runs.append(m)
        _say(
            f"[{i + 1}/{a.repeats}] {m.get('throughput_rps')} rps {m.get('throughput_ci95')}, p99 "
            f"{m.get('latency_p99_ms')} ms {m.get('latency_p99_ci95')}, n={m.get('requests')}, "
            f"stable={m.get('stable')} remeasured={m.get('remeasured')} {r.failure_reason or ''}"
        )
    ok = [m for m in runs if m.get("throughput_rps") is not None and not m["failure_reason"]]
    tp = [m["throughput_rps"] for m in ok]
    p99 = [m["latency_p99_ms"] for m in ok]
    ratio = [m["latency_p99_ms"] / m["latency_p50_ms"] for m in ok if m.get("latency_p50_ms")]
    lines = [
        f"### Repeatability: {a.model}, {a.protocol}, concurrency {a.concurrency}, {a.repeats} fresh servers",
        "",
        *provenance("trust.py"),
        "",
        "| throughput median rps | throughput CV | p99 median ms | p99 CV | p99/p50 median | requests per run"
        " | stable runs | re-measured | failed |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {median(tp):.1f} | {coefficient_of_variation(tp):.1%} | {median(p99):.1f} | "
        f"{coefficient_of_variation(p99):.1%} | {median(ratio):.2f} | "
        f"{min(m['requests'] for m in ok)}-{max(m['requests'] for m in ok)} | "
        f"{sum(bool(m['stable']) for m in ok)}/{len(runs)} | {sum(bool(m.get('remeasured')) for m in ok)} | "
        f"{len(runs) - len(ok)} |",
    ]
    return lines, {"runs": runs}


def _rule_text(a: argparse.Namespace) -> str:
    rule = stop_rule(a.repeats, a.precision, a.max_repeats)
    return f"{describe(rule)}, practical threshold +-{a.min_effect:.0%}"


def _one(i: int, a: argparse.Namespace, result: dict[str, Any]) -> None:
    """One compare's line on stderr as it finishes."""

    def show(m: dict[str, Any]) -> str:
        if m["ratio"] is None:
            return m["verdict"]
        lo, hi = m["ratio_ci"]
        return f"x{m['ratio']:.3f} ({lo:.3f}-{hi:.3f}) {m['verdict']} mde {m['mde']:.1%}"

    tp, p99 = result["metrics"]["throughput_rps"], result["metrics"]["latency_p99_ms"]
    stop = result["stopping"]
    _say(
        f"[{i + 1}/{a.runs}] {stop['rounds']} pairs ({stop['stopped']}): throughput {show(tp)}; p99 {show(p99)}; "
        f"overall {result['verdict']}"
    )


def _compare_all(a: argparse.Namespace, base: ServingConfig, b_config: ServingConfig, measure: Any) -> list[dict]:
    rule, effects = stop_rule(a.repeats, a.precision, a.max_repeats), check_min_effect(a.min_effect)
    out = []
    partial = _data_path(a).with_suffix(".partial.jsonl")  # an interrupted series keeps what it measured
    partial.unlink(missing_ok=True)
    for i in range(a.runs):
        result = compare(base, b_config, rule, measure, min_effects=effects).to_json()
        _one(i, a, result)
        out.append(result)
        with partial.open("a") as f:
            f.write(json.dumps(result) + "\n")
    return out


def _data_path(a: argparse.Namespace) -> Path:
    return DATA / f"trust-{a.what}-{a.model}-{a.protocol}-c{a.concurrency}.json"


def _compares(a: argparse.Namespace, b_config: ServingConfig) -> list[dict[str, Any]]:
    model, backend = resolve_model(a.model), resolve_backend("local")
    return _compare_all(a, ServingConfig(), b_config, live_measure(model, _settings(a), backend))


def _verdict_table(results: list[dict[str, Any]], truth: float | None = None) -> list[str]:
    """Verdict counts per metric; with TRUTH (1 for A/A), how often the verdict's interval held it."""
    lines = [
        "| metric | better | worse | equivalent | inconclusive | not measured | median ratio B/A | median mde |"
        " interval holds the truth |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for metric in ("throughput_rps", "latency_p99_ms", "cpu_cores"):
        ms = [r["metrics"][metric] for r in results]
        verdicts = [m["verdict"] for m in ms]
        ratios = [m["ratio"] for m in ms if m["ratio"]]
        mdes = [m["mde"] for m in ms if m.get("mde") is not None]
        held = [m["ratio_ci"][0] <= truth <= m["ratio_ci"][1] for m in ms if m.get("ratio_ci")] if truth else []
        lines.append(
            f"| {metric} | {verdicts.count('better')} | {verdicts.count('worse')} | {verdicts.count('equivalent')} | "
            f"{verdicts.count('inconclusive')} | {verdicts.count('not_measured')} | "
            f"{median(ratios):.3f} | {median(mdes):.1%} | {f'{sum(held)}/{len(held)}' if held else '-'} |"
            if ratios and mdes
            else f"| {metric} | - | - | - | - | {verdicts.count('not_measured')} | - | - | - |"
        )
    overall = [r["verdict"] for r in results]
    pairs = [r["stopping"]["rounds"] for r in results]
    reached = sum(bool(r["stopping"]["precision_reached"]) for r in results)
    lines.append(
        "\nOverall verdicts (throughput and p99): " + ", ".join(f"{v} {overall.count(v)}" for v in sorted(set(overall)))
    )
    lines.append(
        f"\nPairs per compare: median {median(pairs):g} ({min(pairs)}-{max(pairs)}); the precision was reached in "
        f"{reached} of {len(results)}; Holm-adjusted alpha per objective: {results[0]['alpha_adjusted']}"
    )
    return lines


def aa(a: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    results = _compares(a, ServingConfig())
    lines = [
        f"### A/A compare: {a.model}, {a.protocol}, concurrency {a.concurrency}, {a.runs} compares "
        f"({_rule_text(a)}), TF Serving's defaults on both sides",
        "",
        *provenance("trust.py"),
        "",
        *_verdict_table(results, truth=1.0),
    ]
    return lines, {"compares": results}


def ab(a: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    results = _compares(a, ServingConfig(intra_op_threads=1, inter_op_threads=1))
    lines = [
        f"### Known effect: {a.model}, {a.protocol}, concurrency {a.concurrency}, {a.runs} compares "
        f"({_rule_text(a)}), B = 1 intra-op and 1 inter-op thread, A = defaults",
        "",
        *provenance("trust.py"),
        "",
        *_verdict_table(results),
    ]
    return lines, {"compares": results}


def target(a: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    import tempfile

    from autotune.measure import free_ports
    from autotune.servers.process import ServerProcess
    from autotune.servers.target import Target

    model, backend = resolve_model(a.model), resolve_backend("local")
    grpc_port, rest_port = free_ports(2)
    argv = [*backend.program, f"--port={grpc_port}", f"--rest_api_port={rest_port}"]
    argv += [f"--model_name={model.name}", f"--model_base_path={model.base_path}"]
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(argv, Path(tmp) / "server.log")
        try:
            server.wait_ready(rest_port, model.name, 300)
            where = Target(f"http://127.0.0.1:{rest_port}", "127.0.0.1", rest_port, f"127.0.0.1:{grpc_port}")
            baseline = ServingConfig()
            measure = running_side_a(baseline, where, model, _settings(a), live_measure(model, _settings(a), backend))

            results = _compare_all(a, baseline, ServingConfig(), measure)
            pid_kept = server.alive()
        finally:
            server.stop()
    lines = [
        f"### --target against fresh servers: {a.model}, {a.protocol}, concurrency {a.concurrency}, {a.runs} compares "
        f"({_rule_text(a)}) of readings of one running server (A) and fresh servers (B), TF Serving's defaults",
        "",
        *provenance("trust.py"),
        f"- the running server (pid {server.pid}) was alive and unchanged after every reading: {pid_kept}",
        "",
        *_verdict_table(results, truth=1.0),
    ]
    return lines, {"compares": results, "target_pid": server.pid, "target_alive_after": pid_kept}


def main() -> None:
    interrupt_on_sigterm()  # a SIGTERM stops what it started, as Ctrl-C does
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("repeat", "aa", "ab", "target"))
    p.add_argument("--model", default="tiny")
    p.add_argument("--protocol", default="rest")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--window-s", type=float, default=2.0)
    p.add_argument("--repeats", type=int, help="fixed servers a side (aa, ab, target; default: sequential) or in all")
    p.add_argument("--precision", type=float, default=0.05, help="stop when each objective's 95%% CI is within +-this")
    p.add_argument("--max-repeats", type=int, default=10, help="most servers a side, sequential")
    p.add_argument("--min-effect", type=float, default=0.02, help="practical threshold (equivalence margin)")
    p.add_argument("--runs", type=int, default=20, help="compares (aa, ab)")
    p.add_argument("--out", type=Path, help="append the markdown summary here")
    a = p.parse_args()
    if a.what == "repeat" and a.repeats is None:
        a.repeats = 5
    lines, data = {"repeat": repeat, "aa": aa, "ab": ab, "target": target}[a.what](a)
    text = "\n".join(lines) + "\n"
    print(text)
    DATA.mkdir(exist_ok=True)
    path = _data_path(a)
    path.write_text(json.dumps({"args": vars(a) | {"out": str(a.out)}, "summary": text, **data}, indent=1))
    path.with_suffix(".partial.jsonl").unlink(missing_ok=True)
    if a.out:
        with a.out.open("a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
