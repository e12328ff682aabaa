"""A configured proxy carries the token request and Graph traffic (HTTPS_PROXY is not read implicitly)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator

import pytest

from mediabot.graph import GraphClient
from mediabot.sandbox import SandboxServer
from tests.graph.conftest import sandbox_settings


class ConnectProxy:
    """A minimal HTTP CONNECT proxy on loopback that records the tunnels it opened."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        # Tunnels still open when the test ends are cancelled and awaited here, not left to the garbage collector.
        server.close()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        method, target, _ = request.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":
            writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        self.tunnels.append(target)
        host, _, port = target.rpartition(":")
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    def __enter__(self) -> ConnectProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    with ConnectProxy() as running:
        yield running


async def test_token_and_graph_requests_go_through_the_configured_proxy(
    sandbox: SandboxServer, proxy: ConnectProxy
) -> None:
    settings = sandbox_settings(sandbox, proxy_url=f"http://127.0.0.1:{proxy.port}")
    async with GraphClient(settings) as graph:
        call = await graph.call_user(
            str(uuid.uuid4()),
            callback_uri="https://bot.example.com/api/calling",
            media_config={"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
        )
        assert (await graph.get_call(call.id or "")).id == call.id
    sandbox_host = sandbox.base_url.removeprefix("https://")
    assert proxy.tunnels and set(proxy.tunnels) == {sandbox_host}
    assert len(proxy.tunnels) >= 2, "msal's token request and httpx's Graph requests both used the proxy"
