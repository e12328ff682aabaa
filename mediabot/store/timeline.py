"""The speech timeline of a call folder: who spoke when, DTMF tones, presence and the bot's prompts, as data or a PNG.

:func:`timeline_lanes` reads ``call.json``, ``segments.jsonl`` and ``events.jsonl`` into a :class:`TimelineData`
(one :class:`Lane` per participant, times in call-timeline seconds; ``to_json()`` for a web console);
:func:`draw_timeline` draws it (matplotlib's Agg canvas on a private :class:`~matplotlib.figure.Figure`, no pyplot,
so it is safe in a worker thread) into a :class:`TimelineImage` that also tells where each lane and bar landed in
pixels; :func:`render_timeline` does both and writes ``timeline.png`` atomically, 0600.

Partial folders (a killed process) still draw: missing JSON-lines files are empty, torn or malformed lines and unknown
keys are skipped. Only a folder without a readable ``call.json`` is refused (:class:`UnknownCallError`).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text
from matplotlib.ticker import FuncFormatter, MultipleLocator
from matplotlib.transforms import offset_copy

from mediabot.store.index import UnknownCallError
from mediabot.store.layout import MIXED_NAME, WavFormatError, read_jsonl, wav_info, write_bytes_atomic

__all__ = [
    "PROMPTS_KEY",
    "TIMELINE_FILE",
    "Lane",
    "PixelBox",
    "PromptSpan",
    "Span",
    "TimelineData",
    "TimelineImage",
    "ToneMark",
    "draw_timeline",
    "render_timeline",
    "timeline_lanes",
]

TIMELINE_FILE = "timeline.png"
# The key of the bot-prompts lane in TimelineImage; participant lanes are keyed by participant id or "source:<id>".
PROMPTS_KEY = ":prompts"
PROMPTS_LABEL = "bot prompts"
PROMPTS_COLOR = "#4a5568"
# tab10 without its grey (kept for the bot), then the light tab20 shades: 18 distinct participant colours.
_PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#dbdb8d",
    "#9edae5",
)
_SOURCE_PREFIX = "source:"

# Picture geometry in pixels (the figure is drawn at 100 dpi, so 1 inch = 100 px).
_DPI = 100
_WIDTH_PX = 1200
_LANE_PX = 58
_TOP_PX = 66
_BOTTOM_PX = 60
_LEFT_PX = 240
_RIGHT_PX = 30
# In lane units (a lane is 1.0 tall): the speech bar and the presence band around the lane's centre line.
_BAR_HALF = 0.2
_BAND_HALF = 0.44
_LABEL_OFFSET_PX = 26
_TONE_GROUP_PX = 12.0
_TICK_STEPS = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
_TEXT = "#1a1a1a"
_MUTED = "#6b7280"


# -- the data --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Span:
    """A stretch of the call timeline, in seconds."""

    start: float
    end: float

    def to_json(self) -> dict[str, float]:
        """``{"start", "end"}`` rounded to the millisecond."""
        return {"start": round(self.start, 3), "end": round(self.end, 3)}


@dataclass(frozen=True, slots=True)
class ToneMark:
    """One DTMF digit heard from a participant, in call-timeline seconds."""

    digit: str
    start: float
    end: float

    def to_json(self) -> dict[str, Any]:
        """``{"digit", "start", "end"}``."""
        return {"digit": self.digit, "start": round(self.start, 3), "end": round(self.end, 3)}


@dataclass(frozen=True, slots=True)
class PromptSpan:
    """One prompt the bot played, from ``prompt_started`` to ``prompt_finished`` (or its length, if cut short)."""

    source: str | None
    start: float
    end: float

    def to_json(self) -> dict[str, Any]:
        """``{"source", "start", "end"}``."""
        return {"source": self.source, "start": round(self.start, 3), "end": round(self.end, 3)}


@dataclass(frozen=True, slots=True)
class Lane:
    """One participant's row: speech segments, DTMF tones and the spans they were in the call.

    ``key`` is the participant id, or ``"source:<id>"`` for a media source no participant was known for.
    """

    key: str
    label: str
    participant_id: str | None
    source_ids: tuple[str, ...]
    color: str
    segments: tuple[Span, ...] = ()
    tones: tuple[ToneMark, ...] = ()
    presence: tuple[Span, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The lane as plain JSON types."""
        return {
            "key": self.key,
            "label": self.label,
            "participant_id": self.participant_id,
            "source_ids": list(self.source_ids),
            "color": self.color,
            "segments": [span.to_json() for span in self.segments],
            "tones": [tone.to_json() for tone in self.tones],
            "presence": [span.to_json() for span in self.presence],
        }


@dataclass(frozen=True, slots=True)
class TimelineData:
    """Everything the timeline picture shows, in call-timeline seconds (0 .. ``duration``)."""

    call_id: str
    duration: float
    lanes: tuple[Lane, ...]
    prompts: tuple[PromptSpan, ...] = ()

    def lane(self, key: str) -> Lane:
        """The lane keyed ``key`` (participant id or ``"source:<id>"``); :class:`KeyError` if there is none."""
        for lane in self.lanes:
            if lane.key == key:
                return lane
        raise KeyError(key)

    def to_json(self) -> dict[str, Any]:
        """The timeline as plain JSON types (what a web console draws from)."""
        return {
            "call_id": self.call_id,
            "duration": round(self.duration, 3),
            "lanes": [lane.to_json() for lane in self.lanes],
            "prompts": [prompt.to_json() for prompt in self.prompts],
        }


@dataclass
class _LaneBuilder:
    key: str
    label: str
    participant_id: str | None
    source_ids: list[str] = field(default_factory=list)
    segments: list[Span] = field(default_factory=list)
    tones: list[ToneMark] = field(default_factory=list)
    presence: list[Span] = field(default_factory=list)
    joined_at: float | None = None


class _Lanes:
    """Lanes in order of first mention, found by participant id or by source id."""

    def __init__(self) -> None:
        self.ordered: list[_LaneBuilder] = []
        self._by_key: dict[str, _LaneBuilder] = {}
        self._by_source: dict[str, _LaneBuilder] = {}

    def add_participant(self, participant_id: str, display_name: str | None, source_ids: Iterable[str]) -> None:
        lane = self._by_key.get(participant_id)
        if lane is None:
            lane = _LaneBuilder(participant_id, display_name or participant_id, participant_id)
            self._by_key[participant_id] = lane
            self.ordered.append(lane)
        for source_id in source_ids:
            if source_id not in lane.source_ids:
                lane.source_ids.append(source_id)
            self._by_source.setdefault(source_id, lane)

    def find(self, participant_id: str | None, source_id: str | None, display_name: str | None) -> _LaneBuilder | None:
        """The lane of a record: its participant, else the participant its source belongs to, else the source's own."""
        if participant_id is not None:
            lane = self._by_key.get(participant_id)
            if lane is None:
                self.add_participant(participant_id, display_name, [source_id] if source_id is not None else [])
                return self._by_key[participant_id]
            if display_name and lane.label == participant_id:  # call.json had no name for them
                lane.label = display_name
            return lane
        if source_id is None:
            return None
        lane = self._by_source.get(source_id)
        if lane is None:
            key = _SOURCE_PREFIX + source_id
            lane = _LaneBuilder(key, display_name or f"source {source_id}", None, [source_id])
            self._by_key[key] = lane
            self._by_source[source_id] = lane
            self.ordered.append(lane)
        return lane


def timeline_lanes(call_dir: Path) -> TimelineData:
    """Read a call folder into lanes: participants in ``call.json`` order, then any only seen in segments or events.

    Times are call-timeline seconds, negative ones clamped to 0. The duration is the recording's length
    (``recording.files.seconds``, else the samples of ``audio/mixed.wav``: a call cut short), else the latest time
    seen. :class:`UnknownCallError` if ``call.json`` is
    missing or is not a JSON object.
    """
    call_dir = Path(call_dir)
    meta = _read_call_json(call_dir / "call.json")
    segments = read_jsonl(call_dir / "segments.jsonl")
    events = read_jsonl(call_dir / "events.jsonl")

    lanes = _Lanes()
    participants = meta.get("participants")
    for item in participants if isinstance(participants, list) else []:
        if isinstance(item, dict) and _text(item.get("id")) is not None:
            sources = item.get("source_ids")
            source_ids = [str(s) for s in sources if s is not None] if isinstance(sources, list) else []
            lanes.add_participant(str(item["id"]), _text(item.get("display_name")), source_ids)

    latest = 0.0
    for record in segments:
        start, end = _seconds(record.get("start")), _seconds(record.get("end"))
        if start is None or end is None or end < start:
            continue
        lane = lanes.find(
            _text(record.get("participant_id")), _text(record.get("source_id")), _text(record.get("display_name"))
        )
        if lane is not None:
            lane.segments.append(Span(start, end))
            latest = max(latest, end)

    prompts: list[PromptSpan] = []
    playing: list[tuple[str | None, float, float | None]] = []  # source, start, announced length
    for event in events:
        kind = event.get("type")
        t = _seconds(event.get("t"))
        when = 0.0 if t is None else t  # no time: written before any media arrived
        latest = max(latest, when)
        if kind == "tone":
            tone = _add_tone(lanes, event, when)
            latest = max(latest, tone.end if tone is not None else 0.0)
        elif kind in ("participant_joined", "participant_left"):
            _add_presence(lanes, event, kind == "participant_joined", when)
        elif kind == "prompt_started":
            playing.append((_text(event.get("source")), when, _seconds(event.get("duration_s"))))
        elif kind == "prompt_finished" and playing:
            source, start, _length = playing.pop(0)
            prompts.append(PromptSpan(source, start, max(start, when)))
    for _source, start, length in playing:  # never finished: the process died, or the call ended mid-prompt
        latest = max(latest, start + (length or 0.0))

    duration = _recording_seconds(meta)
    if duration is None:
        duration = _mixed_seconds(call_dir)
    if duration is None:
        duration = latest
    for source, start, length in playing:
        prompts.append(PromptSpan(source, start, start + length if length is not None else max(start, duration)))
    built: list[Lane] = []
    for index, lane in enumerate(lanes.ordered):
        presence = list(lane.presence)
        if lane.joined_at is not None:  # still in the call when the files end
            presence.append(Span(lane.joined_at, max(duration, lane.joined_at)))
        built.append(
            Lane(
                key=lane.key,
                label=lane.label,
                participant_id=lane.participant_id,
                source_ids=tuple(lane.source_ids),
                color=_PALETTE[index % len(_PALETTE)],
                segments=tuple(sorted(lane.segments, key=lambda s: (s.start, s.end))),
                tones=tuple(sorted(lane.tones, key=lambda tone: tone.start)),
                presence=tuple(presence),
            )
        )
    call_id = _text(meta.get("call_id")) or call_dir.name
    return TimelineData(call_id, duration, tuple(built), tuple(sorted(prompts, key=lambda p: p.start)))


def _add_tone(lanes: _Lanes, event: dict[str, Any], when: float) -> ToneMark | None:
    digit = _text(event.get("digit"))
    lane = lanes.find(_text(event.get("participant_id")), _text(event.get("source_id")), None)
    if digit is None or lane is None:
        return None
    start = _seconds(event.get("start"))
    end = _seconds(event.get("end"))
    start = when if start is None else start
    tone = ToneMark(digit, start, max(start, end if end is not None else start))
    lane.tones.append(tone)
    return tone


def _add_presence(lanes: _Lanes, event: dict[str, Any], joined: bool, when: float) -> None:
    participant_id = _text(event.get("participant_id"))
    if participant_id is None:
        return
    lane = lanes.find(participant_id, None, _text(event.get("display_name")))
    if lane is None:
        return
    if joined:
        if lane.joined_at is None:
            lane.joined_at = when
    else:
        # A leave without a join: the join happened before the events were written; count from the start.
        start = lane.joined_at if lane.joined_at is not None else 0.0
        lane.presence.append(Span(start, max(start, when)))
        lane.joined_at = None


def _read_call_json(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text("utf-8"))
    except FileNotFoundError as exc:
        raise UnknownCallError(f"{path.parent} is not a call folder: it has no call.json") from exc
    except ValueError as exc:
        raise UnknownCallError(f"{path} cannot be read: {exc}") from exc
    if not isinstance(meta, dict):
        raise UnknownCallError(f"{path} is not a JSON object")
    return meta


def _recording_seconds(meta: dict[str, Any]) -> float | None:
    recording = meta.get("recording")
    files = recording.get("files") if isinstance(recording, dict) else None
    return _seconds(files.get("seconds")) if isinstance(files, dict) else None


def _mixed_seconds(call_dir: Path) -> float | None:
    try:
        return wav_info(call_dir / "audio" / f"{MIXED_NAME}.wav").seconds
    except (OSError, WavFormatError):
        return None


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return max(0.0, float(value))


def _text(value: object) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value)
    return text or None


# -- the picture -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PixelBox:
    """A rectangle in image pixels: x to the right and y down from the image's top-left corner."""

    left: float
    top: float
    right: float
    bottom: float

    def center(self) -> tuple[int, int]:
        """The pixel (x, y) at the middle of the box."""
        return round((self.left + self.right) / 2), round((self.top + self.bottom) / 2)


@dataclass(frozen=True, slots=True)
class TimelineImage:
    """A drawn timeline: the PNG and where its lanes and bars are, in pixels of that PNG.

    ``lanes`` maps each lane key (:data:`PROMPTS_KEY` for the bot's prompts) to the box of its bar row across the
    whole plot (x from 0 to the duration); ``bars`` maps it to the boxes of its speech (or prompt) bars, in the
    order of the data.
    """

    png: bytes
    width: int
    height: int
    plot: PixelBox
    duration: float
    lanes: dict[str, PixelBox]
    bars: dict[str, tuple[PixelBox, ...]]

    def pixel(self, key: str, seconds: float) -> tuple[int, int]:
        """The pixel (x, y) on the centre line of lane ``key`` at ``seconds`` on the call timeline."""
        box = self.lanes[key]
        x = self.plot.left + (self.plot.right - self.plot.left) * seconds / _axis_end(self.duration)
        return round(x), round((box.top + box.bottom) / 2)


def draw_timeline(data: TimelineData) -> TimelineImage:
    """Draw ``data`` as a PNG about 1200 px wide (taller with more lanes); the same data gives the same bytes."""
    rows = len(data.lanes) + 1
    height = _TOP_PX + rows * _LANE_PX + _BOTTOM_PX
    figure = Figure(figsize=(_WIDTH_PX / _DPI, height / _DPI), dpi=_DPI, facecolor="white")
    canvas = FigureCanvasAgg(figure)
    ax = figure.add_axes(
        (
            _LEFT_PX / _WIDTH_PX,
            _BOTTOM_PX / height,
            (_WIDTH_PX - _LEFT_PX - _RIGHT_PX) / _WIDTH_PX,
            rows * _LANE_PX / height,
        )
    )
    end = _axis_end(data.duration)
    _style_axes(ax, rows, end)

    # Row 0 is the bot, then one row per lane; the y axis is inverted so row 0 is on top.
    _draw_label(ax, 0, PROMPTS_LABEL, PROMPTS_COLOR, italic=True)
    _draw_prompts(ax, data.prompts, end)
    for row, lane in enumerate(data.lanes, start=1):
        _draw_label(ax, row, lane.label, lane.color, italic=False)
        _draw_lane(ax, row, lane, end)

    figure.text(
        _LEFT_PX / _WIDTH_PX,
        1 - 24 / height,
        f"Call {data.call_id[:8]}  ·  {_format_duration(data.duration)}",
        fontsize=17,
        fontweight="bold",
        color=_TEXT,
        va="center",
        ha="left",
        parse_math=False,
    )
    figure.legend(
        handles=_legend_handles(),
        loc="center right",
        bbox_to_anchor=(1 - _RIGHT_PX / _WIDTH_PX, 1 - 24 / height),
        ncols=4,
        frameon=False,
        fontsize=11,
        handlelength=1.6,
        columnspacing=1.4,
    )

    buffer = io.BytesIO()
    # print_png, not savefig: the savefig.* rcParams (bbox, dpi, facecolor) must not move the pixels from the boxes.
    canvas.print_png(buffer, metadata={"Software": None})  # type: ignore[no-untyped-call]
    return TimelineImage(
        png=buffer.getvalue(),
        width=_WIDTH_PX,
        height=height,
        plot=_pixel_box(ax, 0.0, end, -0.5, rows - 0.5, height),
        duration=data.duration,
        lanes=_lane_boxes(ax, data, end, height),
        bars=_bar_boxes(ax, data, height),
    )


def render_timeline(call_dir: Path, out: Path | None = None) -> Path:
    """Draw the call folder's timeline into ``out`` (default ``call_dir/timeline.png``), atomically and 0600."""
    call_dir = Path(call_dir)
    image = draw_timeline(timeline_lanes(call_dir))
    target = Path(out) if out is not None else call_dir / TIMELINE_FILE
    write_bytes_atomic(target, image.png)
    return target


def _style_axes(ax: Axes, rows: int, end: float) -> None:
    ax.set_xlim(0.0, end)
    ax.set_ylim(rows - 0.5, -0.5)
    ax.set_yticks([])
    ax.set_axisbelow(True)
    ax.grid(axis="x", color="#e5e7eb", linewidth=0.8)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    ax.spines["bottom"].set_color("#9ca3af")
    ax.tick_params(axis="x", labelsize=11, colors=_TEXT, length=4)
    ax.xaxis.set_major_locator(MultipleLocator(_tick_step(end)))
    ax.xaxis.set_major_formatter(FuncFormatter(partial(_tick_label, end >= 60)))
    ax.set_xlabel("time in call (m:ss)" if end >= 60 else "time in call (s)", fontsize=11, color=_MUTED)
    for boundary in range(rows - 1):
        ax.axhline(boundary + 0.5, color="#e5e7eb", linewidth=0.8, zorder=0.6)


def _draw_label(ax: Axes, row: int, label: str, color: str, *, italic: bool) -> None:
    transform = ax.get_yaxis_transform()  # x in axes fractions, y in data
    ax.plot([0.0], [row], transform=offset_copy(transform, x=-14, units="dots"), marker="s", ms=10,
            color=color, clip_on=False, linestyle="none")  # fmt: skip
    text = ax.text(
        0.0,
        row,
        label,
        transform=offset_copy(transform, x=-_LABEL_OFFSET_PX, units="dots"),
        ha="right",
        va="center",
        fontsize=12,
        color=_MUTED if italic else _TEXT,
        fontstyle="italic" if italic else "normal",
        parse_math=False,
    )
    _fit_width(text, label, _LEFT_PX - _LABEL_OFFSET_PX - 8)


def _draw_prompts(ax: Axes, prompts: Sequence[PromptSpan], end: float) -> None:
    if not prompts:
        ax.text(0.01, 0, "none played", transform=ax.get_yaxis_transform(), ha="left", va="center", fontsize=10,
                fontstyle="italic", color=_MUTED)  # fmt: skip
        return
    ax.broken_barh(
        [(p.start, p.end - p.start) for p in prompts],
        (-_BAR_HALF, 2 * _BAR_HALF),
        facecolors=PROMPTS_COLOR,
        edgecolors="none",
        zorder=2,
    )
    px_per_s = _plot_width_px() / end
    for prompt in prompts:
        name = Path(prompt.source).name if prompt.source else ""
        # DejaVu Sans at 9 pt is under 7 px a character here: write the name only where it fits.
        if name and (prompt.end - prompt.start) * px_per_s > 7 * len(name) + 14:
            ax.text(
                (prompt.start + prompt.end) / 2,
                0,
                name,
                ha="center",
                va="center",
                fontsize=9,
                color="white",
                zorder=3,
                parse_math=False,
            )


def _draw_lane(ax: Axes, row: int, lane: Lane, end: float) -> None:
    if lane.presence:
        ax.broken_barh(
            [(span.start, span.end - span.start) for span in lane.presence],
            (row - _BAND_HALF, 2 * _BAND_HALF),
            facecolors=to_rgba(lane.color, 0.12),
            edgecolors=to_rgba(lane.color, 0.45),
            linewidth=0.8,
            zorder=1,
        )
    if lane.segments:
        ax.broken_barh(
            [(span.start, span.end - span.start) for span in lane.segments],
            (row - _BAR_HALF, 2 * _BAR_HALF),
            facecolors=lane.color,
            edgecolors="none",
            zorder=2,
        )
    if not lane.tones:
        return
    centers = [(tone.start + tone.end) / 2 for tone in lane.tones]
    ax.plot(centers, [row] * len(centers), linestyle="none", marker="D", ms=7, color=_TEXT,
            markeredgecolor="white", markeredgewidth=1.0, zorder=4)  # fmt: skip
    # Tones closer than a digit's width share one label ("1234#") over the middle of the group.
    px_per_s = _plot_width_px() / end
    groups: list[list[int]] = []
    for index, center in enumerate(centers):
        if groups and (center - centers[groups[-1][-1]]) * px_per_s < _TONE_GROUP_PX:
            groups[-1].append(index)
        else:
            groups.append([index])
    for group in groups:
        ax.text(
            (centers[group[0]] + centers[group[-1]]) / 2,
            row - _BAR_HALF - 0.03,
            "".join(lane.tones[i].digit for i in group),
            ha="center",
            va="bottom",
            fontsize=10,
            fontweight="bold",
            color=_TEXT,
            zorder=5,
            parse_math=False,
        )


def _legend_handles() -> list[Artist]:
    return [
        Patch(facecolor="#6b7280", edgecolor="none", label="speech"),
        Patch(facecolor=to_rgba("#6b7280", 0.12), edgecolor=to_rgba("#6b7280", 0.45), label="in the call"),
        Line2D([], [], linestyle="none", marker="D", ms=7, color=_TEXT, markeredgecolor="white", label="DTMF tone"),
        Patch(facecolor=PROMPTS_COLOR, edgecolor="none", label="bot prompt"),
    ]


def _lane_boxes(ax: Axes, data: TimelineData, end: float, height: int) -> dict[str, PixelBox]:
    boxes = {PROMPTS_KEY: _pixel_box(ax, 0.0, end, -_BAR_HALF, _BAR_HALF, height)}
    for row, lane in enumerate(data.lanes, start=1):
        boxes[lane.key] = _pixel_box(ax, 0.0, end, row - _BAR_HALF, row + _BAR_HALF, height)
    return boxes


def _bar_boxes(ax: Axes, data: TimelineData, height: int) -> dict[str, tuple[PixelBox, ...]]:
    bars = {PROMPTS_KEY: tuple(_pixel_box(ax, p.start, p.end, -_BAR_HALF, _BAR_HALF, height) for p in data.prompts)}
    for row, lane in enumerate(data.lanes, start=1):
        bars[lane.key] = tuple(
            _pixel_box(ax, s.start, s.end, row - _BAR_HALF, row + _BAR_HALF, height) for s in lane.segments
        )
    return bars


def _pixel_box(ax: Axes, x0: float, x1: float, y0: float, y1: float, height: int) -> PixelBox:
    # Display coordinates have their origin at the bottom left; image rows count from the top.
    (left, low), (right, high) = ax.transData.transform([(x0, y1), (x1, y0)])
    return PixelBox(float(left), height - float(high), float(right), height - float(low))


def _plot_width_px() -> float:
    return float(_WIDTH_PX - _LEFT_PX - _RIGHT_PX)


def _axis_end(duration: float) -> float:
    return duration if duration > 0 else 1.0


def _tick_step(end: float) -> float:
    """The smallest round step (seconds, or whole minutes past one) that puts at most 10 ticks on the axis."""
    return next((step for step in _TICK_STEPS if end / step <= 10), _TICK_STEPS[-1] * math.ceil(end / 36000))


def _tick_label(minutes: bool, seconds: float, _position: object) -> str:
    if minutes:
        whole_minutes, rest = divmod(round(seconds), 60)
        return f"{whole_minutes}:{rest:02d}"
    return f"{seconds:g}"


def _format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _fit_width(text: Text, label: str, width_px: float) -> None:
    """Cut ``label`` (with an ellipsis) to the longest start that fits ``width_px`` once drawn."""
    if text.get_window_extent().width <= width_px:
        return
    fits, too_long = 0, len(label)
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        text.set_text(label[:middle].rstrip() + "…")
        if text.get_window_extent().width <= width_px:
            fits = middle
        else:
            too_long = middle
    text.set_text(label[:fits].rstrip() + "…")
