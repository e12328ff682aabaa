"""Scenarios on sandbox calls: the roster they bring, the media the relay plays into a real bot, how calls end."""

from __future__ import annotations

import json
import wave
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from mediabot.calls import Bot, ManagedCall
from mediabot.sandbox import SandboxServer
from tests.service.conftest import ServiceServer, wait_for

CLIPS = Path(__file__).parent.parent.parent / "mediabot" / "sandbox" / "scenarios"


def scenario(folder: Path, kind: str, duration: float = 3.0, **extra: Any) -> Path:
    data: dict[str, Any] = {
        "name": f"{kind} test",
        "kind": kind,
        "duration": duration,
        "participants": [
            {"name": "Ann", "audio": str(CLIPS / "adele-vance.wav")},
            {"name": "Ben", "audio": str(CLIPS / "megan-bowen.wav"), "dtmf": [{"at": 1.0, "digits": "7"}]},
        ],
        **extra,
    }
    path = folder / f"{kind}.json"
    path.write_text(json.dumps(data), "utf-8")
    return path


def start(sandbox: SandboxServer, path: Path, service: ServiceServer) -> dict[str, Any]:
    with httpx.Client(base_url=sandbox.base_url, verify=sandbox.ssl_context(), trust_env=False) as http:
        response = http.post(
            "/_sandbox/scenarios", json={"path": str(path), "callback_uri": f"{service.base_url}/api/calling"}
        )
        assert response.status_code == 201, response.text
        return dict(response.json())


def run_state(sandbox: SandboxServer, run_id: str) -> dict[str, Any]:
    with httpx.Client(base_url=sandbox.base_url, verify=sandbox.ssl_context(), trust_env=False) as http:
        return dict(http.get(f"/_sandbox/scenarios/{run_id}").json())


def finished(service: ServiceServer, sandbox: SandboxServer, run: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """Wait for the scenario's call to end and its files to be complete; the run and the call folder."""
    wait_for(lambda: run_state(sandbox, run["id"])["call_id"] is not None, "the scenario's call")
    call_id = run_state(sandbox, run["id"])["call_id"]

    def ended() -> bool:
        call = service.manager.get(call_id)
        return call is not None and call.state == "terminated"

    wait_for(ended, "the call to end", timeout=30)
    folder = Path(service.settings.output_dir) / call_id

    def complete() -> bool:
        meta = folder / "call.json"
        return meta.is_file() and bool(json.loads(meta.read_text()).get("complete"))

    wait_for(complete, "the call's files", timeout=30)
    return run_state(sandbox, run["id"]), folder


class Announcer(Bot):
    """Plays a prompt as soon as the call is established."""

    manager: Any = None

    async def on_established(self, call: ManagedCall) -> None:
        await self.manager.play_prompt(call.id, "hello.wav")


@pytest.fixture
def prompt_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "prompts"
    folder.mkdir()
    t = np.arange(8_000) / 16_000
    with wave.open(str(folder / "hello.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes((8000 * np.sin(2 * np.pi * 600 * t)).astype("<i2").tobytes())
    return folder


def test_incoming_scenario_is_answered_recorded_and_hears_the_prompt(
    sandbox: SandboxServer, tmp_path: Path, prompt_dir: Path
) -> None:
    bot = Announcer()
    service = ServiceServer(
        sandbox, bot=bot, prompt_dir=prompt_dir, output_dir=tmp_path / "out", transcriber="none"
    ).start()
    bot.manager = service.manager
    try:
        run = start(sandbox, scenario(tmp_path, "incoming", duration=5.0), service)
        assert run["status"] == "ringing" and run["call_id"]
        run, folder = finished(service, sandbox, run)
        prompts = [op.to_json() for op in service.manager.get(run["call_id"]).operations.values()]
    finally:
        service.stop()
    assert run["status"] == "finished" and run["error"] is None
    # The relay heard the prompt on main.
    assert run["main"]["received_frames"] > 0 and run["main"]["audio_at"] is not None, (run["main"], prompts)
    meta = json.loads((folder / "call.json").read_text())
    names = {p["display_name"]: p for p in meta["participants"]}
    assert set(names) == {"Ann", "Ben"}
    sent = {p["name"]: p for p in run["participants"]}
    assert {names[n]["source_ids"][0] for n in names} == {sent[n]["source_id"] for n in sent}
    assert all(p["sent"] > 100 for p in run["participants"])
    for person in names.values():
        assert (folder / person["file"]).is_file()
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    [tone] = [e for e in events if e["type"] == "tone"]
    assert tone["digit"] == "7" and tone["participant_id"] == names["Ben"]["id"]
    kinds = [e["type"] for e in events]
    assert "prompt_started" in kinds and "prompt_finished" in kinds
    assert {"type": "state", "state": "terminated"}.items() <= next(
        e for e in reversed(events) if e["type"] == "state"
    ).items()


def test_outgoing_scenario_waits_for_the_bots_call(sandbox: SandboxServer, tmp_path: Path) -> None:
    service = ServiceServer(sandbox, output_dir=tmp_path / "out", transcriber="none").start()
    try:
        run = start(sandbox, scenario(tmp_path, "outgoing"), service)
        assert run["status"] == "armed" and run["call_id"] is None
        response = service.client.post("/v1/calls", json={"user_ids": [run["target_user_id"]]})
        assert response.status_code == 201, response.text
        run, folder = finished(service, sandbox, run)
    finally:
        service.stop()
    assert run["call_id"] == response.json()["id"] and run["status"] == "finished"
    assert len(json.loads((folder / "call.json").read_text())["participants"]) == 2


def test_mixed_media_arrives_as_one_stream_on_main(sandbox: SandboxServer, tmp_path: Path) -> None:
    service = ServiceServer(sandbox, output_dir=tmp_path / "out", media_receive="mixed", transcriber="none").start()
    try:
        run = start(sandbox, scenario(tmp_path, "incoming", media="mixed"), service)
        run, folder = finished(service, sandbox, run)
    finally:
        service.stop()
    assert run["main"]["sent"] > 100  # the platform's mix went out on main
    meta = json.loads((folder / "call.json").read_text())
    assert all(p["file"] is None for p in meta["participants"])  # nobody's own stream: it is one mix
    assert sorted(p.name for p in (folder / "audio").iterdir()) == ["main.wav", "mixed.wav"]


@pytest.mark.parametrize("teams_accepts", [True, False])
def test_compliance_recording_follows_the_gate(sandbox: SandboxServer, tmp_path: Path, teams_accepts: bool) -> None:
    service = ServiceServer(sandbox, output_dir=tmp_path / "out", compliance_recording=True, transcriber="none").start()
    try:
        if not teams_accepts:
            sandbox.inject_fault("POST", "/v1.0/communications/calls/*/updateRecordingStatus", 403, match="glob")
        run = start(sandbox, scenario(tmp_path, "incoming", compliance_recording=True), service)
        wait_for(lambda: run_state(sandbox, run["id"])["status"] == "finished", "the scenario to finish", 30)
        call_id = run_state(sandbox, run["id"])["call_id"]
        wait_for(lambda: service.manager.get(call_id).state == "terminated", "the call to end")
        folder = Path(service.settings.output_dir) / call_id
        if teams_accepts:
            wait_for(lambda: (folder / "call.json").is_file(), "the call's files")
    finally:
        service.stop()
        sandbox.clear_faults()
    if teams_accepts:
        assert len(list((folder / "audio").glob("*.wav"))) == 3  # two participants and the mix
    else:
        assert not folder.exists()  # a closed gate writes nothing at all
