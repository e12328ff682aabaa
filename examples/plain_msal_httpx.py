"""Talk to the sandbox (or real Graph) with plain msal + httpx, no mediabot code: a token, then a call.

    mediabot sandbox --port 8443 > sandbox.env &
    set -a; . ./sandbox.env; set +a
    python examples/plain_msal_httpx.py

It reads the MEDIABOT_* variables the sandbox prints, gets an app-only token with msal, and creates a
peer-to-peer call with service-hosted media in the shape of Graph's documented create-call request.
"""

import json
import os
import sys
import uuid

import httpx
import msal
import requests

tenant = os.environ["MEDIABOT_TENANT_ID"]
client_id = os.environ["MEDIABOT_CLIENT_ID"]
secret = os.environ["MEDIABOT_CLIENT_SECRET"]
authority = os.environ["MEDIABOT_AUTHORITY"]
graph = os.environ["MEDIABOT_GRAPH_URL"]
ca_bundle = os.environ.get("MEDIABOT_CA_BUNDLE") or True

# msal honours REQUESTS_CA_BUNDLE over verify=, so hand it a session that ignores the environment.
session = requests.Session()
session.trust_env = False
session.verify = ca_bundle
app = msal.ConfidentialClientApplication(
    client_id, client_credential=secret, authority=authority, http_client=session, instance_discovery=False
)
result = app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
if "access_token" not in result:
    sys.exit(f"no token: {result.get('error')}: {result.get('error_description')}")

body = {
    "@odata.type": "#microsoft.graph.call",
    "callbackUri": "https://bot.contoso.com/callback",
    "targets": [
        {
            "@odata.type": "#microsoft.graph.invitationParticipantInfo",
            "identity": {
                "@odata.type": "#microsoft.graph.identitySet",
                "user": {
                    "@odata.type": "#microsoft.graph.identity",
                    "displayName": "John",
                    "id": str(uuid.uuid4()),
                },
            },
        }
    ],
    "requestedModalities": ["audio"],
    "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
}
with httpx.Client(verify=ca_bundle, trust_env=False) as http:
    response = http.post(
        f"{graph}/communications/calls",
        json=body,
        headers={"Authorization": f"Bearer {result['access_token']}"},
    )
print(response.status_code, response.headers.get("Location"))
print(json.dumps(response.json(), indent=2))
sys.exit(0 if response.status_code == 201 else 1)
