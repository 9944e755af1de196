"""Tables and figures of a finished sweep: ``python -m experiments.report SWEEP_DIR [--out DIR]``.

The SweepSummary callback (experiments/sweep.py) runs the same report after a reproduction
sweep (``infaas-sim -m +experiment=reproduce``); this entry point redraws it, or reports any sweep folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.claims import claims_for
from experiments.comparison import Report, write_report


def print_report(report: Report, out_dir: Path) -> None:
    for scenario, table in report.tables.items():
        print(f"\n== {scenario} ==")
        cols = [
            "throughput_qps",
            "goodput_qps",
            "slo_violation_rate",
            "total_cost",
            "cost_per_1k_queries",
            "mean_accuracy",
            "util_gpu",
        ]
        print(table[cols].to_string(float_format=lambda v: f"{v:.4g}"))
    for line in report.skipped:
        print(f"skipped {line}")
    print(f"\nreport: {out_dir / 'report.md'} ({len(report.files)} files)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a Hydra multirun folder")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: the sweep folder)")
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    args = parser.parse_args(argv)
    try:
        report = write_report(args.sweep_dir, args.out, draw=not args.no_figures, claims=claims_for)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_report(report, args.out or args.sweep_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
