"""``mediabot recordings`` through typer's runner, over real call folders and a real index file."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mediabot.store.cli import recordings_app
from mediabot.store.index import INDEX_FILE
from tests.store.test_index import ADELE, standard_transcript, write_call

runner = CliRunner()
CALL = "4c265775-f999-4ae8-99d3-19f34ec23c23"


@pytest.fixture
def out(tmp_path: Path) -> Path:
    root = tmp_path / "recordings"
    write_call(root, CALL, transcript=standard_transcript(CALL))
    write_call(root, "call-b", created="2026-11-30T10:00:00Z")
    return root


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(recordings_app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_list_builds_the_index_on_first_use_and_prints_json(out: Path) -> None:
    code, stdout, stderr = run("list", "--out", str(out), "--json")
    assert code == 0, stderr
    assert "building it from 2 call folder(s)" in stderr
    assert (out / INDEX_FILE).is_file()
    document = json.loads(stdout)
    assert [c["call_id"] for c in document["calls"]] == ["call-b", CALL]
    assert document["total"] == 2 and document["calls"][1]["transcribed"] == 4
    # The second time the index is there: nothing to say on stderr.
    code, stdout, stderr = run("list", "--out", str(out))
    assert code == 0 and stderr == ""
    assert "4c265775" in stdout and "call-b" in stdout and "01:00.0" in stdout and "4/5" in stdout


def test_the_output_folder_comes_from_the_environment(out: Path) -> None:
    code, stdout, _ = run("list", "--json", env={"MEDIABOT_OUTPUT_DIR": str(out)})
    assert code == 0 and len(json.loads(stdout)["calls"]) == 2


def test_search_prints_the_call_the_speaker_the_time_and_the_line(out: Path) -> None:
    code, stdout, stderr = run("search", "quarterly budget", "--out", str(out))
    assert code == 0, stderr
    assert "Adele Vance" in stdout and "00:01.5" in stdout and "00:07.0" in stdout
    assert "4c265775" in stdout and "budget" in stdout

    code, stdout, _ = run("search", '"quarterly budget"', "--out", str(out), "--json")
    assert code == 0
    document = json.loads(stdout)
    assert document["query"] == '"quarterly budget"'
    assert [(h["call_id"], h["participant_id"], h["start"]) for h in document["hits"]] == [(CALL, ADELE, 1.5)]
    assert document["hits"][0]["snippet"] == "The [quarterly budget] is ready."

    code, stdout, stderr = run("search", "nothing-like-this", "--out", str(out))
    assert code == 0 and stdout == "" and "no transcript line matches" in stderr


@pytest.mark.parametrize("query", ['"', "AND OR NOT", "*", "'; DROP TABLE calls; --", "café"])
def test_hostile_searches_are_not_errors(out: Path, query: str) -> None:
    code, stdout, stderr = run("search", query, "--out", str(out), "--json")
    assert code == 0, stderr
    assert isinstance(json.loads(stdout)["hits"], list)


def test_show_prints_participants_speaking_time_and_transcript(out: Path) -> None:
    code, stdout, stderr = run("show", "4c26", "--out", str(out))  # the start of the id is enough
    assert code == 0, stderr
    assert CALL in stdout
    assert "Adele Vance" in stdout and "00:05.8" in stdout  # 5.75 s of speech
    assert "Mégan Bowen" in stdout and "00:03.8" in stdout
    assert "café" in stdout and "(not transcribed)" in stdout and "01:05.2" in stdout

    code, stdout, _ = run("show", CALL, "--out", str(out), "--json")
    assert code == 0
    document = json.loads(stdout)
    assert document["call_id"] == CALL and len(document["transcript"]) == 5
    assert {p["participant_id"]: p["speaking_s"] for p in document["participants"]}[ADELE] == 5.75


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "no-such-call"], "no call 'no-such-call'"),
        (["show", ""], "no call ''"),
        (["export", "no-such-call"], "no call 'no-such-call'"),
        (["export", "../recordings"], "no call"),
        (["search", "  "], "the search query is empty"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(out: Path, args: list[str], message: str) -> None:
    assert run("reindex", "--out", str(out))[0] == 0
    code, stdout, stderr = run(*args, "--out", str(out))
    assert code == 2
    assert stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("error: ") and message in stderr
    assert "Traceback" not in stderr


def test_an_ambiguous_start_of_an_id_and_no_recordings_at_all(out: Path, tmp_path: Path) -> None:
    write_call(out, "call-c")
    code, _, stderr = run("show", "call-", "--out", str(out))
    assert code == 2 and "more than one call" in stderr
    code, _, stderr = run("list", "--out", str(tmp_path / "empty"))
    assert code == 2 and stderr.startswith("error: no recordings in") and stderr.count("\n") == 1
    assert not (tmp_path / "empty").exists()
    code, _, stderr = run("reindex", "--out", str(tmp_path / "empty"))
    assert code == 2 and "is not a folder" in stderr


def test_export_zip_and_json(out: Path, tmp_path: Path) -> None:
    dest = tmp_path / "exports"
    code, stdout, stderr = run("export", "4c26", "--format", "zip", "--dest", str(dest), "--out", str(out))
    assert code == 0, stderr
    assert stdout.strip() == str(dest / f"{CALL}.zip")
    with zipfile.ZipFile(dest / f"{CALL}.zip") as archive:
        assert f"{CALL}/audio/mixed.wav" in archive.namelist() and f"{CALL}/transcript.json" in archive.namelist()

    code, stdout, _ = run("export", CALL, "--format", "json", "--dest", str(dest), "--out", str(out), "--json")
    assert code == 0
    summary = json.loads(stdout)
    assert summary["path"] == str(dest / f"{CALL}.json") and summary["bytes"] > 0
    assert json.loads(Path(summary["path"]).read_text())["call"]["call_id"] == CALL

    code, _, stderr = run("export", CALL, "--format", "mp3", "--out", str(out))
    assert code == 2 and "mp3" in stderr  # click's own usage error


def test_reindex_picks_up_new_folders(out: Path) -> None:
    assert run("list", "--out", str(out), "--json")[0] == 0
    write_call(out, "call-new", created="2026-12-24T00:00:00Z")
    code, stdout, _ = run("reindex", "--out", str(out), "--json")
    assert code == 0 and json.loads(stdout) == {"output_dir": str(out), "index": str(out / INDEX_FILE), "calls": 3}
    code, stdout, _ = run("reindex", "--out", str(out))
    assert code == 0 and stdout.strip() == f"indexed 3 call(s) into {out / INDEX_FILE}"
    assert json.loads(run("list", "--out", str(out), "--json")[1])["calls"][0]["call_id"] == "call-new"


def test_every_command_explains_itself() -> None:
    code, stdout, _ = run("--help")
    assert code == 0
    for command in ("list", "show", "search", "export", "reindex"):
        assert command in stdout
        code, help_text, _ = run(command, "--help")
        assert code == 0 and "--out" in help_text and "--json" in help_text and "MEDIABOT_OUTPUT_DIR" in help_text


def test_a_damaged_index_is_an_error_that_reindex_repairs(out: Path) -> None:
    (out / INDEX_FILE).write_bytes(b"this is not an sqlite file" * 100)
    code, stdout, stderr = run("list", "--out", str(out))
    assert code == 2 and stdout == "" and stderr.count("\n") == 1 and "reindex" in stderr
    code, _, stderr = run("reindex", "--out", str(out))
    assert code == 0 and "damaged" in stderr
    code, stdout, _ = run("search", "budget", "--out", str(out), "--json")
    assert code == 0 and len(json.loads(stdout)["hits"]) == 2
