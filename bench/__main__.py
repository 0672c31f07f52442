"""``python -m bench``: build the data, run every case several times, print one table.

Options: ``--quick`` (fewer rounds, shorter load test), ``--skip-slow`` (no 100k library, no
large hash files), ``--only NAME`` (cases whose module name contains NAME), ``--rounds N``,
``--keep`` (leave the scratch folder). Loopback only; the scratch folder is removed at the end.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Context, Row  # noqa: E402

CASES = ["case_lists", "case_requests", "case_load", "case_scale", "case_batch", "case_hashing", "case_scan",
         "case_images", "case_panel", "case_store"]


def fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value * 1000:.1f}" if value < 10 else f"{value * 1000:.0f}"
    if unit in ("x",):
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def render(rows: list[Row]) -> str:
    """The table: case, median (min-max), baseline, ratio, target, pass/fail."""
    header = ["case", "median (min-max)", "baseline", "ratio", "target", "result"]
    lines = []
    for row in rows:
        scale = 1000 if row.unit == "ms" else 1
        unit = "ms" if row.unit == "ms" else row.unit
        shown = f"{fmt(statistics.median(row.values), row.unit)} ({fmt(min(row.values), row.unit)}-" \
                f"{fmt(max(row.values), row.unit)}) {unit}"
        baseline = f"{fmt(statistics.median(row.baseline), row.unit)} {unit}" if row.baseline else "-"
        ratio = f"{row.checked:.2f}x" if row.baseline else "-"
        target = f"{row.op} {row.limit:g}x" if row.baseline else f"{row.op} {row.limit * scale:g} {unit}"
        result = "pass" if row.passed else "FAIL"
        case = row.case + (f" [{row.note}]" if row.note else "")
        lines.append([case, shown, baseline, ratio, target, result])
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in lines]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter load test")
    parser.add_argument("--skip-slow", action="store_true",
                        help="skip the 100k library and the large hashing files")
    parser.add_argument("--only", action="append", default=[], help="run cases matching NAME")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per case (default 5, quick 3)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="hikaze-bench-", dir=os.environ.get("HIKAZE_BENCH_DIR")))
    ctx = Context(work=work, rounds=args.rounds or (3 if args.quick else 5), quick=args.quick,
                  skip_slow=args.skip_slow)
    rows: list[Row] = []
    failed_cases = []
    started = time.perf_counter()
    try:
        for name in CASES:
            if args.only and not any(o in name for o in args.only):
                continue
            module = importlib.import_module(f"bench.{name}")
            if getattr(module, "SLOW", False) and args.skip_slow:
                print(f"[bench] {name}: skipped (--skip-slow)", file=sys.stderr)
                continue
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            try:
                rows.extend(module.run(ctx))
            except Exception:
                traceback.print_exc()
                failed_cases.append(name)
            print(f"[bench] {name} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nHikaze Manager bench: {ctx.rounds} rounds, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}, {time.perf_counter() - started:.0f} s\n")
    print(render(rows))
    for name in failed_cases:
        print(f"\n{name}: ERROR (see above)")
    return 0 if rows and all(r.passed for r in rows) and not failed_cases else 1


if __name__ == "__main__":
    sys.exit(main())
