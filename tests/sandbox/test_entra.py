"""Entra emulation exercised with real msal over real HTTPS."""

from __future__ import annotations

import time

import httpx
import jwt
import msal
import pytest
import requests

from mediabot.sandbox import SandboxServer
from mediabot.sandbox._permissions import ALL_PERMISSIONS

from .conftest import make_certificate

SCOPE = ["https://graph.microsoft.com/.default"]


def _msal(sandbox: SandboxServer, client_id: str, credential: object) -> msal.ConfidentialClientApplication:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(sandbox.ca_path)
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=credential,
        authority=sandbox.authority,
        http_client=session,
        instance_discovery=False,
    )


def test_msal_gets_a_token_with_the_client_secret(sandbox: SandboxServer) -> None:
    app = sandbox.default_app
    result = _msal(sandbox, app.client_id, app.client_secret).acquire_token_for_client(scopes=SCOPE)
    assert result.get("token_type") == "Bearer", result
    assert result["expires_in"] == 3599
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["appid"] == app.client_id
    assert claims["azp"] == app.client_id
    assert claims["appidacr"] == "1"
    assert set(claims["roles"]) == set(ALL_PERMISSIONS)


def test_msal_gets_a_token_with_a_certificate(sandbox: SandboxServer) -> None:
    cert_pem, key_pem = make_certificate()
    app = sandbox.register_app(roles=["Calls.Initiate.All"], certificate_pem=cert_pem)
    assert app.client_secret is None
    thumbprint = app.certificate_thumbprints
    assert thumbprint is not None
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    sha1_hex = x509.load_pem_x509_certificate(cert_pem.encode()).fingerprint(hashes.SHA1()).hex()
    credential = {"private_key": key_pem, "thumbprint": sha1_hex}
    result = _msal(sandbox, app.client_id, credential).acquire_token_for_client(scopes=SCOPE)
    assert "access_token" in result, result
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["roles"] == ["Calls.Initiate.All"]
    assert claims["appidacr"] == "2"


def test_a_certificate_the_app_does_not_have_is_refused(sandbox: SandboxServer) -> None:
    registered_pem, _ = make_certificate("registered")
    other_pem, other_key = make_certificate("other")
    app = sandbox.register_app(roles=[], certificate_pem=registered_pem)
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    other_sha1 = x509.load_pem_x509_certificate(other_pem.encode()).fingerprint(hashes.SHA1()).hex()
    result = _msal(
        sandbox, app.client_id, {"private_key": other_key, "thumbprint": other_sha1}
    ).acquire_token_for_client(scopes=SCOPE)
    assert result.get("error") == "invalid_client"
    assert 700027 in result["error_codes"]


def test_bad_secret_is_invalid_client_7000215(sandbox: SandboxServer) -> None:
    result = _msal(sandbox, sandbox.default_app.client_id, "not-the-secret").acquire_token_for_client(scopes=SCOPE)
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith("AADSTS7000215:")
    assert "trace_id" in result and "correlation_id" in result


def test_unknown_client_is_700016(sandbox: SandboxServer) -> None:
    result = _msal(sandbox, "11111111-2222-3333-4444-555555555555", "x").acquire_token_for_client(scopes=SCOPE)
    assert result["error"] == "unauthorized_client"
    assert result["error_codes"] == [700016]


def _token_post(sandbox: SandboxServer, **form: str) -> httpx.Response:
    with httpx.Client(verify=sandbox.ssl_context(), trust_env=False) as client:
        return client.post(f"{sandbox.authority}/oauth2/v2.0/token", data=form)


def test_scope_without_default_is_invalid_scope(sandbox: SandboxServer) -> None:
    app = sandbox.default_app
    response = _token_post(
        sandbox,
        grant_type="client_credentials",
        client_id=app.client_id,
        client_secret=app.client_secret or "",
        scope="https://graph.microsoft.com/Calls.Initiate.All",
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"
    assert response.json()["error_codes"] == [1002012]


def test_a_non_ascii_secret_is_a_wrong_secret_not_a_crash(sandbox: SandboxServer) -> None:
    response = _token_post(
        sandbox,
        grant_type="client_credentials",
        client_id=sandbox.default_app.client_id,
        client_secret="s\u00e9cret",
        scope=SCOPE[0],
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_unsupported_grant_type(sandbox: SandboxServer) -> None:
    response = _token_post(sandbox, grant_type="password", client_id=sandbox.default_app.client_id)
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_unknown_tenant(sandbox: SandboxServer) -> None:
    with httpx.Client(verify=sandbox.ssl_context(), trust_env=False) as client:
        response = client.get(f"{sandbox.base_url}/not-a-tenant/v2.0/.well-known/openid-configuration")
    assert response.status_code == 400
    assert response.json()["error_codes"] == [90002]


def test_access_token_verifies_against_the_jwks(sandbox: SandboxServer) -> None:
    token = sandbox.access_token()
    with httpx.Client(verify=sandbox.ssl_context(), trust_env=False) as client:
        discovery = client.get(f"{sandbox.authority}/v2.0/.well-known/openid-configuration").json()
        jwks = client.get(discovery["jwks_uri"]).json()
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(
        token,
        jwt.PyJWK(key).key,
        algorithms=["RS256"],
        audience="https://graph.microsoft.com",
        issuer=f"https://sts.windows.net/{sandbox.tenant_id}/",
    )
    assert claims["tid"] == sandbox.tenant_id
    assert claims["oid"] == sandbox.default_app.object_id
    assert claims["exp"] - claims["iat"] == 3599
    assert claims["nbf"] <= time.time() + 5
    assert discovery["token_endpoint"] == f"{sandbox.authority}/oauth2/v2.0/token"


@pytest.mark.parametrize(
    ("authorization", "fragment"),
    [(None, "empty"), ("Bearer not.a.jwt", "parsing"), ("Basic abc", "empty")],
)
def test_graph_refuses_missing_or_broken_tokens(
    sandbox: SandboxServer, authorization: str | None, fragment: str
) -> None:
    headers = {"client-request-id": "abc-123"}
    if authorization:
        headers["Authorization"] = authorization
    with httpx.Client(verify=sandbox.ssl_context(), trust_env=False) as client:
        response = client.get(f"{sandbox.graph_url}/communications/calls/x", headers=headers)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "InvalidAuthenticationToken"
    assert fragment in error["message"].lower()
    assert error["innerError"]["client-request-id"] == "abc-123"
    assert response.headers["client-request-id"] == "abc-123"
    assert response.headers["request-id"] == error["innerError"]["request-id"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_graph_refuses_an_expired_token_and_a_foreign_signature(sandbox: SandboxServer) -> None:
    from cryptography.hazmat.primitives import serialization

    signing_key = serialization.load_pem_private_key(sandbox.config.signing_key_pem, password=None)
    claims = {
        "aud": "https://graph.microsoft.com",
        "iss": f"https://sts.windows.net/{sandbox.tenant_id}/",
        "tid": sandbox.tenant_id,
        "iat": int(time.time()) - 7200,
        "exp": int(time.time()) - 3600,
        "appid": sandbox.default_app.client_id,
    }
    expired = jwt.encode(claims, signing_key, algorithm="RS256", headers={"kid": sandbox.config.signing_kid})
    _, foreign_key = make_certificate()
    forged = jwt.encode(
        {**claims, "exp": int(time.time()) + 3600},
        foreign_key,
        algorithm="RS256",
        headers={"kid": sandbox.config.signing_kid},
    )
    with httpx.Client(verify=sandbox.ssl_context(), trust_env=False) as client:
        for token, fragment in ((expired, "expired"), (forged, "validation failure")):
            response = client.get(
                f"{sandbox.graph_url}/communications/calls/x", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 401
            assert fragment in response.json()["error"]["message"]
