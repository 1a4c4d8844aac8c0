"""Collecting figures over several runs and printing them as one markdown table.

A *figure* is one number measured once per run (``events/s``, ``ms``, ...). A *row* of the table
compares one of our figures with a reference figure measured in the same run: the ratio is taken
per run (ours / reference), then its median and range over the runs are shown. Rows may also have
no reference (an absolute target, or information only).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Figure:
    """What a measured number is: its table label and unit."""

    key: str
    label: str
    unit: str


@dataclass(frozen=True)
class Target:
    """A target: text for the table and a check on the median value or median ratio."""

    text: str
    on_ratio: bool
    check: Callable[[float], bool]


def ratio_at_least(x: float, text: str) -> Target:
    return Target(text, True, lambda r: r >= x)


def ratio_at_most(x: float, text: str) -> Target:
    return Target(text, True, lambda r: r <= x)


def value_at_least(x: float, text: str) -> Target:
    return Target(text, False, lambda v: v >= x)


def value_below(x: float, text: str) -> Target:
    return Target(text, False, lambda v: v < x)


def value_at_most(x: float, text: str) -> Target:
    return Target(text, False, lambda v: v <= x)


@dataclass(frozen=True)
class Row:
    """One line of the table: a figure, optionally a reference and a target."""

    figure: str
    reference: str | None = None
    target: Target | None = None


@dataclass
class Results:
    """Every figure of every run: ``runs[i][key] = value``, plus free-text notes."""

    figures: dict[str, Figure] = field(default_factory=dict)
    runs: list[dict[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def new_run(self) -> None:
        self.runs.append({})

    def record(self, key: str, label: str, unit: str, value: float) -> None:
        """Record ``value`` for figure ``key`` in the current run."""
        self.figures.setdefault(key, Figure(key, label, unit))
        self.runs[-1][key] = value

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def values(self, key: str) -> list[float]:
        return [run[key] for run in self.runs if key in run]

    def ratios(self, key: str, reference: str) -> list[float]:
        return [
            run[key] / run[reference]
            for run in self.runs
            if key in run and reference in run and run[reference] != 0
        ]


def _number(value: float, unit: str) -> str:
    if unit in ("ms",):
        return f"{value:.3f}"
    if unit in ("MiB", "KiB", "s"):
        return f"{value:.1f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def _spread(values: Sequence[float], unit: str) -> str:
    if len(values) < 2:
        return "—"
    return f"{_number(min(values), unit)}-{_number(max(values), unit)}"


def _ratio(values: Sequence[float]) -> str:
    if not values:
        return "—"
    median = statistics.median(values)
    text = f"{median:.2f}x"
    if len(values) > 1:
        text += f" ({min(values):.2f}-{max(values):.2f})"
    return text


def render(results: Results, rows: Sequence[Row]) -> str:
    """The markdown table of ``rows`` (rows whose figure was never measured are left out)."""
    header = (
        "| figure | unit | ours (median) | spread (min-max) | reference | reference (median) "
        "| ratio ours/ref (median, min-max) | target | met |"
    )
    lines = [header, "|" + "---|" * 9]
    for row in rows:
        values = results.values(row.figure)
        if not values:
            ref_values = results.values(row.reference) if row.reference else []
            if ref_values and row.reference is not None:  # only the reference was measured
                ref_figure = results.figures[row.reference]
                lines.append(
                    f"| {row.figure} (not measured) | {ref_figure.unit} | — | — "
                    f"| {ref_figure.label} | "
                    f"{_number(statistics.median(ref_values), ref_figure.unit)} "
                    f"({_spread(ref_values, ref_figure.unit)}) | — | — | — |"
                )
            continue
        figure = results.figures[row.figure]
        median = statistics.median(values)
        ref_label = ref_median = "—"
        ratios: list[float] = []
        if row.reference is not None:
            ref_values = results.values(row.reference)
            known = results.figures.get(row.reference)
            if known is not None and ref_values:
                ref_label = known.label
                ref_median = f"{_number(statistics.median(ref_values), known.unit)}"
                ratios = results.ratios(row.figure, row.reference)
            else:
                ref_label = f"{row.reference} (not measured)"
        met = "—"
        target_text = "—"
        if row.target is not None:
            target_text = row.target.text
            if row.target.on_ratio:
                if ratios:
                    met = "yes" if row.target.check(statistics.median(ratios)) else "**no**"
                else:
                    met = "n/a"
            else:
                met = "yes" if row.target.check(median) else "**no**"
        lines.append(
            f"| {figure.label} | {figure.unit} | {_number(median, figure.unit)} "
            f"| {_spread(values, figure.unit)} | {ref_label} | {ref_median} | {_ratio(ratios)} "
            f"| {target_text} | {met} |"
        )
    return "\n".join(lines)
