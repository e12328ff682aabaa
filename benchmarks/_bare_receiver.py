"""The baseline receiver: stock aiortc behind a minimal WHIP endpoint, each track read by a plain ``recv`` loop.

It speaks the same small API as ``mediabot serve`` so the load harness drives both alike: ``POST /v1/sessions``
(``{session_id, whip_url, token, folder}``), WHIP ``POST /media/whip/{session}?source=`` and ``DELETE`` of the
``Location``, ``DELETE /v1/sessions/{id}``, ``GET /healthz``, and ``GET /metrics`` with the counters the harness reads
(``mediabot_media_frames_received_total``, ``..._concealed_total``: frames missing by their RTP timestamps,
``..._late_total``, ``mediabot_media_streams``). Per track the work is aiortc's own: SRTP, jitter buffer, Opus decode
on its decoder thread, then ``frame = await track.recv(); count += 1`` and a timestamp check — nothing else.
No authentication, recording or analysis: it is what "bare aiortc receive" costs.

``python -m benchmarks._bare_receiver --port PORT [--ice-loopback]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame
from fastapi import FastAPI, Request, Response
from fastapi.responses import PlainTextResponse


@dataclass
class _Stream:
    pc: RTCPeerConnection
    task: asyncio.Task[None] | None = None


@dataclass
class _Session:
    token: str
    streams: dict[str, _Stream] = field(default_factory=dict)


class BareReceiver:
    """The sessions, their peer connections and one counter of frames received."""

    def __init__(self, public_url: str) -> None:
        self.public_url = public_url.rstrip("/")
        self.sessions: dict[str, _Session] = {}
        self.frames = 0
        self.missing = 0
        self.late = 0

    def open_session(self) -> dict[str, Any]:
        """A new session id and bearer token."""
        session_id = secrets.token_urlsafe(9)
        session = self.sessions[session_id] = _Session(token=secrets.token_urlsafe(16))
        whip_url = f"{self.public_url}/media/whip/{session_id}"
        return {"session_id": session_id, "whip_url": whip_url, "token": session.token, "folder": None}

    async def answer(self, session_id: str, offer: str) -> tuple[str, str]:
        """Answer a WHIP offer; the answer SDP and the resource id."""
        session = self.sessions[session_id]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        stream = _Stream(pc)
        resource = secrets.token_urlsafe(9)
        session.streams[resource] = stream

        @pc.on("track")
        def _track(track: MediaStreamTrack) -> None:
            if track.kind == "audio" and stream.task is None:
                stream.task = asyncio.ensure_future(self._count(track))

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp, resource

    async def _count(self, track: MediaStreamTrack) -> None:
        # The plain receive loop the benchmark compares with: decode included (aiortc's), nothing after it but
        # counting — frames, and frames missing by their timestamps (lost or dropped), as the bot counts them.
        expected: int | None = None
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.frames += 1
                if not isinstance(frame, AudioFrame):
                    continue
                pts, samples = frame.pts, frame.samples
                if expected is not None and pts is not None:
                    if pts > expected:
                        self.missing += (pts - expected) // samples
                    elif pts < expected:
                        self.late += 1
                expected = None if pts is None else pts + samples

    async def close_stream(self, session_id: str, resource: str) -> bool:
        """End one WHIP resource."""
        session = self.sessions.get(session_id)
        stream = session.streams.pop(resource, None) if session is not None else None
        if stream is None:
            return False
        await stream.pc.close()
        if stream.task is not None:
            stream.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream.task
        return True

    async def close_session(self, session_id: str) -> bool:
        """End a session and its streams."""
        session = self.sessions.get(session_id)
        if session is None:
            return False
        for resource in list(session.streams):
            await self.close_stream(session_id, resource)
        del self.sessions[session_id]
        return True

    def metrics(self) -> str:
        """The counters, in the Prometheus text format (the names the bot uses)."""
        streams = sum(len(s.streams) for s in self.sessions.values())
        return (
            "# TYPE mediabot_media_frames_received_total counter\n"
            f"mediabot_media_frames_received_total {self.frames}\n"
            "# TYPE mediabot_media_frames_concealed_total counter\n"
            f"mediabot_media_frames_concealed_total {self.missing}\n"
            "# TYPE mediabot_media_frames_late_total counter\n"
            f"mediabot_media_frames_late_total {self.late}\n"
            "# TYPE mediabot_media_streams gauge\n"
            f"mediabot_media_streams {streams}\n"
        )


def create_app(public_url: str) -> FastAPI:
    """The receiver's HTTP API."""
    receiver = BareReceiver(public_url)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        for session_id in list(receiver.sessions):
            await receiver.close_session(session_id)

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(receiver.metrics())

    @app.post("/v1/sessions", status_code=201)
    async def open_session() -> dict[str, Any]:
        return receiver.open_session()

    @app.delete("/v1/sessions/{session_id}")
    async def close_session(session_id: str) -> Response:
        return Response(status_code=200 if await receiver.close_session(session_id) else 404)

    @app.post("/media/whip/{session_id}")
    async def whip(session_id: str, request: Request) -> Response:
        session = receiver.sessions.get(session_id)
        if session is None:
            return Response("no such session", status_code=404)
        if request.headers.get("authorization", "") != f"Bearer {session.token}":
            return Response("wrong token", status_code=401)
        answer, resource = await receiver.answer(session_id, (await request.body()).decode())
        headers = {"Location": f"/media/whip/{session_id}/{resource}"}
        return Response(answer, status_code=201, media_type="application/sdp", headers=headers)

    @app.delete("/media/whip/{session_id}/{resource}")
    async def whip_delete(session_id: str, resource: str) -> Response:
        return Response(status_code=200 if await receiver.close_stream(session_id, resource) else 404)

    return app


def main() -> None:
    """Serve on 127.0.0.1:PORT until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ice-loopback", action="store_true", help="also offer ICE candidates on 127.0.0.1")
    args = parser.parse_args()
    if args.ice_loopback:
        from mediabot.media.ice import allow_loopback_candidates

        allow_loopback_candidates()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)
    app = create_app(f"http://127.0.0.1:{args.port}")
    config = uvicorn.Config(app, log_config=None, access_log=False, log_level="warning", timeout_graceful_shutdown=2)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
