"""Running the sandbox: state dir persistence and the foreground ``serve`` output."""

from __future__ import annotations

import os
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import httpx

from mediabot.sandbox import SandboxServer


def test_restart_keeps_tenant_credentials_and_apps(tmp_path: Path) -> None:
    with SandboxServer(tmp_path) as first:
        env = first.env
        extra = first.register_app(roles=["Presence.Read.All"])
        first_kid = first.config.signing_kid
    with SandboxServer(tmp_path) as second:
        assert second.env["MEDIABOT_CLIENT_SECRET"] == env["MEDIABOT_CLIENT_SECRET"]
        assert second.tenant_id == env["MEDIABOT_TENANT_ID"]
        assert second.config.signing_kid == first_kid
        token = second.access_token(extra)
        with httpx.Client(verify=second.ssl_context(), trust_env=False) as client:
            response = client.get(f"{second.graph_url}/users/u/presence", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700
    for name in ("cert.pem", "key.pem", "signing-key.pem", "tenant.json", "apps.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


def test_env_describes_the_running_sandbox(sandbox: SandboxServer) -> None:
    env = sandbox.env
    assert env["MEDIABOT_AUTHORITY"] == f"{sandbox.base_url}/{sandbox.tenant_id}"
    assert env["MEDIABOT_GRAPH_URL"] == f"{sandbox.base_url}/v1.0"
    assert Path(env["MEDIABOT_CA_BUNDLE"]).is_absolute()
    assert env["MEDIABOT_SANDBOX_URL"].startswith("https://127.0.0.1:")


def test_serve_prints_the_environment_and_keeps_the_secret_out_of_logs(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from mediabot.sandbox import serve; "
        "serve('127.0.0.1', 0, Path(sys.argv[1]))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "state")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(8)]
        env = dict(line.split("=", 1) for line in lines)
        assert list(env) == [
            "MEDIABOT_TENANT_ID",
            "MEDIABOT_CLIENT_ID",
            "MEDIABOT_CLIENT_SECRET",
            "MEDIABOT_AUTHORITY",
            "MEDIABOT_GRAPH_URL",
            "MEDIABOT_CA_BUNDLE",
            "MEDIABOT_CALLBACK_OPENID_URL",
            "MEDIABOT_SANDBOX_URL",
        ]
        context = ssl.create_default_context(cafile=env["MEDIABOT_CA_BUNDLE"])
        with httpx.Client(verify=context, trust_env=False) as client:
            token = client.post(
                f"{env['MEDIABOT_AUTHORITY']}/oauth2/v2.0/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": env["MEDIABOT_CLIENT_ID"],
                    "client_secret": env["MEDIABOT_CLIENT_SECRET"],
                    "scope": "https://graph.microsoft.com/.default",
                },
            )
            assert token.status_code == 200
            assert client.get(f"{env['MEDIABOT_SANDBOX_URL']}/_sandbox/health").status_code == 200
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert "sandbox ready" in stderr
    assert env["MEDIABOT_CLIENT_SECRET"] not in stderr
