"""The open media plane: media config blobs, WHIP sessions on aiortc, per-source pipelines and their sinks."""
