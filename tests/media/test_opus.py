"""libopus at 16 kHz: real packets decode to 20 ms of 16 kHz mono, a broken one is a clear error, and the library is
found without a system copy (PyAV's wheel bundles one)."""

from __future__ import annotations

import ctypes.util

import numpy as np
import pytest

from mediabot.media import opus
from mediabot.media.opus import MAX_SAMPLES, OpusDecoder, OpusError

from .test_receive import opus_packets


def test_a_packet_decodes_to_20_ms_at_16_khz() -> None:
    decoder = OpusDecoder()
    out = [decoder.decode(p).copy() for p in opus_packets(50, freq=1000.0)]
    assert {chunk.size for chunk in out} == {320}
    audio = np.concatenate(out)[8000:].astype(np.float64)  # after the codec's warm-up
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 16000 / audio.size - 1000) < 10
    assert np.sqrt(np.mean(audio**2)) > 3000  # about 8000 / sqrt(2): the level survives


def test_a_broken_packet_is_an_opus_error_and_the_decoder_goes_on() -> None:
    decoder = OpusDecoder()
    good = opus_packets(2)
    decoder.decode(good[0])
    with pytest.raises(OpusError) as raised:
        decoder.decode(b"\xff" * 3)  # code 3 (arbitrary frame count) with no count byte's worth of frames
    assert raised.value.code < 0
    assert decoder.decode(good[1]).size == 320


def test_a_closed_decoder_refuses_to_decode() -> None:
    decoder = OpusDecoder()
    decoder.close()
    decoder.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        decoder.decode(opus_packets(1)[0])


def test_without_a_system_libopus_the_wheels_copy_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    opus._library.cache_clear()
    try:
        assert opus.available()
        assert OpusDecoder().decode(opus_packets(1)[0]).size <= MAX_SAMPLES
    finally:
        opus._library.cache_clear()
