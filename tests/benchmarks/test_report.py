"""The benchmark harness: results saved as JSON (and PNG), and bench-check's ratio comparison."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks import run as runner
from benchmarks._report import Result, format_value, jsonable, machine, result_path, save


def _result(quick: bool = True, **ratios: float) -> Result:
    return Result(
        name="demo",
        quick=quick,
        table=[{"kernel": "mix", "us": np.float64(1.5)}, {"kernel": "vad", "us": None, "extra": "n/a"}],
        ratios=dict(ratios) or {"speedup": 3.0},
        figures={"streams": np.int64(41), "missing": float("nan")},
        meta={"repeat": 9, "path": Path("/x")},
    )


def test_save_writes_the_json_document(tmp_path: Path) -> None:
    path = save(_result(), directory=tmp_path)
    assert path == tmp_path / "demo-quick.json"
    document = json.loads(path.read_text())
    assert list(document) == ["name", "quick", "when", "machine", "table", "ratios", "figures", "meta"]
    assert document["name"] == "demo"
    assert document["quick"] is True
    assert document["table"][0] == {"kernel": "mix", "us": 1.5}
    assert document["table"][1]["us"] is None
    assert document["ratios"] == {"speedup": 3.0}
    assert document["figures"] == {"streams": 41, "missing": None}  # NaN is not JSON: written as null
    assert document["meta"] == {"repeat": 9, "path": "/x"}
    assert {"cpu", "cores", "python", "numpy", "aiortc", "av", "kernels", "python_ref_us"} <= set(document["machine"])
    assert document["machine"]["python_ref_us"] > 0
    assert "T" in document["when"]


def test_a_full_run_is_saved_without_the_quick_suffix(tmp_path: Path) -> None:
    assert save(_result(quick=False), directory=tmp_path).name == "demo.json"
    assert result_path("demo", True, ".png", tmp_path) == tmp_path / "demo-quick.png"


def test_save_draws_the_png_when_given_a_drawer(tmp_path: Path) -> None:
    drawn: list[Path] = []

    def draw(path: Path) -> None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ax.plot([1, 2], [3, 4])
        fig.savefig(path)
        drawn.append(path)

    save(_result(), draw, directory=tmp_path)
    assert drawn == [tmp_path / "demo-quick.png"]
    assert drawn[0].read_bytes().startswith(b"\x89PNG")


def test_machine_names_the_kernels_implementation() -> None:
    assert machine()["kernels"] in ("native", "numpy") or machine()["kernels"].startswith("unavailable")


def test_values_are_made_plain_json() -> None:
    assert jsonable({"a": (np.float32(0.5), np.arange(2)), 1: math.inf}) == {"a": [0.5, [0, 1]], "1": None}


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "n/a"), (1234.5, "1,234"), (123.45, "123.5"), (1.234, "1.23"), (0.5, "0.500"), (0.00123, "0.00123")],
)
def test_cells_are_formatted_for_reading(value: float | None, text: str) -> None:
    assert format_value(value) == text


BASELINE = {
    "kernels.speedup": {"value": 4.0, "better": "higher", "tolerance": 0.25},
    "kernels.cost": {"value": 2.0, "better": "lower", "tolerance": 0.5},
    "signaling.throughput_vs_bare": {"value": 0.5, "better": "higher", "tolerance": 0.3},
}


def _checks(**now: float) -> dict[str, runner.Check]:
    ratios = {f"kernels.{key}": value for key, value in now.items()}
    return {check.name: check for check in runner.compare(BASELINE, ratios, ["kernels"])}


def test_a_ratio_within_tolerance_passes() -> None:
    checks = _checks(speedup=3.1, cost=2.9)
    assert checks["kernels.speedup"].ok  # limit 4.0 * 0.75 = 3.0
    assert checks["kernels.cost"].ok  # limit 2.0 * 1.5 = 3.0
    assert checks["kernels.speedup"].limit == pytest.approx(3.0)
    assert checks["kernels.cost"].limit == pytest.approx(3.0)


def test_a_regressed_higher_is_better_ratio_fails() -> None:
    assert not _checks(speedup=2.9, cost=1.0)["kernels.speedup"].ok


def test_a_regressed_lower_is_better_ratio_fails_and_improvements_pass() -> None:
    checks = _checks(speedup=10.0, cost=3.1)
    assert not checks["kernels.cost"].ok
    assert checks["kernels.speedup"].ok
    assert _checks(speedup=4.0, cost=0.1)["kernels.cost"].ok


def test_a_baseline_ratio_the_run_did_not_produce_fails() -> None:
    check = _checks(speedup=4.0)["kernels.cost"]
    assert check.now is None
    assert not check.ok


def test_a_non_finite_ratio_fails() -> None:
    assert not _checks(speedup=math.nan, cost=1.0)["kernels.speedup"].ok


def test_entries_of_benchmarks_that_did_not_run_are_not_checked() -> None:
    assert set(_checks(speedup=4.0, cost=2.0)) == {"kernels.speedup", "kernels.cost"}


def test_a_bad_direction_in_the_baseline_is_an_error() -> None:
    with pytest.raises(ValueError, match="better"):
        runner.compare({"kernels.x": {"value": 1.0, "better": "up"}}, {"kernels.x": 1.0}, ["kernels"])


def test_ratios_are_keyed_by_benchmark() -> None:
    assert runner.flatten([_result(speedup=2.0)]) == {"demo.speedup": 2.0}


def test_update_keeps_direction_and_tolerance_and_adds_new_ratios() -> None:
    updated = runner.updated_baseline(BASELINE, {"kernels.cost": 1.5, "latency.new": 2.0, "kernels.speedup": math.nan})
    assert updated["kernels.cost"] == {"value": 1.5, "better": "lower", "tolerance": 0.5}
    assert updated["kernels.speedup"] == BASELINE["kernels.speedup"]  # a NaN does not replace a value
    assert updated["latency.new"] == {"value": 2.0, "better": "higher", "tolerance": runner.DEFAULT_TOLERANCE}


def test_check_exits_1_on_a_regression_and_0_when_within(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"demo.speedup": {"value": 4.0, "better": "higher", "tolerance": 0.25}}))
    monkeypatch.setattr(runner, "ORDER", ("demo",))
    speed = {"value": 2.0}
    monkeypatch.setattr(runner, "run_one", lambda name, quick: _result(quick, speedup=speed["value"]))
    assert runner.main(["--quick", "--check", "--baseline", str(baseline)]) == 1
    speed["value"] = 3.5
    assert runner.main(["--quick", "--check", "--baseline", str(baseline)]) == 0


def test_a_benchmark_that_raises_fails_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(name: str, quick: bool) -> Result:
        raise RuntimeError("broken")

    monkeypatch.setattr(runner, "ORDER", ("demo",))
    monkeypatch.setattr(runner, "run_one", boom)
    assert runner.main(["--quick", "--baseline", str(tmp_path / "none.json")]) == 1


def test_update_baseline_writes_this_runs_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"demo.speedup": {"value": 4.0, "better": "lower", "tolerance": 0.1}}))
    monkeypatch.setattr(runner, "ORDER", ("demo",))
    monkeypatch.setattr(runner, "run_one", lambda name, quick: _result(quick, speedup=2.5))
    assert runner.main(["--quick", "--update-baseline", "--baseline", str(baseline)]) == 0
    assert json.loads(baseline.read_text()) == {"demo.speedup": {"value": 2.5, "better": "lower", "tolerance": 0.1}}
