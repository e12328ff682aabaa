"""The command line: help, version, the demo end to end, and user errors without tracebacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from mediabot import __version__
from mediabot.cli import app

runner = CliRunner()


def test_version_and_help_describe_every_command() -> None:
    assert runner.invoke(app, ["--version"]).stdout.strip() == f"mediabot {__version__}"
    help_text = runner.invoke(app, ["--help"]).stdout
    for command in ("sandbox", "demo"):
        assert command in help_text
    sandbox_help = runner.invoke(app, ["sandbox", "--help"]).stdout
    assert "--state-dir" in sandbox_help and "MEDIABOT_" in sandbox_help


def test_every_command_and_subcommand_has_help() -> None:
    import typer.main

    root = typer.main.get_command(app)

    def walk(command: object, path: list[str]) -> list[list[str]]:
        found = [path]
        for name, sub in getattr(command, "commands", {}).items():
            found += walk(sub, [*path, name])
        return found

    paths = walk(root, [])
    assert {"serve", "sandbox", "demo", "transcribe", "recordings"} <= {p[0] for p in paths if p}
    assert ["recordings", "search"] in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, path
        assert "Usage:" in result.stdout and len(result.stdout.split("Options")[0]) > 60, path
    demo_help = runner.invoke(app, ["demo", "--help"]).stdout
    assert "--scenario" in demo_help and "--graph-only" in demo_help and "--json" in demo_help


def test_the_graph_only_demo_runs_the_sandbox_in_its_own_process_and_every_step_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mediabot", "demo", "--graph-only", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True
    names = [step["name"] for step in summary["steps"]]
    assert names[0] == "token" and "ride out throttling" in names and names[-1] == "read the call record"
    assert all(step["ok"] for step in summary["steps"])


def test_a_user_error_is_one_line_and_a_hint_not_a_traceback(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = subprocess.run(
        [sys.executable, "-m", "mediabot", "sandbox", "--port", "0", "--state-dir", str(blocker / "state")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "error:" in result.stderr and "hint:" in result.stderr


def test_transcribe_a_wav_prints_what_was_said(tmp_path: Path) -> None:
    wav = tmp_path / "austen.wav"
    shutil.copy(Path(__file__).parent / "fixtures" / "speech" / "austen_0930.wav", wav)
    done = subprocess.run(
        [sys.executable, "-m", "mediabot", "transcribe", str(wav), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "MEDIABOT_TRANSCRIBER": "pocketsphinx"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    entries = json.loads(done.stdout.strip().splitlines()[-1])
    said = " ".join(e["text"] for e in entries).split()
    assert len({"might", "even", "have", "been", "made", "amiable", "himself"} & set(said)) >= 4, said
    assert (tmp_path / "austen.transcript.vtt").read_text().startswith("WEBVTT")
