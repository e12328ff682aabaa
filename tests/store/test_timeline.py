"""The speech timeline: lanes read from hand-written call folders, and the PNG checked pixel by pixel."""

from __future__ import annotations

import io
import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from mediabot._errors import MediaBotError
from mediabot.store import layout
from mediabot.store.index import UnknownCallError
from mediabot.store.layout import wav_header
from mediabot.store.timeline import (
    PROMPTS_COLOR,
    PROMPTS_KEY,
    TIMELINE_FILE,
    PromptSpan,
    Span,
    TimelineData,
    TimelineImage,
    ToneMark,
    draw_timeline,
    render_timeline,
    timeline_lanes,
)

ADELE = "p-adele"
ALEX = "p-alex"
MEGAN = "p-megan"
LATE = "p-late"  # only in segments.jsonl, not in call.json


def jsonl(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def segment(source: str, who: str | None, name: str | None, start: float, end: float, **extra: Any) -> dict[str, Any]:
    return {
        "source_id": source,
        "participant_id": who,
        "display_name": name,
        "start": start,
        "end": end,
        "duration": round(end - start, 3),
        "reason": "silence",
        **extra,
    }


def tone(t: float, digit: str, source: str, who: str | None, start: float, end: float) -> dict[str, Any]:
    event = {"t": t, "type": "tone", "digit": digit, "source_id": source, "participant_id": who}
    return {**event, "start": start, "end": end}


def write_call(
    folder: Path,
    *,
    participants: list[dict[str, Any]],
    segments: list[dict[str, Any]] | None = None,
    events: list[dict[str, Any]] | None = None,
    seconds: float | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"call_id": folder.name, "complete": True, "participants": participants}
    if seconds is not None:
        files = {"samples": round(seconds * 16000), "seconds": seconds}
        meta["recording"] = {"segments": len(segments or []), "files": files}
    (folder / "call.json").write_text(json.dumps(meta))
    if segments is not None:
        (folder / "segments.jsonl").write_text(jsonl(segments))
    if events is not None:
        (folder / "events.jsonl").write_text(jsonl(events))
    return folder


@pytest.fixture
def call(tmp_path: Path) -> Path:
    """A 20 s call: three participants (Megan with no name in call.json), one stranger and one unknown source."""
    return write_call(
        tmp_path / "4f1c2a9e-0000-4000-8000-000000000001",
        participants=[
            {"id": ADELE, "display_name": "Adele Vance", "source_ids": ["4"], "file": f"audio/{ADELE}.wav"},
            {"id": ALEX, "display_name": "Alex Wilber", "source_ids": ["5"], "file": f"audio/{ALEX}.wav"},
            {"id": MEGAN, "display_name": None, "source_ids": ["6"], "file": None},
        ],
        segments=[
            segment("5", ALEX, "Alex Wilber", 6.0, 9.0, latency_ms=120.5),
            segment("4", ADELE, "Adele Vance", 1.0, 4.0),
            segment("4", None, None, 12.0, 13.5),  # released after the roster went away: found by its source
            segment("7", None, None, 10.0, 11.0),  # a source no participant ever claimed
            segment("9", LATE, "Late Larry", 15.0, 16.0),
            segment("4", ADELE, "Adele Vance", 5.0, 4.0),  # end before start: not a segment
        ],
        events=[
            {"t": -0.12, "type": "participant_joined", "participant_id": ADELE, "display_name": "Adele Vance"},
            {"t": -0.12, "type": "participant_joined", "participant_id": ALEX, "display_name": "Alex Wilber"},
            {"t": 0.5, "type": "prompt_started", "source": "prompts/welcome.wav", "duration_s": 2.0},
            {"t": 2.6, "type": "prompt_finished", "source": "prompts/welcome.wav"},
            {"t": 3.0, "type": "participant_joined", "participant_id": MEGAN, "display_name": "Megan Bowen"},
            tone(11.2, "1", "5", ALEX, 11.0, 11.08),
            tone(11.4, "#", "5", None, 11.2, 11.28),
            {"t": 14.0, "type": "participant_left", "participant_id": MEGAN, "display_name": "Megan Bowen"},
            {"t": 17.0, "type": "participant_left", "participant_id": ADELE, "display_name": "Adele Vance"},
            {"t": 18.0, "type": "prompt_started", "source": "prompts/bye.wav", "duration_s": 1.5},
            {"t": 19.9, "type": "state", "state": "terminated"},
        ],
        seconds=20.0,
    )  # fmt: skip


def rgb(hex_color: str) -> tuple[int, int, int]:
    red, green, blue = to_rgb(hex_color)
    return round(red * 255), round(green * 255), round(blue * 255)


def close_to(pixel: tuple[int, ...], color: tuple[int, int, int], tolerance: int = 2) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], color, strict=True))


def pixels(image: TimelineImage) -> Image.Image:
    with Image.open(io.BytesIO(image.png)) as opened:
        return opened.convert("RGB")


# -- the data --------------------------------------------------------------------------------------------------------


def test_lanes_follow_call_json_then_strangers_in_order_of_appearance(call: Path) -> None:
    data = timeline_lanes(call)
    assert data.call_id == call.name
    assert data.duration == 20.0
    assert [lane.key for lane in data.lanes] == [ADELE, ALEX, MEGAN, "source:7", LATE]
    # Megan's name comes from the events when call.json has none; a bare source is "source 7".
    labels = ["Adele Vance", "Alex Wilber", "Megan Bowen", "source 7", "Late Larry"]
    assert [lane.label for lane in data.lanes] == labels
    assert data.lane(LATE).source_ids == ("9",)
    assert len({lane.color for lane in data.lanes}) == len(data.lanes)
    with pytest.raises(KeyError):
        data.lane("nobody")


def test_segments_tones_presence_and_prompts(call: Path) -> None:
    data = timeline_lanes(call)
    # Sorted; the null-participant segment of source 4 is Adele's; the inverted one is dropped.
    assert data.lane(ADELE).segments == (Span(1.0, 4.0), Span(12.0, 13.5))
    assert data.lane(ALEX).segments == (Span(6.0, 9.0),)
    assert data.lane("source:7").segments == (Span(10.0, 11.0),)
    assert data.lane(MEGAN).segments == ()
    # The "#" has no participant id but came from Alex's source.
    assert data.lane(ALEX).tones == (ToneMark("1", 11.0, 11.08), ToneMark("#", 11.2, 11.28))
    # Joined before the first media (clamped to 0) and left; joined and left; joined and never left (to the end).
    assert data.lane(ADELE).presence == (Span(0.0, 17.0),)
    assert data.lane(MEGAN).presence == (Span(3.0, 14.0),)
    assert data.lane(ALEX).presence == (Span(0.0, 20.0),)
    assert data.lane(LATE).presence == ()
    # The second prompt never finished: its announced length stands in.
    assert data.prompts == (
        PromptSpan("prompts/welcome.wav", 0.5, 2.6),
        PromptSpan("prompts/bye.wav", 18.0, 19.5),
    )


def test_to_json_is_plain_json(call: Path) -> None:
    data = timeline_lanes(call).to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["duration"] == 20.0
    alex = data["lanes"][1]
    assert alex["label"] == "Alex Wilber"
    assert alex["source_ids"] == ["5"]
    assert alex["segments"] == [{"start": 6.0, "end": 9.0}]
    assert alex["tones"][1] == {"digit": "#", "start": 11.2, "end": 11.28}
    assert data["prompts"][0] == {"source": "prompts/welcome.wav", "start": 0.5, "end": 2.6}


@pytest.mark.parametrize("riff_limit", [layout.RIFF_LIMIT, 1000], ids=["riff", "rf64"])
def test_duration_of_a_call_cut_short_is_its_mix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, riff_limit: int
) -> None:
    # No recording summary (the process died, recovery repaired the files): the mix says how long the call is.
    monkeypatch.setattr(layout, "RIFF_LIMIT", riff_limit)
    folder = write_call(
        tmp_path / "c",
        participants=[{"id": ADELE, "display_name": "Adele Vance", "source_ids": ["4"]}],
        segments=[segment("4", ADELE, "Adele Vance", 2.0, 6.5)],
    )
    samples = 8 * 16000 + 3
    (folder / "audio").mkdir()
    (folder / "audio" / "mixed.wav").write_bytes(wav_header(2 * samples) + bytes(2 * samples))
    data = timeline_lanes(folder)
    assert data.duration == samples / 16000
    assert data.lane(ADELE).segments == (Span(2.0, 6.5),)


def test_duration_without_recording_is_the_latest_time_seen(tmp_path: Path) -> None:
    folder = write_call(
        tmp_path / "c",
        participants=[{"id": ADELE, "display_name": "Adele Vance", "source_ids": ["4"]}],
        segments=[segment("4", ADELE, "Adele Vance", 2.0, 6.5)],
        events=[
            {"t": None, "type": "participant_joined", "participant_id": ADELE, "display_name": "Adele Vance"},
            {"t": 7.25, "type": "prompt_started", "source": "x.wav"},  # no length, never finished
        ],
    )
    data = timeline_lanes(folder)
    assert data.duration == 7.25
    assert data.lane(ADELE).presence == (Span(0.0, 7.25),)
    assert data.prompts == (PromptSpan("x.wav", 7.25, 7.25),)
    assert data.call_id == "c"


def test_torn_last_lines_and_missing_files_are_tolerated(tmp_path: Path) -> None:
    folder = write_call(
        tmp_path / "torn",
        participants=[{"id": ADELE, "display_name": "Adele Vance", "source_ids": ["4"]}],
        seconds=10.0,
    )
    whole = jsonl([segment("4", ADELE, "Adele Vance", 1.0, 2.0), segment("4", ADELE, "Adele Vance", 3.0, 4.0)])
    (folder / "segments.jsonl").write_text(whole + '{"source_id": "4", "participant_id": "p-ad')
    (folder / "events.jsonl").write_text('[1, 2]\nnot json\n{"t": 1.5, "type": "tone", "digit": "5", "partic')
    data = timeline_lanes(folder)
    assert data.lane(ADELE).segments == (Span(1.0, 2.0), Span(3.0, 4.0))
    assert data.lane(ADELE).tones == ()

    (folder / "events.jsonl").unlink()
    (folder / "segments.jsonl").unlink()
    data = timeline_lanes(folder)
    assert [lane.key for lane in data.lanes] == [ADELE]
    assert data.lane(ADELE).segments == ()
    assert render_timeline(folder).is_file()


def test_missing_call_json_raises(tmp_path: Path) -> None:
    folder = tmp_path / "no-call"
    folder.mkdir()
    (folder / "segments.jsonl").write_text(jsonl([segment("4", ADELE, "Adele Vance", 1.0, 2.0)]))
    with pytest.raises(UnknownCallError, match=r"no call\.json") as raised:
        timeline_lanes(folder)
    assert isinstance(raised.value, MediaBotError)
    with pytest.raises(UnknownCallError):
        render_timeline(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["segments.jsonl"]

    (folder / "call.json").write_text('{"call_id": "x", "participants": [')
    with pytest.raises(UnknownCallError, match="cannot be read"):
        timeline_lanes(folder)


# -- the picture -----------------------------------------------------------------------------------------------------


def test_render_writes_a_private_png_atomically(call: Path, open_umask: None) -> None:
    path = render_timeline(call)
    assert path == call / TIMELINE_FILE
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    assert not list(call.glob(".*.tmp"))
    image = draw_timeline(timeline_lanes(call))
    assert path.read_bytes() == image.png  # deterministic: the same data draws the same bytes
    with Image.open(path) as png:
        assert png.format == "PNG"
        assert png.size == (1200, image.height) == (image.width, image.height)

    out = call.parent / "pictures" / "nested" / "t.png"
    assert render_timeline(call, out) == out
    assert out.read_bytes() == image.png
    assert stat.S_IMODE(os.lstat(out).st_mode) == 0o600
    assert stat.S_IMODE(os.lstat(out.parent).st_mode) == 0o700


def test_height_grows_with_lanes(call: Path) -> None:
    data = timeline_lanes(call)
    fewer = TimelineData(data.call_id, data.duration, data.lanes[:2], data.prompts)
    tall, short = draw_timeline(data), draw_timeline(fewer)
    assert tall.width == short.width == 1200
    assert tall.height > short.height
    lane_px = (tall.height - short.height) / 3
    assert lane_px >= 40  # readable lanes, not squeezed


def test_bars_have_their_participants_colour(call: Path) -> None:
    data = timeline_lanes(call)
    image = draw_timeline(data)
    picture = pixels(image)
    for lane in data.lanes:
        color = rgb(lane.color)
        boxes = image.bars[lane.key]
        assert len(boxes) == len(lane.segments)
        for box, span in zip(boxes, lane.segments, strict=True):
            assert image.plot.left <= box.left < box.right <= image.plot.right
            assert close_to(picture.getpixel(box.center()), color), (lane.label, span)
        # Outside any of its segments the lane is not painted in its colour (presence tint or background).
        for seconds in (0.5, 5.0, 9.5, 19.0):
            if not any(span.start - 0.2 <= seconds <= span.end + 0.2 for span in lane.segments):
                assert not close_to(picture.getpixel(image.pixel(lane.key, seconds)), color, 20), (lane.label, seconds)
    # The prompts lane: the welcome prompt is a bar in the bot's colour (its name is written in the middle).
    welcome = image.bars[PROMPTS_KEY][0]
    assert close_to(picture.getpixel((round(welcome.left) + 3, welcome.center()[1])), rgb(PROMPTS_COLOR))
    assert not close_to(picture.getpixel(image.pixel(PROMPTS_KEY, 10.0)), rgb(PROMPTS_COLOR), 20)


def test_presence_band_and_tone_markers_are_drawn(call: Path) -> None:
    data = timeline_lanes(call)
    image = draw_timeline(data)
    picture = pixels(image)
    white = (255, 255, 255)
    # Megan was in the call from 3 s to 14 s: tinted inside (a light shade of her colour), white outside.
    inside = picture.getpixel(image.pixel(MEGAN, 8.0))
    assert not close_to(inside, white, 3)
    assert min(inside) > 180  # light: a tint, not a bar
    assert close_to(picture.getpixel(image.pixel(MEGAN, 16.5)), white, 3)
    # Alex's "1" tone marker is dark where the lane was otherwise only tinted.
    marker = picture.getpixel(image.pixel(ALEX, 11.04))
    assert max(marker) < 80
    assert min(picture.getpixel(image.pixel(ALEX, 16.5))) > 180


def test_example_call_renders(tmp_path: Path) -> None:
    """The folder a real sandbox call left (three participants, a late joiner who leaves, five DTMF digits)."""
    people = [
        ("d8335f20-8421-4e72-87a0-08f95cdd2676", "Adele Vance", "4"),
        ("9c536ba1-ab40-4eb1-a61e-e199db6b363f", "Alex Wilber", "5"),
        ("88a0dccd-2726-434a-9380-8e2bcf11fc23", "Megan Bowen", "6"),
    ]
    (adele, _, _), (alex, _, _), (megan, _, _) = people
    digits = [("1", 12.144, 12.002, 12.082), ("2", 12.339, 12.162, 12.242), ("3", 12.477, 12.322, 12.402),
              ("4", 12.615, 12.482, 12.542), ("#", 12.792, 12.642, 12.722)]  # fmt: skip
    folder = write_call(
        tmp_path / "8e3d8204-f5ff-4bb5-bfa3-248e64123087",
        participants=[{"id": i, "display_name": n, "source_ids": [s], "file": f"audio/{i}.wav"} for i, n, s in people],
        segments=[
            segment("4", adele, "Adele Vance", 0.0, 3.78),
            segment("5", alex, "Alex Wilber", 3.502, 7.142),
            segment("6", megan, "Megan Bowen", 7.5, 11.54),
            segment("5", alex, "Alex Wilber", 11.682, 13.142),
        ],
        events=[
            {"t": -0.152, "type": "source_connected", "source_id": "4", "codec": "audio/opus"},
            {"t": -0.069, "type": "state", "state": "established"},
            {"t": -0.056, "type": "participant_joined", "participant_id": adele, "display_name": "Adele Vance"},
            {"t": -0.056, "type": "participant_joined", "participant_id": alex, "display_name": "Alex Wilber"},
            {"t": 7.46, "type": "participant_joined", "participant_id": megan, "display_name": "Megan Bowen"},
            *(tone(t, d, "5", alex, s, e) for d, t, s, e in digits),
            {"t": 14.959, "type": "source_disconnected", "source_id": "6", "frames_in": 371, "gap_s": 0.0},
            {"t": 14.966, "type": "participant_left", "participant_id": megan, "display_name": "Megan Bowen"},
            {"t": 17.983, "type": "state", "state": "terminated", "code": 200, "subcode": 0, "note": None},
            {"t": 17.984, "type": "media_ended"},
        ],
        seconds=17.9509375,
    )
    data = timeline_lanes(folder)
    assert [lane.label for lane in data.lanes] == ["Adele Vance", "Alex Wilber", "Megan Bowen"]
    assert "".join(tone.digit for tone in data.lane(alex).tones) == "1234#"
    assert data.lane(megan).presence == (Span(7.46, 14.966),)
    assert data.lane(adele).presence == (Span(0.0, 17.9509375),)
    assert data.prompts == ()

    path = render_timeline(folder)
    image = draw_timeline(data)
    assert path.read_bytes() == image.png
    picture = pixels(image)
    for lane in data.lanes:
        first = image.bars[lane.key][0]
        assert close_to(picture.getpixel(first.center()), rgb(lane.color))
    assert not close_to(picture.getpixel(image.pixel(megan, 5.0)), rgb(data.lane(megan).color), 20)


def test_names_are_text_not_math(tmp_path: Path) -> None:
    """A display name with a lone "$" would be parsed as mathtext and fail the draw."""
    folder = write_call(
        tmp_path / "money",
        participants=[{"id": ADELE, "display_name": "Pays $5 for a_b^c and $", "source_ids": ["4"]}],
        segments=[segment("4", ADELE, None, 1.0, 2.0)],
        events=[{"t": 1.0, "type": "prompt_started", "source": "$oops.wav", "duration_s": 5.0}],
        seconds=10.0,
    )
    image = draw_timeline(timeline_lanes(folder))
    assert close_to(pixels(image).getpixel(image.bars[ADELE][0].center()), rgb(timeline_lanes(folder).lanes[0].color))


def test_empty_call_draws(tmp_path: Path) -> None:
    folder = write_call(tmp_path / "empty", participants=[])
    data = timeline_lanes(folder)
    assert data.lanes == ()
    assert data.duration == 0.0
    image = draw_timeline(data)
    assert image.bars == {PROMPTS_KEY: ()}
    with Image.open(io.BytesIO(image.png)) as png:
        assert png.size == (1200, image.height)


def test_renders_from_threads_match(call: Path) -> None:
    """Each render has its own figure and canvas: concurrent renders give the bytes a lone render gives."""
    data = timeline_lanes(call)
    expected = draw_timeline(data).png
    results: list[bytes] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(draw_timeline(data).png)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == [expected] * 3


def test_long_names_are_cut_to_fit(tmp_path: Path) -> None:
    names = ["Maximilian Oberhuber-Schwarzenegger (Guest)", "W" * 60]
    folder = write_call(
        tmp_path / "long",
        participants=[{"id": f"p{i}", "display_name": name, "source_ids": [str(i)]} for i, name in enumerate(names)],
        segments=[segment("0", "p0", None, 10.0, 70.0), segment("1", "p1", None, 100.0, 200.0)],
        seconds=245.0,
    )
    data = timeline_lanes(folder)
    assert [lane.label for lane in data.lanes] == names  # the data keeps the whole name; only the picture cuts
    image = draw_timeline(data)
    picture = pixels(image)
    # Nothing was drawn past the left edge: the first columns are white from top to bottom.
    assert all(picture.getpixel((x, y)) == (255, 255, 255) for x in range(3) for y in range(image.height))
    # Labels are drawn left of the plot, in the lane's row.
    row = image.lanes["p1"]
    label_area = [
        picture.getpixel((x, y))
        for x in range(20, round(image.plot.left) - 30)
        for y in range(round(row.top), round(row.bottom))
    ]
    assert any(max(pixel) < 100 for pixel in label_area)
    assert close_to(picture.getpixel(image.pixel("p1", 150.0)), rgb(data.lanes[1].color))
