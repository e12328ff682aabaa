"""Transcription: the ``Transcriber`` protocol, its backends, and transcript writers (JSON, WebVTT, SRT)."""
