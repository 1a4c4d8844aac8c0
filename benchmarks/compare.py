"""Compare two tables printed by ``run.py``: which ratios moved, and which regressed.

    python benchmarks/compare.py BEFORE AFTER [--tolerance 0.10] [--table N N]

BEFORE and AFTER are files holding ``run.py`` output (or markdown with such tables, like
BENCHMARKS.md: ``--table I J`` picks the I-th table of BEFORE and the J-th of AFTER, counting from
1; default the last of each). Rows are matched on figure and reference; for each row both have,
it prints the median ratio before and after and the change, and marks **regressed** a ratio that
fell by more than the tolerance (10 % by default; for a row whose target is an upper bound or
whose unit is a time or a size, a ratio that rose by more). Rows are matched by their labels,
so a figure whose label names its size (the replay of 200,000 or 1,000,000 events) matches only
a run of the same size. Absolute figures are not compared: on a shared machine they move 3x
between runs, ratios to a reference measured in the same run do not. Prints a markdown table
headed by the command; exits 0 whatever it finds (it reports, it does not judge a build).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

HEADER = "| figure | unit | ours (median) |"


@dataclass(frozen=True)
class Measured:
    """One table row: its median ratio (None without a reference), its target text and unit."""

    ratio: float | None
    target: str
    unit: str


def tables(text: str) -> list[dict[tuple[str, str], Measured]]:
    """Every ``run.py`` table in ``text``, each as {(figure, reference): measured}."""
    found: list[dict[tuple[str, str], Measured]] = []
    current: dict[tuple[str, str], Measured] | None = None
    for line in text.splitlines():
        if line.startswith(HEADER):
            current = {}
            found.append(current)
            continue
        if current is None:
            continue
        if not line.startswith("|"):
            current = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 9 or set(cells[0]) <= {"-"}:
            continue
        figure, unit, reference, ratio, target = cells[0], cells[1], cells[4], cells[6], cells[7]
        median = ratio.split("x", 1)[0].replace(",", "") if ratio not in ("—", "-") else ""
        try:
            value = float(median) if median else None
        except ValueError:
            value = None
        current[(figure, reference)] = Measured(value, target, unit)
    return found


def compare(
    before: dict[tuple[str, str], Measured],
    after: dict[tuple[str, str], Measured],
    tolerance: float,
) -> list[str]:
    """The markdown lines of the comparison."""
    lines = [
        "| figure | reference | ratio before | ratio after | change | |",
        "|---|---|---|---|---|---|",
    ]
    for key, now in after.items():
        then = before.get(key)
        if then is None or then.ratio is None or now.ratio is None or then.ratio == 0:
            continue
        change = now.ratio / then.ratio - 1
        upper_bound = "<=" in now.target or now.unit in ("ms", "MiB")  # lower is better
        worse = change > tolerance if upper_bound else change < -tolerance
        mark = "**regressed**" if worse else ""
        figure, reference = key
        lines.append(
            f"| {figure} | {reference} | {then.ratio:.2f}x | {now.ratio:.2f}x | "
            f"{change:+.0%} | {mark} |"
        )
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--tolerance", type=float, default=0.10)
    parser.add_argument("--table", type=int, nargs=2, default=(0, 0), metavar=("I", "J"))
    args = parser.parse_args(argv)
    before_tables = tables(args.before.read_text())
    after_tables = tables(args.after.read_text())
    if not before_tables or not after_tables:
        parser.error("each file must hold at least one run.py table")
    i, j = args.table
    before = before_tables[i - 1] if i else before_tables[-1]
    after = after_tables[j - 1] if j else after_tables[-1]
    print(f"$ python benchmarks/compare.py {shlex.join(argv)}\n")
    print("\n".join(compare(before, after, args.tolerance)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
