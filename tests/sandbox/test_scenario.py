"""Scenario files: loading, validation errors, and prepare() (layout, DTMF, Opus packets, cache, network schedule)."""

from __future__ import annotations

import json
import os
import wave
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest
import yaml

from mediabot.sandbox._scenario import (
    DEMO_SCENARIO,
    DTMF_GAP_S,
    DTMF_TONE_S,
    PACKET_SAMPLES,
    SCENARIO_RATE,
    ScenarioError,
    load_scenario,
    prepare,
)

ROWS = {"1": 697, "2": 697, "3": 697, "4": 770, "#": 941, "0": 941, "D": 941}
COLUMNS = {"1": 1209, "2": 1336, "3": 1477, "4": 1209, "#": 1477, "0": 1336, "D": 1633}
ALL_FREQUENCIES = (697, 770, 852, 941, 1209, 1336, 1477, 1633)


def write_wav(path: Path, samples: npt.NDArray[Any], rate: int, channels: int = 1, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(samples.tobytes())
    return path


def sine(seconds: float, freq: float, rate: int, amplitude: float = 8000.0) -> npt.NDArray[np.int16]:
    t = np.arange(round(seconds * rate)) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def power(signal: npt.NDArray[Any], freq: float) -> float:
    """Goertzel-style power of one frequency (normalised by length)."""
    t = np.arange(signal.size) / SCENARIO_RATE
    return float(np.abs(np.dot(signal.astype(np.float64), np.exp(-2j * np.pi * freq * t))) ** 2 / signal.size**2)


def ncc_best(a: npt.NDArray[Any], b: npt.NDArray[Any], max_lag: int = 16) -> tuple[float, int]:
    """Best normalised cross-correlation of equal-length signals within ±max_lag samples."""
    best = (-1.0, 0)
    x, y = a.astype(np.float64), b.astype(np.float64)
    for lag in range(-max_lag, max_lag + 1):
        u = x[max(0, lag) : x.size + min(0, lag)]
        v = y[max(0, -lag) : y.size + min(0, -lag)]
        value = float(u @ v / np.sqrt((u @ u) * (v @ v)))
        best = max(best, (value, lag))
    return best


def decode(packets: tuple[bytes, ...]) -> npt.NDArray[np.int16]:
    codec = av.CodecContext.create("libopus", "r")
    out = []
    for data in packets:
        for frame in codec.decode(av.Packet(data)):
            pcm = frame.to_ndarray()
            out.append(pcm[0] if pcm.shape[0] > 1 else pcm[0, :: len(frame.layout.channels)])
    return np.concatenate(out).astype(np.int16)


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    """A 1 s 440 Hz stereo clip at 22.05 kHz (resampling and downmix both needed)."""
    mono = sine(1.0, 440.0, 22_050)
    return write_wav(tmp_path / "clip.wav", np.repeat(mono, 2), 22_050, channels=2)


@pytest.fixture
def silence(tmp_path: Path) -> Path:
    return write_wav(tmp_path / "silence.wav", np.zeros(16_000, np.int16), 16_000)


def base(audio: str = "clip.wav", **participant: Any) -> dict[str, Any]:
    return {
        "name": "Test call",
        "kind": "meeting",
        "duration": 2.0,
        "participants": [{"name": "Ann", "audio": audio, **participant}],
    }


def write_scenario(directory: Path, data: dict[str, Any], name: str = "call.yaml") -> Path:
    path = directory / name
    path.write_text(json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data), encoding="utf-8")
    return path


# -- loading ------------------------------------------------------------------------------------------------------


def test_yaml_and_json_load_the_same_scenario_with_relative_audio(tmp_path: Path, clip: Path) -> None:
    data = base(join_at=0.5, leave_at=1.5, dtmf=[{"at": 0.6, "digits": "12#"}], network={"loss": 0.1})
    sub = tmp_path / "scenarios"
    sub.mkdir()
    data["participants"][0]["audio"] = "../clip.wav"
    from_yaml = load_scenario(write_scenario(sub, data))
    from_json = load_scenario(write_scenario(sub, data, "call.json"))
    assert from_yaml == from_json
    person = from_yaml.participants[0]
    assert person.audio == clip.resolve()
    assert (person.join_at, person.leave_at, person.dtmf[0].digits) == (0.5, 1.5, "12#")
    assert person.network.loss == 0.1 and person.network.jitter_ms == 0.0
    assert from_yaml.media == "unmixed" and from_yaml.compliance_recording is False


def test_bundled_demo_scenario() -> None:
    demo = load_scenario(DEMO_SCENARIO)
    assert demo.kind == "meeting" and demo.media == "unmixed"
    names = [p.name for p in demo.participants]
    assert names == ["Adele Vance", "Alex Wilber", "Megan Bowen"]
    megan = demo.participants[2]
    assert megan.join_at > 0 and megan.leave_at is not None and megan.leave_at < demo.duration
    alex = demo.participants[1]
    assert alex.network.loss == 0.05 and alex.network.jitter_ms == 40 and alex.dtmf[0].digits == "1234#"
    assert sum(p.audio.stat().st_size for p in demo.participants) < 600_000


def test_integer_digits_from_yaml_are_accepted(tmp_path: Path, clip: Path) -> None:
    path = tmp_path / "call.yaml"
    path.write_text(
        "name: x\nkind: incoming\nduration: 2\nparticipants:\n"
        "  - name: Ann\n    audio: clip.wav\n    dtmf:\n      - at: 0.5\n        digits: 1234\n",
        encoding="utf-8",
    )
    assert load_scenario(path).participants[0].dtmf[0].digits == "1234"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"kind": "webinar"}, ["kind", "'meeting', 'incoming' or 'outgoing'"]),
        ({"duration": 0}, ["duration", "greater than 0"]),
        ({"surprise": 1}, ["surprise", "Extra inputs are not permitted"]),
        ({"participants": []}, ["participants", "at least 1"]),
        ({"p": {"join_at": 1.0, "leave_at": 0.5}}, ["participants[0] (Ann)", "leave_at (0.5) must be after join_at"]),
        ({"p": {"leave_at": 3.0}}, ["participant 'Ann'", "leave_at (3.0) is after the end (2.0)"]),
        ({"p": {"join_at": 2.0}}, ["participant 'Ann'", "join_at (2.0) is not before the end"]),
        ({"p": {"join_at": 1.0, "dtmf": [{"at": 0.5, "digits": "1"}]}}, ["dtmf at 0.5 s is before"]),
        ({"p": {"leave_at": 1.0, "dtmf": [{"at": 0.8, "digits": "12"}]}}, ["lasts until 1.04 s", "leaves (1.0 s)"]),
        ({"p": {"dtmf": [{"at": 1.95, "digits": "1"}]}}, ["lasts until 2.03 s"]),
        ({"p": {"dtmf": [{"at": 1.8, "digits": "12"}]}}, ["lasts until 2.04 s, after the end"]),
        ({"p": {"dtmf": [{"at": 0.5, "digits": "12x"}]}}, ["dtmf[0].digits", "'12x' must be one or more of 0-9"]),
        ({"p": {"dtmf": [{"at": 0.5, "digits": ""}]}}, ["digits '' must be"]),
        ({"p": {"audio": "nowhere.wav"}}, ["participants[0] (Ann).audio", "nowhere.wav does not exist"]),
        ({"p": {"network": {"loss": 1.5}}}, ["network.loss", "less than or equal to 1"]),
        ({"p": {"network": {"jitter_ms": -1}}}, ["network.jitter_ms", "greater than or equal to 0"]),
        ({"p": {"nickname": "A"}}, ["nickname", "Extra inputs"]),
        ({"twice": True}, ["participant 'Ann' appears twice"]),
    ],
)
def test_validation_errors_are_clear_and_name_the_file(
    tmp_path: Path, clip: Path, change: dict[str, Any], expected: list[str]
) -> None:
    data = base()
    for key, value in change.items():
        if key == "p":
            data["participants"][0].update(value)
        elif key == "twice":
            data["participants"].append(dict(data["participants"][0]))
        else:
            data[key] = value
    path = write_scenario(tmp_path, data)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    for part in expected:
        assert part in message


def test_audio_must_be_pcm16(tmp_path: Path) -> None:
    write_wav(tmp_path / "wide.wav", np.zeros(300, np.uint8), 8000, width=3)
    (tmp_path / "text.wav").write_text("not a wav")
    for name, expected in (("wide.wav", "is 24-bit PCM; only 16-bit PCM WAV is supported"), ("text.wav", "not a PCM")):
        path = write_scenario(tmp_path, base(name))
        with pytest.raises(ScenarioError, match=expected):
            load_scenario(path)


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match=r"bad\.yaml: not valid YAML"):
        load_scenario(bad)
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    with pytest.raises(ScenarioError, match=r"list\.json: a scenario is a mapping"):
        load_scenario(listing)
    with pytest.raises(ScenarioError, match=r"missing\.yaml: cannot read"):
        load_scenario(tmp_path / "missing.yaml")


# -- prepare ------------------------------------------------------------------------------------------------------


def test_presence_is_laid_out_in_whole_packets(tmp_path: Path, clip: Path) -> None:
    scenario = load_scenario(write_scenario(tmp_path, base(join_at=0.5, leave_at=1.23)))
    person = prepare(scenario).participants[0]
    count = -(-round(0.73 * SCENARIO_RATE) // PACKET_SAMPLES)
    assert count == 37
    assert len(person.packets) == count
    assert person.reference.size == count * PACKET_SAMPLES
    assert person.reference.dtype == np.int16
    assert person.first_pts == 24_000
    assert person.end_s == 1.23
    # The 1 s clip is cut at leave_at (0.73 s of presence): silence only in the padding of the last packet.
    cut = round(0.73 * SCENARIO_RATE)
    assert np.all(person.reference[cut:] == 0)
    assert np.abs(person.reference[cut - 960 : cut]).max() > 4000
    # Resampled and downmixed: still a 440 Hz sine of the same amplitude.
    body = person.reference[4800:28800]
    assert power(body, 440) > 100 * power(body, 880)
    assert 7500 < np.abs(body).max() < 8500


def test_clip_shorter_than_the_presence_is_followed_by_silence(tmp_path: Path, clip: Path) -> None:
    person = prepare(load_scenario(write_scenario(tmp_path, base()))).participants[0]
    assert len(person.packets) == 100 and person.end_s == 2.0
    assert np.abs(person.reference[: SCENARIO_RATE - 100]).max() > 7000
    assert np.all(person.reference[SCENARIO_RATE + 100 :] == 0)


def test_dtmf_tones_are_at_their_sample_positions(tmp_path: Path, silence: Path) -> None:
    data = base("silence.wav", join_at=0.2, dtmf=[{"at": 0.5, "digits": "14#"}, {"at": 1.3, "digits": "D"}])
    person = prepare(load_scenario(write_scenario(tmp_path, data))).participants[0]
    presses = [(0.5 + i * (DTMF_TONE_S + DTMF_GAP_S), digit) for i, digit in enumerate("14#")] + [(1.3, "D")]
    level = (32767 * 10 ** (-10 / 20) / 2) ** 2  # the power of one -10 dBFS sine component
    for at, digit in presses:
        start = round((at - 0.2) * SCENARIO_RATE)
        tone = person.reference[start + 240 : start + round(DTMF_TONE_S * SCENARIO_RATE) - 240]
        gap = person.reference[start + round(DTMF_TONE_S * SCENARIO_RATE) + 240 : start + round(0.15 * SCENARIO_RATE)]
        powers = {freq: power(tone, freq) for freq in ALL_FREQUENCIES}
        assert powers[ROWS[digit]] == pytest.approx(level, rel=0.05)
        assert powers[COLUMNS[digit]] == pytest.approx(level, rel=0.05)
        others = [p for f, p in powers.items() if f not in (ROWS[digit], COLUMNS[digit])]
        assert max(others) < level / 100
        assert np.all(gap == 0)
        # the tone starts exactly at its sample
        assert person.reference[start - 1] == 0 and np.any(person.reference[start : start + 10] != 0)
    assert np.all(person.reference[: round(0.3 * SCENARIO_RATE) - 1] == 0)


def test_dtmf_is_mixed_in_with_saturation(tmp_path: Path) -> None:
    write_wav(tmp_path / "loud.wav", np.full(16_000, 30_000, np.int16), 16_000)
    person = prepare(load_scenario(write_scenario(tmp_path, base("loud.wav", dtmf=[{"at": 0.4, "digits": "0"}]))))
    reference = person.participants[0].reference
    tone = reference[round(0.4 * SCENARIO_RATE) : round(0.48 * SCENARIO_RATE)]
    assert tone.max() == 32767  # clipped, not wrapped around
    assert tone.min() > 0


def test_packets_decode_to_the_reference(tmp_path: Path) -> None:
    speech = DEMO_SCENARIO.parent / "adele-vance.wav"
    data = base(str(speech))
    data["duration"] = 3.0
    person = prepare(load_scenario(write_scenario(tmp_path, data))).participants[0]
    decoded = decode(person.packets)
    assert decoded.size == person.reference.size
    value, lag = ncc_best(decoded, person.reference)
    assert value >= 0.9
    assert abs(lag) <= 8  # the encoder's look-ahead is compensated: packet k is frame k
    assert sum(map(len, person.packets)) / len(person.packets) < 200  # ~64 kbit/s (160 B per 20 ms), not 96


def test_clips_are_cached_and_shared(tmp_path: Path, clip: Path) -> None:
    data = base(join_at=0.1)
    data["participants"].append({"name": "Bob", "audio": "clip.wav", "join_at": 0.1, "network": {"loss": 0.5}})
    scenario = load_scenario(write_scenario(tmp_path, data))
    first, again, other_seed = prepare(scenario), prepare(scenario), prepare(scenario, seed=7)
    ann, bob = first.participants
    assert ann.clip is bob.clip  # same file and timing: one encoding for both
    assert again.participants[0].clip is ann.clip
    assert other_seed.participants[1].packets is bob.packets
    assert np.array_equal(again.participants[1].kept, bob.kept)
    assert not np.array_equal(other_seed.participants[1].kept, bob.kept)
    assert not ann.reference.flags.writeable
    os.utime(clip, ns=(clip.stat().st_atime_ns, clip.stat().st_mtime_ns + 1_000_000_000))
    assert prepare(scenario).participants[0].clip is not ann.clip  # an edited file is prepared again


def test_network_schedule_loss_rate_and_jitter(tmp_path: Path, silence: Path) -> None:
    data = base("silence.wav", network={"loss": 0.2, "jitter_ms": 30})
    data["duration"] = 40.0
    person = prepare(load_scenario(write_scenario(tmp_path, data)), seed=3).participants[0]
    total = len(person.packets)
    assert total == 2000
    assert person.dropped / total == pytest.approx(0.2, abs=0.04)
    assert np.all(np.diff(person.kept) > 0)
    due = person.kept * 0.02
    assert np.all(person.release_s >= due - 1e-9)
    assert np.all(person.release_s <= due + 0.030 + 1e-9)
    assert np.all(np.diff(person.release_s) >= 0)  # never reordered
    assert np.mean(person.release_s - due) == pytest.approx(0.015, abs=0.004)


def test_no_network_means_every_packet_on_time(tmp_path: Path, clip: Path) -> None:
    person = prepare(load_scenario(write_scenario(tmp_path, base()))).participants[0]
    assert person.dropped == 0
    assert np.array_equal(person.kept, np.arange(100))
    assert np.allclose(person.release_s, np.arange(100) * 0.02)


def test_mixed_media_prepares_the_saturating_mix(tmp_path: Path) -> None:
    write_wav(tmp_path / "loud.wav", np.full(8_000, 20_000, np.int16), 16_000)
    data = {
        "name": "mix",
        "kind": "meeting",
        "duration": 1.5,
        "media": "mixed",
        "participants": [
            {"name": "Ann", "audio": "loud.wav"},
            {"name": "Bob", "audio": "loud.wav", "join_at": 0.25, "leave_at": 1.0},
        ],
    }
    prepared = prepare(load_scenario(write_scenario(tmp_path, data)))
    assert prepared.media == "mixed" and prepared.mixed is not None
    mixed = prepared.mixed.reference
    assert mixed.size == 75 * PACKET_SAMPLES and len(prepared.mixed.packets) == 75
    rate = SCENARIO_RATE
    # (soxr's ripple at the clip's edges excluded)
    assert np.abs(mixed[960 : rate // 4 - 960].astype(int) - 20_000).max() <= 2  # Ann alone
    assert np.all(mixed[rate // 4 + 960 : rate // 2 - 960] == 32_767)  # both: saturated, not wrapped
    assert np.abs(mixed[rate // 2 + 960 : round(0.75 * rate) - 960].astype(int) - 20_000).max() <= 2  # Bob alone
    assert np.all(mixed[round(0.75 * rate) + 960 :] == 0)
    unmixed = prepare(load_scenario(write_scenario(tmp_path, data)), media="unmixed")
    assert unmixed.mixed is None and unmixed.participants[1].clip is prepared.participants[1].clip


def test_bundled_clips_are_16_khz_mono_pcm16() -> None:
    for participant in load_scenario(DEMO_SCENARIO).participants:
        with wave.open(str(participant.audio)) as reader:
            assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (16_000, 1, 2)
