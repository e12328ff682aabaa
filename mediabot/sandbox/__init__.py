"""mediabot's local cloud: an emulator of Entra ID (token endpoint) and Graph's communications REST API.

It lets the whole bot run and be tested with no tenant. It talks only HTTPS, like the real cloud, and never imports
the bot's own packages. Public surface::

    SandboxConfig        configuration + persistent identity (state dir: TLS cert, signing key, tenant, apps)
    AppRegistration      one app: client id, secret and/or certificate, granted application permissions
    create_sandbox_app   the FastAPI app for a config
    SandboxServer        run it on a background thread (tests, demo) with admin helpers
    serve                run it in the foreground, printing the MEDIABOT_* environment
"""

from pathlib import Path

from ._app import create_sandbox_app
from ._config import AppRegistration, SandboxConfig
from ._server import SandboxServer, serve

__all__ = ["BUNDLED_SCENARIO", "AppRegistration", "SandboxConfig", "SandboxServer", "create_sandbox_app", "serve"]

#: The meeting ``mediabot demo`` plays by default: three speakers, one joining late, one pressing digits over a
#: lossy, jittery network.
BUNDLED_SCENARIO = Path(__file__).resolve().parent / "scenarios" / "demo.yaml"
