"""The result of one benchmark run, and how it is printed and saved (JSON + optional PNG in ``benchmarks/results/``).

A benchmark module ``benchmarks/<name>.py`` exposes ``run(quick: bool = False) -> Result`` and, when a picture helps,
``png(result: Result, path: Path) -> None`` (matplotlib, Agg backend already selected); ``benchmarks.run`` calls
``save(result, lambda path: png(result, path))``. Its ``__main__`` does the same for one benchmark.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import timeit
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Result:
    """One benchmark's outcome: rows to print, ratios bench-check compares, headline figures, and parameters."""

    name: str
    quick: bool
    table: list[dict[str, Any]]
    ratios: dict[str, float]
    figures: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def python_speed_us() -> float:
    """µs for ``sum(range(1000))`` (best of 5): how fast this machine runs Python now, to compare results across."""
    return min(timeit.repeat("sum(range(1000))", number=1000, repeat=5)) / 1000 * 1e6


def machine() -> dict[str, Any]:
    """Describe the machine and the software the numbers were measured with."""
    try:
        from mediabot.audio import kernels

        implementation = kernels.IMPLEMENTATION
    except Exception as exc:  # a broken build must not hide the rest of the description
        implementation = f"unavailable ({exc})"
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "aiortc": _version("aiortc"),
        "av": _version("av"),
        "kernels": implementation,
        "python_ref_us": python_speed_us(),
        "load_avg": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def result_path(name: str, quick: bool, suffix: str, directory: Path | None = None) -> Path:
    """Return ``<directory>/<name>[-quick]<suffix>`` (directory defaults to ``benchmarks/results``)."""
    return (directory or RESULTS_DIR) / f"{name}{'-quick' if quick else ''}{suffix}"


def jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays, paths and non-finite floats (-> ``None``) into plain JSON values."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalar or array
        return jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def format_value(value: Any) -> str:
    """Format a cell: floats to a sensible number of digits, ``None`` as ``n/a``."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if hasattr(value, "item") and not isinstance(value, (list, tuple)):
        value = value.item()
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        magnitude = abs(value)
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude >= 100:
            return f"{value:.1f}"
        if magnitude >= 1 or value == 0:
            return f"{value:.2f}"
        if magnitude >= 0.01:
            return f"{value:.3f}"
        return f"{value:.3g}"
    return str(value)


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    return columns


def make_console() -> Console:
    console = Console()
    # Rich falls back to 80 columns when output is not a terminal (make, CI logs): too narrow for these tables.
    return console if console.is_terminal else Console(width=160)


def render(result: Result, console: Console | None = None) -> None:
    """Print the result's table, ratios and figures."""
    console = console or make_console()
    title = f"{result.name}{' (quick)' if result.quick else ''}"
    if result.table:
        columns = _columns(result.table)
        table = Table(title=title)
        for column in columns:
            table.add_column(column, justify="left" if isinstance(result.table[0].get(column), str) else "right")
        for row in result.table:
            table.add_row(*(format_value(row.get(column)) for column in columns))
        console.print(table)
    else:
        console.print(f"[bold]{title}[/bold]: no rows")
    for label, values in (("ratios", result.ratios), ("figures", result.figures)):
        if values:
            console.print(f"{label}: " + ", ".join(f"{k}={format_value(v)}" for k, v in values.items()))


def save(result: Result, png: Callable[[Path], None] | None = None, *, directory: Path | None = None) -> Path:
    """Print the result, write ``<name>[-quick].json`` and, if ``png`` is given, draw ``<name>[-quick].png``.

    ``directory`` defaults to ``benchmarks/results``. Returns the JSON path.
    """
    render(result)
    target = directory or RESULTS_DIR
    target.mkdir(parents=True, exist_ok=True)
    path = result_path(result.name, result.quick, ".json", target)
    document = {
        "name": result.name,
        "quick": result.quick,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "table": result.table,
        "ratios": result.ratios,
        "figures": result.figures,
        "meta": result.meta,
    }
    path.write_text(json.dumps(jsonable(document), indent=2, allow_nan=False) + "\n")
    if png is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        image = result_path(result.name, result.quick, ".png", target)
        try:
            png(image)
        finally:
            plt.close("all")
        make_console().print(f"wrote {path} and {image}")
    else:
        make_console().print(f"wrote {path}")
    return path


def main(run: Callable[[bool], Result], png: Callable[[Result, Path], None] | None, description: str) -> None:
    """One benchmark module's command line: ``[--quick]``, then run it, print the result and save it."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="the quick variant (what make bench-check runs)")
    outcome = run(parser.parse_args().quick)
    save(outcome, (lambda path: png(outcome, path)) if png is not None else None)
