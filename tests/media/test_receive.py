"""InlineAudioReceiver: real Opus and G.711 packets through the reorder window and decoder into a real pipeline."""

from __future__ import annotations

import fractions

import av
import numpy as np
import numpy.typing as npt
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from mediabot.audio import FRAME_SAMPLES, SAMPLE_RATE
from mediabot.audio.kernels import Decimator
from mediabot.media import opus
from mediabot.media.pipeline import StreamPipeline, TimelineClock
from mediabot.media.receive import REORDER_S, InlineAudioReceiver, attach, payload_codecs
from mediabot.metrics import FRAME_DELAY

RATE = 48_000
FRAME_IN = 960
OPUS_PT = 111
PCMU_PT = 0


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Sink:
    """Counts the pipeline's output frames and keeps the audio."""

    def __init__(self) -> None:
        self.frames: list[npt.NDArray[np.int16]] = []

    def on_frame(self, position: int, frame: npt.NDArray[np.int16]) -> None:
        self.frames.append(frame.copy())

    @property
    def audio(self) -> npt.NDArray[np.int16]:
        return np.concatenate(self.frames) if self.frames else np.zeros(0, np.int16)


def opus_packets(count: int, freq: float = 440.0) -> list[bytes]:
    """``count`` real Opus packets (20 ms each) of a sine, encoded by libopus."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = RATE  # type: ignore[attr-defined]
    encoder.layout = "mono"  # type: ignore[attr-defined]
    encoder.format = "s16"  # type: ignore[attr-defined]
    encoder.bit_rate = 64_000  # type: ignore[attr-defined]
    encoder.time_base = fractions.Fraction(1, RATE)
    t = np.arange(count * FRAME_IN) / RATE
    signal = (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    packets: list[bytes] = []
    for k in range(count + 4):
        chunk = signal[k * FRAME_IN : (k + 1) * FRAME_IN] if k < count else np.zeros(FRAME_IN, np.int16)
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = k * FRAME_IN
        packets += [bytes(p) for p in encoder.encode(frame)]  # type: ignore[attr-defined]
    return packets[:count]


def rtp(seq: int, timestamp: int, payload: bytes, pt: int = OPUS_PT) -> RtpPacket:
    packet = RtpPacket(payload_type=pt, sequence_number=seq & 0xFFFF, timestamp=timestamp & 0xFFFFFFFF)
    packet.payload = payload
    packet._data = payload  # type: ignore[attr-defined]  # what aiortc's depayloader leaves for the jitter buffer
    return packet


def receiver(clock: Clock, opus16: bool | None = None) -> tuple[InlineAudioReceiver, StreamPipeline, Sink]:
    sink = Sink()
    pipeline = StreamPipeline(TimelineClock(clock), [sink])
    codecs = {OPUS_PT: "audio/opus", PCMU_PT: "audio/pcmu"}
    return InlineAudioReceiver(pipeline, codecs, now=clock, opus16=opus16), pipeline, sink


def receive_all(packets: list[bytes], opus16: bool | None, first_ts: int = 5000) -> tuple[InlineAudioReceiver, Sink]:
    """Every packet in order, 20 ms apart, then the end of the stream."""
    clock = Clock()
    inline, pipeline, sink = receiver(clock, opus16)
    for k, payload in enumerate(packets):
        assert inline.add(rtp(1000 + k, first_ts + k * FRAME_IN, payload)) == (False, None)
        clock.t += 0.02
    inline.close()
    pipeline.close()
    return inline, sink


@pytest.fixture(scope="module")
def packets() -> list[bytes]:
    return opus_packets(100)


@pytest.mark.parametrize("opus16", [True, False], ids=["libopus-16k", "pyav-48k"])
def test_in_order_packets_are_decoded_on_arrival_as_mono(packets: list[bytes], opus16: bool) -> None:
    inline, sink = receive_all(packets, opus16)
    assert inline.stats.decoded == len(packets) and inline.stats.lost == 0 and inline.stats.reordered == 0
    assert inline.pipeline.stats.frames_in == len(packets) and inline.pipeline.stats.gap_samples == 0
    assert inline.pipeline.stats.discontinuities == 0
    # Every 20 ms of input came out as 20 ms at 16 kHz, nothing held back, nothing invented. Decoded at 48 kHz, the
    # frames start the decimator's delay before the first sample and its tail rings out into one more (padded) frame.
    tail = 0 if opus16 else FRAME_SAMPLES
    assert sink.audio.size == len(packets) * FRAME_SAMPLES + tail
    spectrum = np.abs(np.fft.rfft(sink.audio[SAMPLE_RATE // 2 :].astype(np.float64)))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / (sink.audio.size - SAMPLE_RATE // 2) - 440) < 5


def test_libopus_at_16k_sounds_like_pyav_at_48k_decimated() -> None:
    """The two Opus paths give the same audio (the 16 kHz one without the decimator's 38-sample delay)."""
    speechlike = [p for f in (300.0, 1200.0, 3100.0) for p in opus_packets(25, freq=f)]
    _, fast = receive_all(speechlike, opus16=True)
    _, reference = receive_all(speechlike, opus16=False)
    delay = Decimator.delay
    a = fast.audio[: speechlike.__len__() * FRAME_SAMPLES].astype(np.float64)
    b = reference.audio[delay : delay + a.size].astype(np.float64)
    assert np.corrcoef(a, b)[0, 1] > 0.99
    assert abs(20 * np.log10(np.std(a) / np.std(b))) < 0.5  # the same level, within half a dB


def test_opus_timestamps_keep_their_place_across_the_32_bit_wrap(packets: list[bytes]) -> None:
    """The 48 kHz RTP clock becomes a 16 kHz one for the pipeline: wrapping past 2**32 must not look like a jump."""
    inline, sink = receive_all(packets, opus16=True, first_ts=2**32 - 10 * FRAME_IN)
    stats = inline.pipeline.stats
    assert stats.discontinuities == 0 and stats.gap_samples == 0 and stats.late_frames == 0
    assert sink.audio.size == len(packets) * FRAME_SAMPLES


def test_a_swapped_pair_is_put_back_in_order(packets: list[bytes]) -> None:
    clock = Clock()
    inline, pipeline, _ = receiver(clock)
    order = [0, 1, 2, 4, 3, *range(5, 20)]
    for k in order:
        inline.add(rtp(k, k * FRAME_IN, packets[k]))
        clock.t += 0.02
    assert inline.stats.reordered == 1 and inline.stats.lost == 0 and inline.stats.late == 0
    assert pipeline.stats.gap_samples == 0 and pipeline.stats.late_frames == 0


def test_a_missing_packet_is_given_up_after_the_reorder_window(packets: list[bytes]) -> None:
    clock = Clock()
    inline, pipeline, _ = receiver(clock)
    for k in range(11):
        if k != 5:
            inline.add(rtp(k, k * FRAME_IN, packets[k]))
        clock.t += 0.02
        if k == 7:
            assert pipeline.stats.frames_in == 5  # 6 and 7 are held, waiting for 5
    # 6, 7, 8... are held for the window (60 ms): the first packet after it gives 5 up, and all flow.
    assert inline.stats.lost == 1
    assert pipeline.stats.frames_in == 10
    assert pipeline.stats.gap_samples == FRAME_SAMPLES
    # The lost packet arriving now is too late: it is not played over its successors.
    inline.add(rtp(5, 5 * FRAME_IN, packets[5]))
    assert inline.stats.late == 1 and pipeline.stats.frames_in == 10


def test_a_paused_sender_releases_held_packets_on_expiry(packets: list[bytes]) -> None:
    clock = Clock()
    inline, pipeline, _ = receiver(clock)
    for k in (0, 1, 3):
        inline.add(rtp(k, k * FRAME_IN, packets[k]))
        clock.t += 0.02
    inline.expire()
    assert pipeline.stats.frames_in == 2  # 3 has not waited long enough
    clock.t += REORDER_S
    inline.expire()
    assert pipeline.stats.frames_in == 3 and inline.stats.lost == 1


def test_sequence_numbers_wrap(packets: list[bytes]) -> None:
    clock = Clock()
    inline, pipeline, sink = receiver(clock)
    for k in range(20):
        inline.add(rtp(65530 + k, 0xFFFFF000 + k * FRAME_IN, packets[k]))
        clock.t += 0.02
    inline.close()
    pipeline.close()
    assert inline.stats.decoded == 20 and inline.stats.lost == 0 and inline.stats.late == 0
    tail = 0 if opus.available() else 1  # decoded at 48 kHz, the decimator's tail makes one more frame
    assert sink.audio.size == (20 + tail) * FRAME_SAMPLES and pipeline.stats.gap_samples == 0


def test_a_sender_that_restarts_its_sequence_numbers_is_followed(packets: list[bytes]) -> None:
    clock = Clock()
    inline, pipeline, _ = receiver(clock)
    for k in range(10):
        inline.add(rtp(5000 + k, k * FRAME_IN, packets[k]))
        clock.t += 0.02
    # New numbering far behind (a restarted sender): not 20 seconds of "late" packets, and no thousands "lost".
    for k in range(10, 20):
        inline.add(rtp(100 + k, k * FRAME_IN, packets[k]))
        clock.t += 0.02
    assert inline.stats.restarts == 1 and inline.stats.late == 0 and inline.stats.lost == 0
    assert pipeline.stats.frames_in == 20 and pipeline.stats.gap_samples == 0


def test_garbage_and_unknown_payloads_are_counted_and_skipped(packets: list[bytes]) -> None:
    clock = Clock()
    inline, pipeline, _ = receiver(clock)
    inline.add(rtp(0, 0, packets[0]))
    inline.add(rtp(1, FRAME_IN, b"\xff" * 7))  # not an Opus packet (a code-3 TOC with no frame count)
    inline.add(rtp(2, 2 * FRAME_IN, packets[2], pt=99))
    inline.add(rtp(3, 3 * FRAME_IN, packets[3]))
    assert inline.stats.undecodable == 1 and inline.stats.unknown_payload == 1
    assert inline.stats.decoded == 2 and pipeline.stats.frames_in == 2


def test_pcmu_is_decoded_at_8_khz() -> None:
    clock = Clock()
    inline, pipeline, sink = receiver(clock)
    t = np.arange(8000) / 8000
    tone_ = (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    encoder = av.CodecContext.create("pcm_mulaw", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 8000, "mono", "s16"  # type: ignore[attr-defined]
    frame = av.AudioFrame.from_ndarray(tone_.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = 8000
    ulaw = b"".join(bytes(p) for p in encoder.encode(frame))  # type: ignore[attr-defined]
    for k in range(50):
        inline.add(rtp(k, k * 160, ulaw[k * 160 : (k + 1) * 160], pt=PCMU_PT))
        clock.t += 0.02
    inline.close()
    pipeline.close()
    assert inline.stats.decoded == 50
    assert sink.audio.size == 50 * FRAME_SAMPLES
    spectrum = np.abs(np.fft.rfft(sink.audio.astype(np.float64)))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / sink.audio.size - 1000) < 5


def test_a_failing_sink_ends_the_stream_without_raising_into_aiortc(packets: list[bytes]) -> None:
    clock = Clock()
    failures: list[BaseException] = []

    class Broken:
        def on_frame(self, position: int, frame: npt.NDArray[np.int16]) -> None:
            raise RuntimeError("disk on fire")

    pipeline = StreamPipeline(TimelineClock(clock), [Broken()])
    inline = InlineAudioReceiver(pipeline, {OPUS_PT: "audio/opus"}, now=clock, on_failure=failures.append)
    for k in range(10):
        assert inline.add(rtp(k, k * FRAME_IN, packets[k])) == (False, None)
    assert len(failures) == 1 and isinstance(failures[0], RuntimeError)
    assert inline.stats.packets < 10  # after the failure nothing more is taken


def test_the_delay_histogram_counts_each_packet(packets: list[bytes]) -> None:
    clock = Clock()
    inline, _, _ = receiver(clock)
    before = sum(FRAME_DELAY.counts)
    for k in range(5):
        inline.add(rtp(k, k * FRAME_IN, packets[k]))
    assert sum(FRAME_DELAY.counts) == before + 5


async def test_attach_replaces_aiortcs_jitter_buffer_only() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        transceiver = pc.addTransceiver("audio", direction="recvonly")
        receiver_ = transceiver.receiver
        pipeline = StreamPipeline(TimelineClock(Clock()))
        assert attach(receiver_, pipeline, {OPUS_PT: "audio/g722"}) is None  # nothing we decode
        assert isinstance(receiver_._RTCRtpReceiver__jitter_buffer, JitterBuffer)  # type: ignore[attr-defined]
        inline = attach(receiver_, pipeline, {OPUS_PT: "audio/opus"})
        assert isinstance(inline, InlineAudioReceiver)
        assert receiver_._RTCRtpReceiver__jitter_buffer is inline  # type: ignore[attr-defined]
        assert attach(receiver_, pipeline, {OPUS_PT: "audio/opus"}) is None  # not twice
    finally:
        await pc.close()


def test_payload_codecs_reads_the_answer() -> None:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 127.0.0.1\r\n"
        "a=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    assert payload_codecs(sdp) == {111: "audio/opus", 0: "audio/pcmu"}
