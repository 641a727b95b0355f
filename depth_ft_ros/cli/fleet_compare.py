"""`depth-ft-ros fleet-compare RUN_A RUN_B --out DIR`: two `fleet` runs over the same bags (e.g. the current
checkpoint and a fine-tuned one) -> held-out LiDAR AbsRel per bag and overall, the difference and a bootstrap
interval over bags, as compare.md + compare.png."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from depth_ft_ros.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", type=Path, help="the `fleet --out` folder of the reference run (A)")
    parser.add_argument("run_b", type=Path, help="the `fleet --out` folder of the candidate run (B)")
    parser.add_argument("--out", type=Path, required=True, help="folder for compare.md and compare.png")
    parser.add_argument("--label-a", default="A", help="name of run A in the report (e.g. base)")
    parser.add_argument("--label-b", default="B", help="name of run B in the report (e.g. fine-tuned)")
    parser.add_argument("--notes", default="", help="a paragraph under the report's title")


def run(args: argparse.Namespace) -> int:
    from depth_ft_ros.fleet.compare import compare_tables, verdict, write_comparison

    try:
        for run_dir in (args.run_a, args.run_b):
            if not run_dir.is_dir():
                raise InputError(f"run folder {run_dir} does not exist")
        comparison = compare_tables(args.run_a, args.run_b, args.label_a, args.label_b)
        path = write_comparison(comparison, args.out, args.notes)
    except InputError as exc:
        print(f"fleet-compare: {exc}", file=sys.stderr)
        return 2
    print(verdict(comparison))
    print(f"report: {path}")
    return 0 if comparison.rows else 1
