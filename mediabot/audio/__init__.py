"""Synchronous audio kernels over numpy arrays, and the call timeline's audio format.

Everything downstream of the media plane's decoders works in one format: mono int16 at :data:`SAMPLE_RATE`, cut into
:data:`FRAME_SAMPLES`-sample (20 ms) frames, positioned in samples on the call timeline (the first media is at
sample 38, the resampler's delay: see :data:`mediabot.media.pipeline.TIMELINE_LEAD`).
"""

SAMPLE_RATE = 16_000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000

__all__ = ["FRAME_MS", "FRAME_SAMPLES", "SAMPLE_RATE"]
