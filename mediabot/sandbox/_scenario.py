"""Scenario files: the scripted participants the sandbox plays into a bot, and their audio prepared once for sending.

A scenario is a YAML or JSON file (the bundled demo is ``scenarios/demo.yaml``; its README has the commands that
made its clips)::

    name: Weekly sync
    kind: meeting                # meeting | incoming | outgoing
    duration: 18                 # seconds of call media
    media: unmixed               # unmixed: one WHIP session per participant | mixed: one mixed stream on main
    compliance_recording: false
    participants:
      - name: Alex Wilber
        audio: alex-wilber.wav   # PCM16 WAV of any rate and channel count, relative to the scenario file
        join_at: 0               # seconds on the call timeline (default 0)
        leave_at: 15             # optional: > join_at, <= duration (default: present to the end)
        dtmf:                    # keyed digits, played in-band: 80 ms tone + 80 ms gap each, within the presence
          - {at: 12.0, digits: "1234#"}
        network: {loss: 0.05, jitter_ms: 40}

:func:`load_scenario` validates a file; :class:`ScenarioError` names the file and every problem found.
:func:`prepare` turns a scenario into what the relay sends. Per participant, over its *presence* (``join_at`` to
``leave_at`` or ``duration``) in whole 20 ms packets: the reference signal (48 kHz mono int16: the clip from
``join_at``, cut at the end of the presence, silence after the clip, DTMF tones added with saturation) and that
signal encoded once into Opus packets (libopus through PyAV, 32 kbit/s, ``voip``). Packet ``k`` carries the
reference's samples ``[k·960, (k+1)·960)`` — the encoder's look-ahead is compensated — and its pts on the scenario
axis is ``round(join_at·48000) + k·960``. The clip's preparation (:class:`PreparedClip`) is cached in-process by
(file, mtime, size, presence, DTMF), so many streams of one scenario share the same packets. Each participant also
gets its seeded network schedule: which packets are lost and when each kept one is released (up to ``jitter_ms``
late, never reordered). With ``media: mixed`` the saturating sum of every participant's reference on the call
timeline (0 to ``duration``) is prepared and encoded too.
"""

from __future__ import annotations

import fractions
import functools
import json
import math
import re
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import soxr
import yaml
from av import AudioFrame, CodecContext
from av.audio.codeccontext import AudioCodecContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from mediabot._errors import ConfigError

__all__ = [
    "DEMO_SCENARIO",
    "DTMF_GAP_S",
    "DTMF_LEVEL_DBFS",
    "DTMF_TONE_S",
    "OPUS_BITRATE",
    "PACKET_S",
    "PACKET_SAMPLES",
    "SCENARIO_RATE",
    "DtmfSpec",
    "NetworkSpec",
    "ParticipantSpec",
    "PreparedClip",
    "PreparedMix",
    "PreparedParticipant",
    "PreparedScenario",
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "prepare",
]

Int16Array = npt.NDArray[np.int16]

DEMO_SCENARIO = Path(__file__).resolve().parent / "scenarios" / "demo.yaml"
"""The bundled demo meeting."""

SCENARIO_RATE = 48_000
PACKET_SAMPLES = 960
PACKET_S = PACKET_SAMPLES / SCENARIO_RATE
TIME_BASE = fractions.Fraction(1, SCENARIO_RATE)
OPUS_BITRATE = 64_000
DTMF_TONE_S = 0.08
DTMF_GAP_S = 0.08
DTMF_LEVEL_DBFS = -10.0
"""Peak level of each of a digit's two sines."""
MAX_DURATION_S = 4 * 3600

_DIGITS = re.compile(r"[0-9*#A-D]+")
_DTMF_FREQUENCIES = {
    key: (row, column)
    for row, keys in zip((697.0, 770.0, 852.0, 941.0), ("123A", "456B", "789C", "*0#D"), strict=True)
    for column, key in zip((1209.0, 1336.0, 1477.0, 1633.0), keys, strict=True)
}
_CLIP_CACHE_SIZE = 64


class ScenarioError(ConfigError):
    """A scenario file that cannot be read or is not valid (the message names the file and each problem)."""


_MODEL = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class NetworkSpec(BaseModel):
    """The network between a participant and the bot: packet loss probability and release jitter."""

    model_config = _MODEL

    loss: float = Field(0.0, ge=0.0, le=1.0)
    jitter_ms: float = Field(0.0, ge=0.0, le=1000.0)


class DtmfSpec(BaseModel):
    """Digits keyed in-band from ``at`` (call-timeline seconds), one every 160 ms."""

    model_config = _MODEL

    at: float = Field(ge=0.0)
    digits: str

    @field_validator("digits", mode="before")
    @classmethod
    def _digits_as_text(cls, value: Any) -> Any:
        # YAML reads `digits: 1234` as an integer.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("digits")
    @classmethod
    def _keypad_digits(cls, value: str) -> str:
        if not _DIGITS.fullmatch(value):
            raise ValueError(f"digits {value!r} must be one or more of 0-9, *, #, A-D")
        return value

    @property
    def end(self) -> float:
        """When the last tone stops (seconds)."""
        return self.at + len(self.digits) * (DTMF_TONE_S + DTMF_GAP_S) - DTMF_GAP_S


class ParticipantSpec(BaseModel):
    """One scripted participant: its clip, presence, keyed digits and network."""

    model_config = _MODEL

    name: str = Field(min_length=1)
    audio: Path
    join_at: float = Field(0.0, ge=0.0)
    leave_at: float | None = None
    dtmf: tuple[DtmfSpec, ...] = ()
    network: NetworkSpec = NetworkSpec()

    @field_validator("audio")
    @classmethod
    def _pcm16_wav(cls, value: Path, info: ValidationInfo) -> Path:
        base = (info.context or {}).get("base_dir")
        path = value if value.is_absolute() or base is None else Path(base) / value
        if not path.is_file():
            raise ValueError(f"audio file {path} does not exist")
        _check_wav(path)
        return path.resolve()

    @model_validator(mode="after")
    def _presence(self) -> ParticipantSpec:
        if self.leave_at is not None and self.leave_at <= self.join_at:
            raise ValueError(f"leave_at ({self.leave_at}) must be after join_at ({self.join_at})")
        for press in self.dtmf:
            if press.at < self.join_at:
                raise ValueError(f"dtmf at {press.at} s is before the participant joins ({self.join_at} s)")
            if self.leave_at is not None and press.end > self.leave_at:
                raise ValueError(
                    f"dtmf {press.digits!r} at {press.at} s lasts until {press.end:.2f} s, "
                    f"after the participant leaves ({self.leave_at} s)"
                )
        return self

    def end(self, duration: float) -> float:
        """When the presence ends: ``leave_at``, or the end of the call."""
        return self.leave_at if self.leave_at is not None else duration


class Scenario(BaseModel):
    """A scripted call: its kind, length, audio mode and participants."""

    model_config = _MODEL

    name: str = Field(min_length=1)
    kind: Literal["meeting", "incoming", "outgoing"]
    duration: float = Field(gt=0.0, le=MAX_DURATION_S)
    media: Literal["unmixed", "mixed"] = "unmixed"
    compliance_recording: bool = False
    participants: tuple[ParticipantSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _within_call(self) -> Scenario:
        seen: set[str] = set()
        for participant in self.participants:
            who = f"participant {participant.name!r}"
            if participant.name in seen:
                raise ValueError(f"{who} appears twice: participant names must be unique")
            seen.add(participant.name)
            if participant.join_at >= self.duration:
                raise ValueError(f"{who}: join_at ({participant.join_at}) is not before the end ({self.duration})")
            if participant.leave_at is not None and participant.leave_at > self.duration:
                raise ValueError(f"{who}: leave_at ({participant.leave_at}) is after the end ({self.duration})")
            for press in participant.dtmf:
                if press.end > self.duration:
                    raise ValueError(
                        f"{who}: dtmf {press.digits!r} at {press.at} s lasts until {press.end:.2f} s, "
                        f"after the end ({self.duration} s)"
                    )
        return self


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (``.json``, else YAML); audio paths are relative to the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read the scenario: {exc}") from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        raise ScenarioError(f"{path}: not valid {kind}: {exc}") from exc
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: a scenario is a mapping (name, kind, duration, participants, ...)")
    try:
        return Scenario.model_validate(data, context={"base_dir": path.resolve().parent})
    except ValidationError as exc:
        raise ScenarioError(f"{path}: invalid scenario:\n{_describe(exc, data)}") from exc


def _describe(exc: ValidationError, data: dict[str, Any]) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        where = _where(error["loc"], data)
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"  {where}: {message}" if where else f"  {message}")
    return "\n".join(lines)


def _where(loc: Sequence[int | str], data: dict[str, Any]) -> str:
    parts: list[str] = []
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts[-1] += f"[{item}]"
            people = data.get("participants")
            if i == 1 and loc[0] == "participants" and isinstance(people, list) and item < len(people):
                name = people[item].get("name") if isinstance(people[item], dict) else None
                if name:
                    parts[-1] += f" ({name})"
        else:
            parts.append(item)
    return ".".join(parts)


def _check_wav(path: Path) -> None:
    try:
        with wave.open(str(path), "rb") as reader:
            width = reader.getsampwidth()
    except (wave.Error, EOFError, OSError) as exc:
        raise ValueError(f"audio file {path} is not a PCM WAV file ({exc})") from exc
    if width != 2:
        raise ValueError(
            f"audio file {path} is {8 * width}-bit PCM; only 16-bit PCM WAV is supported "
            f"(convert it, e.g. `sox in.wav -b 16 out.wav`)"
        )


# -- prepared audio ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class PreparedClip:
    """A participant's presence as sent: the reference signal and its Opus packets (shared, read-only)."""

    reference: Int16Array
    """48 kHz mono int16, ``len(packets) * 960`` samples: sample 0 is the presence start."""
    packets: tuple[bytes, ...]
    """Packet ``k`` encodes ``reference[k*960:(k+1)*960]``."""
    start: int
    """The presence start on the scenario axis (48 kHz samples): the pts of packet 0."""


@dataclass(frozen=True, slots=True, eq=False)
class PreparedMix:
    """The mixed call audio (0 to ``duration``): reference and packets, pts from 0."""

    reference: Int16Array
    packets: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, eq=False)
class PreparedParticipant:
    """One participant ready to send: timing, shared clip, and its seeded loss/jitter schedule."""

    name: str
    join_at: float
    leave_at: float | None
    end_s: float
    """When the presence ends (``leave_at`` or the call's ``duration``)."""
    clip: PreparedClip
    network: NetworkSpec
    kept: npt.NDArray[np.int64]
    """Indices of the packets that are sent (the others are lost), ascending."""
    release_s: npt.NDArray[np.float64]
    """For each kept packet: seconds after ``join_at`` when it is handed to the sender (non-decreasing)."""

    @property
    def packets(self) -> tuple[bytes, ...]:
        """Every packet of the presence (including the ones the schedule drops)."""
        return self.clip.packets

    @property
    def reference(self) -> Int16Array:
        """The presence's 48 kHz mono int16 signal (sample 0 at ``join_at``)."""
        return self.clip.reference

    @property
    def first_pts(self) -> int:
        """The pts of packet 0 (48 kHz, scenario axis)."""
        return self.clip.start

    @property
    def dropped(self) -> int:
        """How many packets the schedule drops."""
        return len(self.clip.packets) - int(self.kept.size)


@dataclass(frozen=True, slots=True, eq=False)
class PreparedScenario:
    """A scenario with every participant prepared (and the mix, for mixed media)."""

    scenario: Scenario
    seed: int
    media: Literal["unmixed", "mixed"]
    participants: tuple[PreparedParticipant, ...]
    mixed: PreparedMix | None

    @property
    def duration(self) -> float:
        """The call's length in seconds."""
        return self.scenario.duration

    def participant(self, name: str) -> PreparedParticipant:
        """The prepared participant called ``name`` (KeyError if none)."""
        for participant in self.participants:
            if participant.name == name:
                return participant
        raise KeyError(name)


def prepare(scenario: Scenario, *, seed: int = 0, media: Literal["unmixed", "mixed"] | None = None) -> PreparedScenario:
    """Resample, lay out, add DTMF and encode every participant (cached per clip); ``media`` overrides the file's.

    CPU-bound (resampling and Opus encoding of uncached clips): run it off the event loop.
    """
    participants = []
    for index, spec in enumerate(scenario.participants):
        end_s = spec.end(scenario.duration)
        try:
            stat = spec.audio.stat()
        except OSError as exc:
            raise ScenarioError(f"participant {spec.name!r}: cannot read {spec.audio}: {exc}") from exc
        presses = tuple((press.at, press.digits) for press in spec.dtmf)
        clip = _prepare_clip(str(spec.audio), stat.st_mtime_ns, stat.st_size, spec.join_at, end_s, presses)
        kept, release = _network_schedule(len(clip.packets), spec.network, np.random.default_rng([seed, index]))
        participants.append(
            PreparedParticipant(
                name=spec.name,
                join_at=spec.join_at,
                leave_at=spec.leave_at,
                end_s=end_s,
                clip=clip,
                network=spec.network,
                kept=kept,
                release_s=release,
            )
        )
    mode = media or scenario.media
    mixed = _mix(participants, scenario.duration) if mode == "mixed" else None
    return PreparedScenario(scenario=scenario, seed=seed, media=mode, participants=tuple(participants), mixed=mixed)


def _samples(seconds: float) -> int:
    return round(seconds * SCENARIO_RATE)


@functools.lru_cache(maxsize=_CLIP_CACHE_SIZE)
def _prepare_clip(
    path: str, mtime_ns: int, size: int, join_at: float, end_s: float, presses: tuple[tuple[float, str], ...]
) -> PreparedClip:
    # mtime_ns and size are only part of the cache key: an edited file is prepared again.
    start = _samples(join_at)
    length = _samples(end_s) - start
    count = -(-length // PACKET_SAMPLES)
    audio = _read_clip(Path(path), length)
    signal = np.zeros(count * PACKET_SAMPLES, np.int32)
    used = min(audio.size, length)
    signal[:used] = audio[:used]
    for at, digits in presses:
        for i, digit in enumerate(digits):
            offset = _samples(at + i * (DTMF_TONE_S + DTMF_GAP_S)) - start
            tone = _dtmf_tone(digit, _samples(DTMF_TONE_S))[: max(0, length - offset)]
            signal[offset : offset + tone.size] += tone
    reference = np.clip(signal, -32768, 32767).astype(np.int16)
    reference.flags.writeable = False
    return PreparedClip(reference=reference, packets=_encode(reference), start=start)


def _read_clip(path: Path, needed: int) -> Int16Array:
    """The first ``needed`` samples' worth of a PCM16 WAV, as 48 kHz mono int16."""
    try:
        with wave.open(str(path), "rb") as reader:
            if reader.getsampwidth() != 2:
                raise ScenarioError(f"audio file {path}: only 16-bit PCM WAV is supported")
            rate, channels = reader.getframerate(), reader.getnchannels()
            frames = min(reader.getnframes(), math.ceil(needed * rate / SCENARIO_RATE) + 64)
            raw = np.frombuffer(reader.readframes(frames), dtype="<i2")
    except (wave.Error, EOFError, OSError) as exc:
        raise ScenarioError(f"audio file {path} cannot be read: {exc}") from exc
    mono = raw.reshape(-1, channels).mean(axis=1, dtype=np.float32) if channels > 1 else raw.astype(np.float32)
    if rate != SCENARIO_RATE and mono.size:
        mono = soxr.resample(mono, rate, SCENARIO_RATE, quality="HQ")
    samples: Int16Array = np.clip(np.rint(mono), -32768, 32767).astype(np.int16)
    return samples


def _dtmf_tone(digit: str, count: int) -> npt.NDArray[np.int32]:
    row, column = _DTMF_FREQUENCIES[digit]
    t = np.arange(count) / SCENARIO_RATE
    amplitude = 32767.0 * 10.0 ** (DTMF_LEVEL_DBFS / 20.0)
    tone = np.sin(2 * np.pi * row * t) + np.sin(2 * np.pi * column * t)
    result: npt.NDArray[np.int32] = np.rint(amplitude * tone).astype(np.int32)
    return result


def _new_encoder() -> AudioCodecContext:
    codec = CodecContext.create("libopus", "w")
    assert isinstance(codec, AudioCodecContext)
    codec.sample_rate = SCENARIO_RATE
    codec.layout = "mono"
    codec.format = "s16"
    codec.bit_rate = OPUS_BITRATE
    codec.time_base = TIME_BASE
    codec.options = {"application": "voip"}
    return codec


@functools.cache
def _encoder_delay() -> int:
    """libopus's look-ahead in samples: its first packet's pts is this far before the first input sample."""
    codec = _new_encoder()
    packets = codec.encode(_frame(np.zeros(PACKET_SAMPLES, np.int16), 0)) + codec.encode(None)
    return max(0, -int(packets[0].pts or 0))


def _frame(chunk: Int16Array, pts: int) -> AudioFrame:
    frame = AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = SCENARIO_RATE
    frame.time_base = TIME_BASE
    frame.pts = pts
    return frame


def _encode(signal: Int16Array) -> tuple[bytes, ...]:
    """Whole 20 ms packets of ``signal`` (a multiple of 960 samples), packet ``k`` decoding to its ``k``-th frame."""
    count = signal.size // PACKET_SAMPLES
    # Feed the signal early by the look-ahead, so that packet k decodes to signal[k*960:(k+1)*960].
    shifted = signal[_encoder_delay() :]
    codec = _new_encoder()
    packets = []
    for offset in range(0, shifted.size, PACKET_SAMPLES):
        packets.extend(codec.encode(_frame(shifted[offset : offset + PACKET_SAMPLES], offset)))
    packets.extend(codec.encode(None))
    encoded = tuple(bytes(packet) for packet in packets[:count])
    if len(encoded) != count:
        raise ScenarioError(f"the Opus encoder returned {len(encoded)} packets for {count} frames")
    return encoded


def _network_schedule(
    count: int, network: NetworkSpec, rng: np.random.Generator
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Kept packet indices, and when each is released (s after the presence start): due + jitter, in order."""
    lost = rng.random(count) < network.loss
    delay = rng.random(count) * (network.jitter_ms / 1000.0)
    release = np.maximum.accumulate(np.arange(count) * PACKET_S + delay)
    kept = np.flatnonzero(~lost).astype(np.int64)
    release = release[kept]
    kept.flags.writeable = release.flags.writeable = False  # shared by every run of the prepared scenario
    return kept, release


def _mix(participants: Sequence[PreparedParticipant], duration: float) -> PreparedMix:
    length = -(-_samples(duration) // PACKET_SAMPLES) * PACKET_SAMPLES
    total = np.zeros(length, np.int32)
    for participant in participants:
        start = participant.first_pts
        part = participant.reference[: max(0, length - start)]
        total[start : start + part.size] += part
    reference = np.clip(total, -32768, 32767).astype(np.int16)
    reference.flags.writeable = False
    return PreparedMix(reference=reference, packets=_encode(reference))
