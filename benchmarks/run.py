"""Run mediabot's benchmarks, save their results, and optionally check their ratios against ``baseline.json``.

``python -m benchmarks.run [--quick] [--check] [--update-baseline] [NAME ...]``: runs the named benchmarks (default:
all, in :data:`ORDER`), saves each (``benchmarks/results/<name>[-quick].json|png``). With ``--check`` each ratio is
compared with ``benchmarks/baseline.json`` — ``{"<bench>.<ratio>": {"value": v, "better": "higher"|"lower",
"tolerance": t}}``: a ratio regresses when it is worse than ``v·(1-t)`` (higher is better) or ``v·(1+t)`` (lower is
better). The run exits 1 when a benchmark raises, a ratio regresses, or a baseline entry of a benchmark that ran is
missing from its result. ``--update-baseline`` rewrites the baseline's values from this run, keeping better/tolerance.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import math
import sys
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks._report import Result, format_value, make_console, save

ORDER = ("kernels", "vad_quality", "signaling", "latency", "capacity")
BASELINE = Path(__file__).resolve().parent / "baseline.json"
DEFAULT_TOLERANCE = 0.3


@dataclass(frozen=True)
class Check:
    """One baseline entry compared with this run."""

    name: str
    baseline: float
    better: str
    tolerance: float
    now: float | None

    @property
    def limit(self) -> float:
        """The worst value still accepted."""
        factor = 1 - self.tolerance if self.better == "higher" else 1 + self.tolerance
        return self.baseline * factor

    @property
    def ok(self) -> bool:
        """Whether this run's value is present, finite and no worse than :attr:`limit`."""
        if self.now is None or not math.isfinite(self.now):
            return False
        return self.now >= self.limit if self.better == "higher" else self.now <= self.limit


def flatten(results: Iterable[Result]) -> dict[str, float]:
    """Return every result's ratios keyed ``<bench>.<ratio>``."""
    return {f"{result.name}.{key}": float(value) for result in results for key, value in result.ratios.items()}


def compare(
    baseline: Mapping[str, Mapping[str, Any]], ratios: Mapping[str, float], benches: Iterable[str]
) -> list[Check]:
    """Compare the baseline entries of the benchmarks in ``benches`` with this run's ``ratios``.

    An entry the run did not produce gets ``now=None`` (not ok). Entries of benchmarks that did not run are skipped.
    """
    ran = set(benches)
    checks = []
    for key, entry in baseline.items():
        if key.split(".", 1)[0] not in ran:
            continue
        better = entry.get("better", "higher")
        if better not in ("higher", "lower"):
            raise ValueError(f"baseline entry {key!r}: better must be 'higher' or 'lower', not {better!r}")
        checks.append(
            Check(
                name=key,
                baseline=float(entry["value"]),
                better=better,
                tolerance=float(entry.get("tolerance", DEFAULT_TOLERANCE)),
                now=ratios.get(key),
            )
        )
    return checks


def updated_baseline(baseline: Mapping[str, Mapping[str, Any]], ratios: Mapping[str, float]) -> dict[str, Any]:
    """Return the baseline with values from ``ratios``; new ratios get ``better="higher"`` and the default tolerance."""
    updated: dict[str, Any] = {key: dict(entry) for key, entry in baseline.items()}
    for key, value in ratios.items():
        if not math.isfinite(value):
            continue
        entry = updated.setdefault(key, {"better": "higher", "tolerance": DEFAULT_TOLERANCE})
        entry["value"] = round(value, 4)
        updated[key] = {"value": entry["value"], "better": entry["better"], "tolerance": entry["tolerance"]}
    return dict(sorted(updated.items()))


def _verdict(check: Check) -> str:
    if check.ok:
        return "[green]ok[/green]"
    return "[red]MISSING[/red]" if check.now is None else "[red]REGRESSED[/red]"


def print_checks(checks: Sequence[Check], console: Console, extra: Iterable[str] = ()) -> None:
    """Print the check table (name, baseline, now, limit, ok) and the ratios that have no baseline entry."""
    table = Table(title="bench-check")
    for column in ("name", "better", "baseline", "now", "limit", "ok"):
        table.add_column(column, justify="left" if column in ("name", "better") else "right")
    for check in checks:
        table.add_row(
            check.name,
            check.better,
            format_value(check.baseline),
            "missing" if check.now is None else format_value(check.now),
            format_value(check.limit),
            _verdict(check),
        )
    console.print(table)
    new = sorted(extra)
    if new:
        console.print("ratios without a baseline entry (not checked): " + ", ".join(new))


def load_baseline(path: Path) -> dict[str, dict[str, Any]]:
    """Read ``baseline.json`` (an empty baseline when the file does not exist)."""
    if not path.exists():
        return {}
    data: dict[str, dict[str, Any]] = json.loads(path.read_text())
    return data


def run_one(name: str, quick: bool) -> Result:
    """Import ``benchmarks.<name>``, run it, and save its result (drawn by its ``png(result, path)``, if any)."""
    module = importlib.import_module(f"benchmarks.{name}")
    result: Result = module.run(quick)
    drawer = getattr(module, "png", None)
    if drawer is not None and len(inspect.signature(drawer).parameters) == 2:
        save(result, lambda path: drawer(result, path))
    elif drawer is not None:
        save(result, drawer)
    else:
        save(result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks the command line names; return the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n", 1)[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: {' '.join(ORDER)})")
    parser.add_argument("--quick", action="store_true", help="the quick variants (what bench-check runs)")
    parser.add_argument("--check", action="store_true", help="compare ratios with benchmarks/baseline.json")
    parser.add_argument("--update-baseline", action="store_true", help="rewrite baseline values from this run")
    parser.add_argument("--baseline", type=Path, default=BASELINE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = args.names or list(ORDER)
    unknown = [name for name in names if name not in ORDER]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(ORDER)})")

    console = make_console()
    results: list[Result] = []
    failed: list[str] = []
    started = time.perf_counter()
    for name in names:
        console.rule(f"{name}{' (quick)' if args.quick else ''}")
        t0 = time.perf_counter()
        try:
            results.append(run_one(name, args.quick))
        except Exception:
            console.print(f"[red]benchmark {name} failed[/red]\n{traceback.format_exc()}")
            failed.append(name)
        console.print(f"{name}: {time.perf_counter() - t0:.1f} s")
    console.print(f"total: {time.perf_counter() - started:.1f} s")

    status = 1 if failed else 0
    ratios = flatten(results)
    baseline = load_baseline(args.baseline)
    if args.check:
        checks = compare(baseline, ratios, names)
        print_checks(checks, console, extra=set(ratios) - set(baseline))
        if not baseline:
            console.print(f"[red]no baseline at {args.baseline}[/red]")
            status = 1
        if not all(check.ok for check in checks):
            status = 1
    if args.update_baseline:
        args.baseline.write_text(json.dumps(updated_baseline(baseline, ratios), indent=2) + "\n")
        console.print(f"updated {args.baseline} (check 'better' of new entries)")
    if failed:
        console.print(f"[red]failed: {', '.join(failed)}[/red]")
    return status


if __name__ == "__main__":
    sys.exit(main())
