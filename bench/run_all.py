"""``make bench``: run every benchmark (each in its own process), then write docs/benchmarks.md.

Each step is a separate ``python -m bench.<name>`` so that RSS and CPU figures of one cannot leak into
another, and a failing step is reported without hiding the others. ``--quick`` uses tiny parameters
(what the smoke test runs). ``bench/expiry.py`` is run too when it exists.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

from bench.common import PY, RESULTS, ROOT

FULL: list[list[str]] = [
    [
        "fanout",
        "--sizes",
        "2",
        "4",
        "8",
        "--messages",
        "300",
        "--rate-peers",
        "8",
        "--rate-messages",
        "5000",
        "--profile",
        str(RESULTS / "profile_rate.txt"),
    ],
    ["mesh", "--sizes", "2", "4", "8", "16", "--backlog", "1000", "--repeat", "3"],
    ["cost", "--peers", "8"],
    ["sigcap", "--connections", "10000", "--pairs", "200", "--seconds", "5"],
    ["wan", "--peers", "4", "--messages", "100"],
    ["transfer", "--size-mb", "50", "--pings", "200", "--interval-ms", "20"],
]
QUICK: list[list[str]] = [
    ["fanout", "--sizes", "2", "--messages", "5", "--rate-peers", "2", "--rate-messages", "10"],
    ["mesh", "--sizes", "2", "--backlog", "5", "--repeat", "1"],
    ["cost", "--peers", "2"],
    ["sigcap", "--connections", "20", "--pairs", "2", "--seconds", "0.5", "--no-netns"],
    ["transfer", "--size-mb", "0.2", "--pings", "3", "--interval-ms", "1"],
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--docs", type=Path, default=None)
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args(argv)
    steps = [list(s) for s in (QUICK if args.quick else FULL)]
    if not args.quick and (ROOT / "bench" / "expiry.py").exists():
        steps.append(["expiry"])
    failed: list[str] = []
    for step in steps:
        if args.only and step[0] not in args.only:
            continue
        t0 = time.monotonic()
        print(f"== bench.{step[0]}", flush=True)
        argv_ = [PY, "-m", f"bench.{step[0]}", *step[1:]]
        if step[0] != "expiry":
            argv_ += ["--out", str(args.out)]
        if step[0] == "expiry":  # another engineer's script: it prints its figures; keep them for the page
            proc = subprocess.run(argv_, cwd=ROOT, capture_output=True, text=True)
            print(proc.stdout, end="")
            (args.out / "expiry.txt").write_text(proc.stdout)
            rc = proc.returncode
        else:
            rc = subprocess.run(argv_, cwd=ROOT).returncode
        print(f"== bench.{step[0]}: rc={rc} in {time.monotonic() - t0:.1f} s", flush=True)
        if rc != 0:
            failed.append(step[0])
    report = [PY, "-m", "bench.report", "--results", str(args.out)]
    if args.docs is not None:
        report += ["--docs", str(args.docs)]
    subprocess.run(report, cwd=ROOT, check=True)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
