"""Figures over runs: median, range and spread, ratios taken pair by pair, their verdicts.

Shared by every scenario's summary, so all of them report the same shape: a figure is
`{"median", "min", "max", "spread_pct", "runs"}`, and a ratio is one of those over the
per-run quotients (each run's pair measured minutes apart), never a quotient of medians.
"""

from __future__ import annotations

import statistics
from typing import Any


def spread(values: list[float]) -> dict[str, Any]:
    """Median, range and spread ((max - min) / median) of one figure over the runs."""
    median = statistics.median(values)
    return {
        "median": median,
        "min": min(values),
        "max": max(values),
        "spread_pct": (max(values) - min(values)) / median * 100 if median else 0.0,
        "runs": values,
    }


def fmt(s: dict[str, Any], unit: str = "", digits: int = 0) -> str:
    rng = f"{s['min']:,.{digits}f}-{s['max']:,.{digits}f}"
    return f"{s['median']:,.{digits}f}{unit} [{rng}, spread {s['spread_pct']:.0f}%]"


def ratio(a: list[float], b: list[float]) -> dict[str, Any]:
    return spread([x / y for x, y in zip(a, b, strict=True)])


def verdict(r: dict[str, Any], target: float) -> str:
    met = "met" if r["median"] >= target else "NOT met"
    return f"x{r['median']:.2f} [{r['min']:.2f}-{r['max']:.2f}] (target >= {target}: {met})"
