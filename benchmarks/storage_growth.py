"""Does opening Optuna's storage once per job, a sessionmaker per transaction, or SQLite's page cache make a
long-lived process grow? (issue 29's leak hunt; the second experiment repeats the first's design with units of
100 transactions; the third reads a growing database through pooled connections, SQLite's cache as set or capped)

Each mode runs in a fresh process: N Optuna studies on one SQLite file, each with a few trials and the user
attrs a job sets, the process's RSS recorded after each study. `new` opens a storage per study, as the daemon
did per job until the fix; `shared` asks autotune's optuna_storage(), one per process and URL. The slope per
study is the mean step between studies after the first WARM, with its 95% interval.

    python benchmarks/storage_growth.py [--studies 60] [--jobs 120] [--only pagecache] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from soak import machine, slope_with_ci

MODES = ("new", "shared")
WARM = 10  # SQLAlchemy's statement cache fills over the first studies in either mode

CHILD = r"""
import gc, json, sys
import optuna, psutil
from autotune.store.db import _engine_kwargs, ensure_schema, optuna_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)
mode, url, studies, trials = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ensure_schema(url)
rss = []
for i in range(studies):
    if mode == "shared":
        storage = optuna_storage(url)
    else:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
    study = optuna.create_study(storage=storage, study_name=f"{mode}/{i}", directions=["maximize", "minimize"])
    for key in ("host", "host_fingerprint", "job_id", "model_path"):
        study.set_user_attr(key, f"{key}-{i}")
    for _ in range(trials):
        t = study.ask()
        t.suggest_int("max_batch_size", 1, 64, log=True)
        t.suggest_categorical("protocol", ["rest", "grpc"])
        study.tell(t, [1.0, 2.0])
    del study, storage
    gc.collect()
    rss.append(psutil.Process().memory_info().rss / 2**20)
print(json.dumps(rss))
"""

# The second cause: a sessionmaker per transaction (`new`, as store/db.session() did) or one per URL (`shared`).
# One unit is TX transactions, each a small read, as a daemon's heartbeats and status refreshes are.
SESSIONS_CHILD = r"""
import gc, json, sys
import psutil
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker
from autotune.store.db import engine, ensure_schema, session

mode, url, units, tx = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ensure_schema(url)
rss = []
for _ in range(units):
    for _ in range(tx):
        s = session(url) if mode == "shared" else sessionmaker(engine(url), expire_on_commit=False)()
        with s.begin():
            s.execute(text("select count(*) from autotune_jobs"))
        s.close()
    gc.collect()
    rss.append(psutil.Process().memory_info().rss / 2**20)
print(json.dumps(rss))
"""
TX_PER_UNIT = 100

# The third suspect: SQLite's page cache. Each pooled connection keeps the pages it read, up to cache_size
# (2,000 KiB by default), so a process that reads a growing database grows with it until the caps. One unit is
# a job: 3 trials of about 12 kB (a soak's 11-17 kB), then READERS pooled connections each read every trial, as
# the daemon's threads read jobs back. `default` keeps SQLite's cache_size; `capped` sets 100 KiB.
PAGECACHE_CHILD = r"""
import ctypes, gc, json, os, sys
import _sqlite3, psutil
from sqlalchemy import event, text
from autotune.store.db import engine, ensure_schema, sqlite_file

mode, url, jobs, readers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
eng = engine(url)
if mode == "capped":
    event.listen(eng, "connect", lambda conn, _rec: conn.execute("PRAGMA cache_size=-100"))
ensure_schema(url)
lib = ctypes.CDLL(_sqlite3.__file__)
lib.sqlite3_memory_used.restype = ctypes.c_int64
window = {"requests": 500, "latencies_ms": [round(1 + i / 7, 3) for i in range(300)]}
with eng.begin() as c:
    c.execute(text("create table if not exists growth (job integer, trial integer, levels text)"))
rows = []
for job in range(jobs):
    with eng.begin() as c:
        for trial in range(3):
            levels = json.dumps([window] * 6)
            c.execute(text("insert into growth values (:j, :t, :l)"), {"j": job, "t": trial, "l": levels})
    held = [eng.connect() for _ in range(readers)]  # checked out at once: READERS connections, as threads would
    for conn in held:
        conn.execute(text("select sum(length(levels)) from growth")).scalar()
        conn.commit()  # our engine begins IMMEDIATE: end each read, keep its connection out of the pool
    for conn in held:
        conn.close()
    gc.collect()
    size = os.path.getsize(sqlite_file(url))
    rows.append([psutil.Process().memory_info().rss / 2**20, lib.sqlite3_memory_used() / 2**20, size / 2**20])
print(json.dumps(rows))
"""
PAGECACHE_MODES = ("default", "capped")
PAGECACHE_READERS = 3


def run_mode(mode: str, studies: int, trials: int, child: str = CHILD) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="autotune-growth-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'growth.db'}"
        out = subprocess.run(
            [sys.executable, "-c", child, mode, url, str(studies), str(trials)],
            capture_output=True,
            text=True,
            check=True,
            timeout=1800,
        )
    return json.loads(out.stdout)


def summary(rss: list[float]) -> dict[str, Any]:
    """Growth in MiB per study after the warm-up: the mean step between studies with its 95% t-interval (allocator
    steps make the series a staircase, so a least-squares line's interval would be too narrow), and that line."""
    import statistics

    from autotune.load.stats import mean_ci95

    after = rss[WARM:]
    steps = [b - a for a, b in itertools.pairwise(after)]
    ci = mean_ci95(steps)
    fit = slope_with_ci([(0, i, mib) for i, mib in enumerate(after)])
    assert ci is not None and fit is not None, "too few studies after the warm-up"
    return {
        "step_mib": round(statistics.mean(steps), 3),
        "ci_mib": [round(ci[0], 3), round(ci[1], 3)],
        "median_step_mib": round(statistics.median(steps), 3),
        "largest_step_mib": round(max(steps), 3),
        "least_squares_mib": fit[0],
        "first_mib": round(rss[0], 1),
        "last_mib": round(rss[-1], 1),
    }


EXPERIMENTS = ("storages", "sessions", "pagecache")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=60)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=120, help="jobs of the page-cache experiment")
    parser.add_argument("--only", choices=EXPERIMENTS, action="append", help="run only these experiments")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    chosen = args.only or EXPERIMENTS
    doc: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/storage_growth.py", *sys.argv[1:]]),
        "machine": machine(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "studies": args.studies,
        "trials_per_study": args.trials,
        "warm": WARM,
    }
    if "storages" in chosen:
        doc["rss_mib"] = {mode: [round(r, 3) for r in run_mode(mode, args.studies, args.trials)] for mode in MODES}
    if "sessions" in chosen:
        doc["transactions_per_unit"] = TX_PER_UNIT
        doc["sessions_rss_mib"] = {
            mode: [round(r, 3) for r in run_mode(mode, args.studies, TX_PER_UNIT, SESSIONS_CHILD)] for mode in MODES
        }
    if "pagecache" in chosen:
        doc["pagecache_readers"] = PAGECACHE_READERS
        # Per job: [RSS, SQLite's allocator, database file], MiB.
        doc["pagecache_mib"] = {
            mode: [[round(x, 3) for x in row] for row in run_mode(mode, args.jobs, PAGECACHE_READERS, PAGECACHE_CHILD)]
            for mode in PAGECACHE_MODES
        }
    if args.out:  # the data first: a figure printed below always has its file
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.out}")
    for key, unit in (("rss_mib", "study"), ("sessions_rss_mib", f"{TX_PER_UNIT} transactions")):
        for mode in MODES if key in doc else ():
            s = summary(doc[key][mode])
            print(
                f"{key.removesuffix('rss_mib') or 'storages_'}{mode}: {s['step_mib']:+.3f} MiB per {unit} (95% CI"
                f" {s['ci_mib'][0]:+.3f} to {s['ci_mib'][1]:+.3f}; median step {s['median_step_mib']:+.3f}, largest"
                f" {s['largest_step_mib']:+.3f}), RSS {s['first_mib']} -> {s['last_mib']} MiB"
            )
    for mode in PAGECACHE_MODES if "pagecache_mib" in doc else ():
        print(f"pagecache_{mode}: {pagecache_line(pagecache_summary(doc['pagecache_mib'][mode]))}")
    return 0


def pagecache_line(p: dict[str, float]) -> str:
    """The page-cache run's figures as the documents print them."""
    return (
        f"SQLite's allocator {p['sqlite_first_mib']} -> {p['sqlite_last_mib']} MiB "
        f"({p['sqlite_per_job_kib_first_half']:+.1f} KiB a job in the first half, "
        f"{p['sqlite_per_job_kib_second_half']:+.1f} in the second), RSS {p['rss_first_mib']} -> "
        f"{p['rss_last_mib']} MiB, database {p['db_last_mib']} MiB"
    )


def pagecache_summary(rows: list[list[float]]) -> dict[str, float]:
    """The page-cache run's heaps from its first job to its last, and SQLite's growth per job in each half."""
    half = len(rows) // 2
    rss, lite, db = zip(*rows, strict=True)
    return {
        "rss_first_mib": round(rss[0], 1),
        "rss_last_mib": round(rss[-1], 1),
        "sqlite_first_mib": round(lite[0], 2),
        "sqlite_last_mib": round(lite[-1], 2),
        "sqlite_per_job_kib_first_half": round((lite[half - 1] - lite[0]) / (half - 1) * 1024, 2),
        "sqlite_per_job_kib_second_half": round((lite[-1] - lite[half]) / (len(rows) - 1 - half) * 1024, 2),
        "db_last_mib": round(db[-1], 2),
    }


if __name__ == "__main__":
    sys.exit(main())
