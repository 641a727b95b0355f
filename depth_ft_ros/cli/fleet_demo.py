"""`depth-ft-ros fleet-demo --out DIR` (what `make fleet-demo` runs): demo bags -> the tiny checkpoint fine-tuned on
some of them (cached) -> `fleet` with the base and the fine-tuned checkpoint over the others -> the compare report
(DIR/report/compare.md with its plots and a depth preview)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from depth_ft_ros.errors import DepthFtError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from depth_ft_ros.fleet.demo import DemoSettings

    d = DemoSettings(out=Path())
    parser.add_argument("--out", type=Path, default=Path("out/fleet-demo"), help="folder for everything (cached)")
    parser.add_argument("--steps", type=int, default=d.steps, help=f"fine-tuning steps (default {d.steps})")


def run(args: argparse.Namespace) -> int:
    from depth_ft_ros.fleet.demo import DemoSettings, run_demo

    start_s = time.monotonic()
    try:
        report = run_demo(DemoSettings(out=args.out, steps=args.steps))
    except DepthFtError as exc:
        print(f"fleet-demo: {exc}", file=sys.stderr)
        return 2
    verdict = [line.strip("*") for line in report.read_text(encoding="utf-8").splitlines()
               if line.startswith("**") and not line.startswith("**Read")]
    print("\n".join(verdict))
    print(f"fleet-demo finished in {time.monotonic() - start_s:.0f} s: open {report} (plots beside it)")
    return 0
