"""Call notifications per second, and their latency, through the real signaling service over real HTTP.

The service is ``mediabot.service.create_app`` (what ``mediabot serve`` runs: uvicorn as configured there, text logs at
INFO, written to a file), in its own process on 127.0.0.1 over plain HTTP (TLS is usually terminated in front of the
bot). Its callback keys come from a local :class:`mediabot.sandbox.SandboxServer`, and every notification carries an
RS256 token signed with the sandbox platform's key by :class:`CallbackSigner`, the way the sandbox signs the callbacks
it sends: the service validates each one for real (signature, issuer, audience, lifetime). The tokens (up to 500,
used round robin) are signed before the clock starts: signing is the platform's cost, not the bot's.

Workload: call lifecycles built from Microsoft's documented notification examples (``../shared/graph``, or
``MEDIABOT_GRAPH_CONTRACT``) with fresh call ids: ``establishing`` (the manager adopts the call), ``established``
(timers, recording gate, ``Bot.on_established``), a roster of two participants, ``terminated`` (timers cancelled,
``Bot.on_terminated``). ``concurrency`` workers each post one call's notifications in order, as the platform does.
Every response must be 202; afterwards the service's ``/v1/calls`` must show the calls it kept as terminated, once
established, with their roster (the real call-state path ran, not a rejection).

Baseline: a bare FastAPI app with one POST route that parses the JSON and answers 202, on the same uvicorn, same
driver, levels interleaved with ours. The driver is ``httpx.AsyncClient`` in this process (one client per worker).
On a small machine the driver needs as much CPU per request as the service, so wall-clock rates measure the driver
as much as the server: the server's own CPU time per notification, read from ``/proc``, is what capacity
(``notifications_per_core_s``) and ``throughput_vs_bare`` (notifications per server CPU-second, ours / bare) are
computed from; ``driver_bound`` says whether the driver was the busier side. ``jwt_validation_share`` is the
in-process cost of ``CallbackAuthenticator.authenticate`` for one token over the server's CPU time per notification.
``python -m benchmarks.signaling --profile N`` samples the service with py-spy instead and lists where time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from fastapi import FastAPI, Request, Response

from benchmarks._report import RESULTS_DIR, Result, save

REPO = Path(__file__).resolve().parent.parent
FULL_CONCURRENCY = (1, 8, 32)
QUICK_CONCURRENCY = (8,)
FULL_COUNT = 2000
QUICK_COUNT = 300
WARMUP = 100
TARGET_PER_S = 1000.0
API_KEY = "benchmark-api-key-0123456789"
LIFECYCLE = (
    "create-call-ex1-establishing.json",
    "create-call-ex1-established.json",
    "join-meeting-ex5-roster.json",
    "call-delete-terminated.json",
)


def _contract_dir() -> Path:
    override = os.environ.get("MEDIABOT_GRAPH_CONTRACT")
    path = Path(override) if override else REPO.parent / "shared" / "graph"
    if not (path / "notifications").is_dir():
        raise FileNotFoundError(f"the Graph contract data is missing at {path} (set MEDIABOT_GRAPH_CONTRACT)")
    return path


def lifecycle_templates(contract: Path) -> list[str]:
    """The lifecycle's documented bodies as JSON text, their call id replaced by ``{call_id}``."""
    templates = []
    for name in LIFECYCLE:
        body = json.loads((contract / "notifications" / name).read_text())["body"]
        resource = body["value"][0]["resourceUrl"]
        call_id = resource.split("/communications/calls/", 1)[1].split("/", 1)[0]
        text = json.dumps(body, separators=(",", ":"))
        templates.append(text.replace("{", "{{").replace("}", "}}").replace(call_id, "{call_id}"))
    return templates


# -- the server process --------------------------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux ``/proc``), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _bare_app() -> FastAPI:
    """What someone would start from: one POST route that parses the JSON and answers 202."""
    app = FastAPI()

    @app.post("/api/calling", status_code=202)
    async def calling(request: Request) -> Response:
        await request.json()
        return Response(status_code=202)

    return app


def _serve(kind: str, env: dict[str, str], log_path: str, output_dir: str, conn: Connection) -> None:
    """Run one server (``ours`` or ``bare``) on a free port; send the port on ``conn``; stop on SIGTERM."""
    import socket
    import threading

    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    if kind == "ours":
        from mediabot.config import Settings
        from mediabot.logs import configure_logging
        from mediabot.service import create_app

        settings = Settings(
            _env_file=None,
            tenant_id=env["MEDIABOT_TENANT_ID"],
            client_id=env["MEDIABOT_CLIENT_ID"],
            client_secret=env["MEDIABOT_CLIENT_SECRET"],
            authority=env["MEDIABOT_AUTHORITY"],
            graph_url=env["MEDIABOT_GRAPH_URL"],
            ca_bundle=env["MEDIABOT_CA_BUNDLE"],
            callback_openid_url=env["MEDIABOT_CALLBACK_OPENID_URL"],
            public_url=f"http://127.0.0.1:{port}",
            api_key=API_KEY,
            output_dir=Path(output_dir),
        )
        log = open(log_path, "a", buffering=1)  # noqa: SIM115 (lives as long as the process)
        configure_logging(settings.log_level, settings.log_format, stream=log)
        app = create_app(settings)
    else:
        app = _bare_app()
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=5))

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.01)
        conn.send(port)

    threading.Thread(target=announce, daemon=True).start()
    server.run(sockets=[sock])


class ServerProcess:
    """A server in a child process: its URL and CPU time."""

    def __init__(self, kind: str, env: dict[str, str], workdir: Path) -> None:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self.log_path = workdir / f"{kind}.log"
        self.process = context.Process(
            target=_serve,
            args=(kind, env, str(self.log_path), str(workdir / "recordings"), child),
            name=f"signaling-{kind}",
        )
        self.process.start()
        deadline = time.monotonic() + 60
        while not parent.poll(0.05):
            if not self.process.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the {kind} server did not start (exit code {self.process.exitcode})")
        self.port: int = parent.recv()
        self.url = f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float | None:
        """The server process's CPU time so far."""
        return _cpu_seconds(self.process.pid) if self.process.pid is not None else None

    def stop(self) -> None:
        """SIGTERM (uvicorn shuts down gracefully, the lifespan included), then wait."""
        self.process.terminate()
        self.process.join(30)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


# -- the driver ----------------------------------------------------------------------------------------------------


@dataclass
class Level:
    """One run at one concurrency: counts, wall time, latencies, CPU on both sides."""

    server: str
    concurrency: int
    sent: int
    ok: int
    seconds: float
    latencies_ms: list[float]
    server_cpu_s: float | None
    driver_cpu_s: float

    @property
    def per_s(self) -> float:
        """Notifications per second."""
        return self.sent / self.seconds

    def percentile(self, q: float) -> float:
        """Latency percentile in ms (nearest rank)."""
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]

    @property
    def server_cpu_us(self) -> float | None:
        """Server CPU µs per notification."""
        return None if self.server_cpu_s is None else self.server_cpu_s / self.sent * 1e6


def _calls(templates: Sequence[str], prefix: str, count: int) -> list[list[bytes]]:
    calls = -(-count // len(templates))
    return [
        [template.format(call_id=f"{prefix}-{index:05d}").encode() for template in templates] for index in range(calls)
    ]


async def drive(
    url: str, calls: list[list[bytes]], tokens: list[str], concurrency: int
) -> tuple[int, int, float, list[float]]:
    """Post every call's notifications (each call in order) with ``concurrency`` in flight; count 2xx.

    Each worker has its own client and connection, as the platform's senders would (one shared httpx pool costs the
    driver more CPU per request as connections are added, which would make the driver the bottleneck).
    """
    import httpx

    queue: asyncio.Queue[list[bytes]] = asyncio.Queue()
    for call in calls:
        queue.put_nowait(call)
    latencies: list[float] = []
    sent = ok = 0
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=url, limits=limits, timeout=60, trust_env=False))
            for _ in range(concurrency)
        ]

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal sent, ok
            while not queue.empty():
                for body in queue.get_nowait():
                    token = tokens[sent % len(tokens)]
                    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
                    sent += 1
                    started = time.perf_counter()
                    response = await client.post("/api/calling", content=body, headers=headers)
                    latencies.append((time.perf_counter() - started) * 1000)
                    if 200 <= response.status_code < 300:
                        ok += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for client in clients))
        elapsed = time.perf_counter() - started
    return sent, ok, elapsed, latencies


def measure(
    server: ServerProcess, kind: str, templates: Sequence[str], tokens: list[str], concurrency: int, count: int
) -> Level:
    """Warm up, then drive ``count`` notifications at ``concurrency``; CPU read on both sides around the run."""
    warm = _calls(templates, f"bench-{kind}-warm{concurrency}", WARMUP)
    asyncio.run(drive(server.url, warm, tokens, min(concurrency, len(warm))))
    calls = _calls(templates, f"bench-{kind}-c{concurrency}", count)
    cpu_before = server.cpu_seconds()
    driver_before = time.process_time()
    sent, ok, seconds, latencies = asyncio.run(drive(server.url, calls, tokens, concurrency))
    driver_cpu = time.process_time() - driver_before
    cpu_after = server.cpu_seconds()
    server_cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    if ok != sent:
        raise RuntimeError(f"{kind} at concurrency {concurrency}: only {ok} of {sent} notifications got a 2xx")
    return Level(kind, concurrency, sent, ok, seconds, latencies, server_cpu, driver_cpu)


def check_calls(url: str, prefix: str) -> int:
    """How many of the calls the service still lists under ``prefix`` went the whole way; raise if any did not."""
    import httpx

    response = httpx.get(f"{url}/v1/calls", headers={"Authorization": f"Bearer {API_KEY}"}, trust_env=False)
    response.raise_for_status()
    kept = [call for call in response.json()["value"] if str(call.get("id", "")).startswith(prefix)]
    if not kept:
        raise RuntimeError(f"the service lists none of the benchmark's calls ({prefix}*)")
    for call in kept:
        if call.get("state") != "terminated" or not call.get("established") or len(call.get("roster") or []) < 2:
            raise RuntimeError(f"call {call.get('id')} did not go through the call-state path: {call}")
    return len(kept)


async def _jwt_us(env: dict[str, str], tokens: list[str], rounds: int) -> float:
    from mediabot.graph.callback_auth import CallbackAuthenticator

    authenticator = CallbackAuthenticator(
        openid_config_url=env["MEDIABOT_CALLBACK_OPENID_URL"],
        audience=env["MEDIABOT_CLIENT_ID"],
        issuers=["https://graph.microsoft.com"],
        verify=env["MEDIABOT_CA_BUNDLE"],
    )
    try:
        await authenticator.authenticate(f"Bearer {tokens[0]}")  # fetches the keys
        started = time.process_time()
        for index in range(rounds):
            await authenticator.authenticate(f"Bearer {tokens[index % len(tokens)]}")
        return (time.process_time() - started) / rounds * 1e6
    finally:
        await authenticator.aclose()


@contextlib.contextmanager
def platform(token_count: int) -> Iterator[tuple[Path, dict[str, str], list[str]]]:
    """A sandbox publishing the callback keys: a work dir, its ``MEDIABOT_*`` env, and signed callback tokens."""
    from mediabot.sandbox import SandboxServer
    from mediabot.sandbox._callback_signing import CallbackSigner

    with (
        tempfile.TemporaryDirectory(prefix="mediabot-signaling-") as tmp,
        SandboxServer(Path(tmp) / "sandbox") as sandbox,
    ):
        env = sandbox.env
        signer = CallbackSigner(sandbox.config)
        yield Path(tmp), env, [signer.token(env["MEDIABOT_CLIENT_ID"]) for _ in range(token_count)]


def _median_cpu(levels: Sequence[Level]) -> float | None:
    values = [level.server_cpu_us for level in levels if level.server_cpu_us is not None]
    return statistics.median(values) if values else None


def run(quick: bool = False) -> Result:
    """Run ours and the bare app at each concurrency (interleaved); return the table, ratios and figures."""
    concurrencies = QUICK_CONCURRENCY if quick else FULL_CONCURRENCY
    count = QUICK_COUNT if quick else FULL_COUNT
    templates = lifecycle_templates(_contract_dir())
    levels: list[Level] = []
    with platform(min(count, 500)) as (workdir, env, tokens):
        jwt_us = asyncio.run(_jwt_us(env, tokens, 200 if quick else 1000))
        servers: dict[str, ServerProcess] = {}
        try:
            for kind in ("ours", "bare"):
                servers[kind] = ServerProcess(kind, env, workdir)
            for concurrency in concurrencies:  # interleaved, so drift in the machine's load hits both alike
                for kind, server in servers.items():
                    levels.append(measure(server, kind, templates, tokens, concurrency, count))
            kept = check_calls(servers["ours"].url, "bench-ours-c")
        finally:
            for server in servers.values():
                server.stop()
        with (workdir / "ours.log").open() as log:
            log_lines = sum(1 for _ in log)

    rows = [
        {
            "server": level.server,
            "concurrency": level.concurrency,
            "notifications": level.sent,
            "per_s": level.per_s,
            "p50_ms": level.percentile(50),
            "p99_ms": level.percentile(99),
            "server_cpu_us": level.server_cpu_us,
            "driver_cpu_us": level.driver_cpu_s / level.sent * 1e6,
        }
        for level in levels
    ]
    ours = [level for level in levels if level.server == "ours"]
    bare = {level.concurrency: level for level in levels if level.server == "bare"}
    best = max(ours, key=lambda level: level.per_s)
    reference = bare[best.concurrency]
    cpu_us = _median_cpu(ours)
    bare_cpu_us = _median_cpu(list(bare.values()))
    wall_ratio = best.per_s / reference.per_s
    ratios = {"throughput_vs_bare": bare_cpu_us / cpu_us if cpu_us and bare_cpu_us else wall_ratio}
    if cpu_us:
        ratios["jwt_validation_share"] = jwt_us / cpu_us
    middle = ours[len(ours) // 2]
    figures = {
        "notifications_per_core_s": 1e6 / cpu_us if cpu_us else None,
        "target_per_s": TARGET_PER_S,
        "notifications_per_s": best.per_s,
        "at_concurrency": best.concurrency,
        "driver_bound": best.driver_cpu_s >= (best.server_cpu_s or 0.0),
        "wall_throughput_vs_bare": wall_ratio,
        "p50_ms": middle.percentile(50),
        "p99_ms": middle.percentile(99),
        "latency_at_concurrency": middle.concurrency,
        "server_cpu_us_per_notification": cpu_us,
        "bare_per_s": reference.per_s,
        "bare_per_core_s": 1e6 / bare_cpu_us if bare_cpu_us else None,
        "bare_server_cpu_us_per_notification": bare_cpu_us,
        "jwt_validation_us": jwt_us,
    }
    meta = {
        "count": count,
        "warmup": WARMUP,
        "concurrency": list(concurrencies),
        "lifecycle": list(LIFECYCLE),
        "calls_checked": kept,
        "server_log_lines": log_lines,
        "http": "plain HTTP/1.1 on 127.0.0.1, uvicorn defaults as in `mediabot serve` (asyncio loop, h11)",
        "driver": "httpx.AsyncClient in the benchmark process, one client and connection per worker",
        "throughput_vs_bare": "notifications per server CPU-second, ours / bare (medians over the concurrencies); "
        "wall-clock notifications/s where /proc is missing",
        "wall_throughput_vs_bare": f"wall-clock notifications/s at ours' best concurrency ({best.concurrency}); "
        "only meaningful when not driver_bound",
        "jwt_validation_share": "CallbackAuthenticator.authenticate CPU µs / server CPU µs per notification (median)",
        "tokens": f"{len(tokens)} RS256 tokens signed before the run, reused round robin",
    }
    return Result("signaling", quick, rows, ratios, figures, meta)


def aggregate(raw: str, top: int = 60) -> list[tuple[float, float, str]]:
    """From py-spy's raw output (``frame;frame;... count``): (inclusive %, self %, frame), by inclusive share."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        count = int(number)
        total += count
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return []
    return [(100 * n / total, 100 * own[frame] / total, frame) for frame, n in inclusive.most_common(top)]


def profile(count: int, path: Path) -> str:
    """Sample the service (py-spy, GIL holder only) while it takes ``count`` notifications; write the summary."""
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        found = shutil.which("py-spy")
        if found is None:
            raise FileNotFoundError("py-spy is not installed (pip install py-spy)")
        py_spy = Path(found)
    templates = lifecycle_templates(_contract_dir())
    with platform(min(count, 500)) as (workdir, env, tokens):
        server = ServerProcess("ours", env, workdir)
        try:
            measure(server, "ours", templates, tokens, 8, WARMUP)
            raw = workdir / "profile.txt"
            command = [str(py_spy), "record", "--gil", "--format", "raw", "--rate", "250", "-o", str(raw)]
            spy = subprocess.Popen(
                [*command, "-p", str(server.process.pid)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            assert spy.stdout is not None
            attached = spy.stdout.readline()  # "py-spy> Sampling process ..." once it is attached
            if "Sampling" not in attached:
                spy.kill()
                raise RuntimeError(f"py-spy could not attach: {attached.strip()} {spy.communicate()[0].strip()}")
            level = measure(server, "ours-profiled", templates, tokens, 8, count)
            spy.send_signal(signal.SIGINT)
            spy.communicate(timeout=60)
        finally:
            server.stop()
        rows = aggregate(raw.read_text())
    lines = [
        f"py-spy --gil over {level.sent} notifications at concurrency 8 ({level.per_s:.0f}/s while sampled)",
        "inclusive%  self%  frame",
        *(f"{inclusive:9.1f} {own:6.1f}  {frame}" for inclusive, own, frame in rows),
    ]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def png(result: Result, path: Path) -> None:
    """Notifications per second against concurrency, ours and the bare app: wall clock, and per server CPU-second."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for server, color in (("ours", "tab:blue"), ("bare", "tab:orange")):
        rows = [row for row in result.table if row["server"] == server]
        x = [row["concurrency"] for row in rows]
        ax.plot(x, [row["per_s"] for row in rows], "o-", color=color, label=f"{server}: wall clock")
        if all(row["server_cpu_us"] for row in rows):
            per_core = [1e6 / row["server_cpu_us"] for row in rows]
            ax.plot(x, per_core, "s:", color=color, label=f"{server}: per server CPU-second")
    ax.axhline(TARGET_PER_S, color="tab:red", linestyle="--", linewidth=1, label=f"target {TARGET_PER_S:g}/s")
    ax.set_xscale("log", base=2)
    concurrencies = sorted({row["concurrency"] for row in result.table})
    ax.set_xticks(concurrencies, [str(c) for c in concurrencies])
    ax.set_xlabel("notifications in flight")
    ax.set_ylabel("notifications per second")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Call notifications through the service{' (quick)' if result.quick else ''}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", type=int, metavar="COUNT", help="profile the service instead")
    arguments = parser.parse_args()
    if arguments.profile:
        print(profile(arguments.profile, RESULTS_DIR / "signaling-profile.txt"))
    else:
        outcome = run(arguments.quick)
        save(outcome, lambda path: png(outcome, path))
