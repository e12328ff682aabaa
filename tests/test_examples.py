"""The README's plain msal + httpx example works against a running sandbox, unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from mediabot.sandbox import SandboxServer
from tests.conftest import REPO_ROOT


def test_plain_msal_and_httpx_get_a_token_and_create_a_call(sandbox: SandboxServer) -> None:
    env = {**os.environ, **sandbox.env}
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / "plain_msal_httpx.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    status_line, _, body = result.stdout.partition("\n")
    assert status_line.startswith("201 ")
    assert json.loads(body)["state"] == "establishing"
