"""TokenProvider against the sandbox's Entra emulator: real HTTPS, real msal."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import jwt
import pytest

from mediabot import ConfigError, GraphAuthError
from mediabot.graph.auth import TokenProvider, load_certificate_credential
from mediabot.sandbox import SandboxServer
from tests.graph.conftest import sandbox_settings
from tests.sandbox.conftest import make_certificate


async def test_a_secret_gets_a_graph_token_with_the_apps_roles(sandbox: SandboxServer) -> None:
    provider = TokenProvider(sandbox_settings(sandbox))
    try:
        token = await provider.get_token()
    finally:
        provider.close()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["appid"] == sandbox.default_app.client_id
    assert claims["tid"] == sandbox.tenant_id
    assert "Calls.AccessMedia.All" in claims["roles"]


async def test_many_concurrent_callers_cause_one_token_request(sandbox: SandboxServer) -> None:
    provider = TokenProvider(sandbox_settings(sandbox))
    try:
        tokens = await asyncio.gather(*(provider.get_token() for _ in range(20)))
        tokens.append(await provider.get_token())
    finally:
        provider.close()
    assert len(set(tokens)) == 1
    assert provider.requests_to_authority == 1


async def test_invalidate_makes_msal_serve_from_its_cache_not_the_authority(sandbox: SandboxServer) -> None:
    provider = TokenProvider(sandbox_settings(sandbox))
    try:
        first = await provider.get_token()
        provider.invalidate()
        second = await provider.get_token()
    finally:
        provider.close()
    assert first == second
    assert provider.requests_to_authority == 1


async def test_a_certificate_gets_a_token(sandbox: SandboxServer, tmp_path: Path) -> None:
    cert_pem, key_pem = make_certificate()
    app = sandbox.register_app(roles=["Calls.Initiate.All"], certificate_pem=cert_pem)
    pem = tmp_path / "app.pem"
    pem.write_text(cert_pem + key_pem)
    provider = TokenProvider(sandbox_settings(sandbox, app, client_secret=None, certificate_path=pem))
    try:
        token = await provider.get_token()
    finally:
        provider.close()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["appid"] == app.client_id
    assert claims["roles"] == ["Calls.Initiate.All"]


async def test_a_certificate_the_app_does_not_have_is_refused(sandbox: SandboxServer, tmp_path: Path) -> None:
    registered, _ = make_certificate("registered")
    other_cert, other_key = make_certificate("other")
    app = sandbox.register_app(roles=[], certificate_pem=registered)
    pem = tmp_path / "other.pem"
    pem.write_text(other_cert + other_key)
    provider = TokenProvider(sandbox_settings(sandbox, app, client_secret=None, certificate_path=pem))
    try:
        with pytest.raises(GraphAuthError) as info:
            await provider.get_token()
    finally:
        provider.close()
    assert info.value.error == "invalid_client"


async def test_a_bad_secret_is_a_clear_error_that_never_shows_the_secret(
    sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "not-the-secret-0123456789"
    provider = TokenProvider(sandbox_settings(sandbox, client_secret=secret))
    try:
        with pytest.raises(GraphAuthError) as info:
            await provider.get_token()
    finally:
        provider.close()
    assert info.value.error == "invalid_client"
    assert 7000215 in info.value.error_codes
    assert "AADSTS7000215" in str(info.value)
    assert secret not in str(info.value)
    assert secret not in caplog.text


async def test_an_unknown_client_is_a_clear_error(sandbox: SandboxServer) -> None:
    provider = TokenProvider(sandbox_settings(sandbox, client_id="00000000-0000-0000-0000-000000000000"))
    try:
        with pytest.raises(GraphAuthError) as info:
            await provider.get_token()
    finally:
        provider.close()
    assert 700016 in info.value.error_codes


async def test_an_unreachable_authority_is_a_graph_auth_error(sandbox: SandboxServer) -> None:
    settings = sandbox_settings(sandbox, authority="https://127.0.0.1:9/tenant", graph_timeout=2)
    provider = TokenProvider(settings)
    try:
        with pytest.raises(GraphAuthError, match="unreachable"):
            await provider.get_token()
    finally:
        provider.close()


def test_missing_credentials_are_a_config_error(sandbox: SandboxServer) -> None:
    with pytest.raises(ConfigError, match="CLIENT_SECRET or MEDIABOT_CERTIFICATE_PATH"):
        TokenProvider(sandbox_settings(sandbox, client_secret=None))


def test_a_certificate_file_without_a_key_is_a_config_error(tmp_path: Path) -> None:
    cert_pem, _ = make_certificate()
    pem = tmp_path / "cert-only.pem"
    pem.write_text(cert_pem)
    with pytest.raises(ConfigError, match="private key"):
        load_certificate_credential(pem)


def test_a_wrong_thumbprint_setting_is_a_config_error(tmp_path: Path) -> None:
    cert_pem, key_pem = make_certificate()
    pem = tmp_path / "app.pem"
    pem.write_text(cert_pem + key_pem)
    assert len(load_certificate_credential(pem).thumbprint) == 40
    with pytest.raises(ConfigError, match="does not match"):
        load_certificate_credential(pem, "00" * 20)
