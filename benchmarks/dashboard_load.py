"""Cold and warm load time of the dashboard's Runs and Effects pages on a 200 runs x 20 clips x 10 metrics store.

    python benchmarks/dashboard_load.py [--root DIR] [--repeats 3]

What is measured: the wall time of one Streamlit script run of the page under
`streamlit.testing.v1.AppTest` (the same script run a browser triggers, without the
websocket and the browser's drawing), i.e. reading the store, statistics, building tables
and charts and serialising them.
- cold: the first run of the page in a fresh Python process with empty st.cache_data
  (parquet read, effect statistics); each cold figure comes from its own subprocess.
- warm: a rerun of the same page in the same process (what a widget change or a refresh
  costs when no file changed: the loaders hit the mtime-keyed cache).
Also printed: the loader functions alone (load_sweep, factorial_effects over all metrics).
Targets: warm < 1 s, cold < 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_CHILD = r"""
import json, os, sys, time
t0 = time.perf_counter()
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1], default_timeout=300)
at.run()
t_app = time.perf_counter() - t0
out = {"app_first_run_s": t_app}
for page in sys.argv[2].split(","):
    at.switch_page(f"views/{page}.py")
    t = time.perf_counter(); at.run(); cold = time.perf_counter() - t
    assert not at.exception, [e.value for e in at.exception]
    warms = []
    for _ in range(3):
        t = time.perf_counter(); at.run(); warms.append(time.perf_counter() - t)
    out[page] = {"cold_s": cold, "warm_s": sorted(warms)[1], "dataframes": len(at.dataframe), "charts": len(at.get("vega_lite_chart"))}
print(json.dumps(out))
"""


def _child(root: Path, pages: str) -> dict:
    env = dict(os.environ, LTXLAB_RESULTS=str(root))
    out = subprocess.run([sys.executable, "-c", _CHILD, str(REPO / "dashboard" / "app.py"), pages],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=600)  # fmt: skip
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="results root to use (default: a fresh temporary one)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per page order")
    args = parser.parse_args()
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_store", REPO / "benchmarks" / "make_store.py")
    make_store = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_store)
    tmp = None
    if args.root:
        root = Path(args.root)
    else:
        tmp = tempfile.TemporaryDirectory()
        root = Path(tmp.name)
    if not (root / "bench" / "metrics.parquet").exists():
        t = time.perf_counter()
        make_store.make_store(root, "bench", "bench", videos=False)
        print(f"generated store in {time.perf_counter() - t:.1f} s")

    from ablations.report import build_report, format_report
    from ablations.store import load_sweep
    from evaluation.stats import factorial_effects

    t = time.perf_counter()
    data = load_sweep(root, "bench")
    t_load = time.perf_counter() - t
    names = sorted(data.metrics["metric"].unique())
    t = time.perf_counter()
    report = factorial_effects(data.metrics, data.runs, data.axes, axis_levels=data.axis_levels, metric_names=names)
    t_stats = time.perf_counter() - t
    t = time.perf_counter()
    text = format_report(build_report(root, "bench", metrics=names))
    t_report = time.perf_counter() - t
    print(f"store: {len(data.runs)} runs x {data.metrics['clip_id'].nunique()} clips x {len(names)} metrics "
          f"= {len(data.metrics)} metric rows; axes {data.axes}")
    print(f"load_sweep (runs + metrics parquet): {t_load * 1000:.0f} ms")
    print(f"factorial_effects over {len(names)} metrics: {t_stats * 1000:.0f} ms ({len(report.main)} main-effect rows, "
          f"{len(report.interactions)} interaction rows, {report.n_seeds} seed blocks x {report.n_sources} sources, "
          f"Holm over {report.family_size} tests)")
    print(f"ltxlab report (load + effects + best variants + text, {len(text.splitlines())} lines): {t_report:.2f} s "
          f"(target < 2 s: {'ok' if t_report < 2 else 'MISSED'})")

    results: dict[str, list] = {"runs_cold": [], "runs_warm": [], "effects_cold": [], "effects_warm": [], "app": []}
    for _ in range(args.repeats):
        for page in ("runs", "effects"):  # one fresh process per page: both pages measured truly cold
            out = _child(root, page)
            results[f"{page}_cold"].append(out[page]["cold_s"])
            results[f"{page}_warm"].append(out[page]["warm_s"])
            results["app"].append(out["app_first_run_s"])
            shown = f"{out[page]['dataframes']} tables, {out[page]['charts']} charts"
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"AppTest start + Sweeps page (imports included): median {med['app']:.2f} s")
    for page in ("runs", "effects"):
        cold, warm = med[f"{page}_cold"], med[f"{page}_warm"]
        print(f"{page:8s} cold {cold:.2f} s (target < 5 s: {'ok' if cold < 5 else 'MISSED'}), "
              f"warm {warm:.3f} s (target < 1 s: {'ok' if warm < 1 else 'MISSED'}); "
              f"median of {args.repeats} processes; all cold: {[round(x, 2) for x in results[page + '_cold']]}")
    del shown
    if tmp:
        tmp.cleanup()

if __name__ == "__main__":
    main()
