"""Authentication for scripts/fuzz-http: an API key of the bootstrap admin, issued through
the API and issued again whenever the server answers 401.

The fuzzer exercises every operation with real identifiers, `DELETE /api/v1/api-keys/{key_id}`
on the key it is using included (`GET /api/v1/api-keys` lists it). Without this provider the
rest of the run would get 401 everywhere and test nothing behind authentication. schemathesis
drops a cached credential when a response is 401 and asks `get` again (then replays the
request), so a revoked key is replaced by a new one. The first key is the one the script
issued (NL_FUZZ_API_KEY); the request for another is NL_FUZZ_KEY_REQUEST, sent with a fresh
login of NL_FUZZ_ADMIN_EMAIL / NL_FUZZ_ADMIN_PASSWORD at NL_FUZZ_BASE_URL.
"""

import json
import os
import uuid

import requests
import schemathesis

BASE_URL = os.environ["NL_FUZZ_BASE_URL"]


def _issue_key() -> str:
    login = requests.post(
        f"{BASE_URL}/api/v1/auth/login",
        json={
            "email": os.environ["NL_FUZZ_ADMIN_EMAIL"],
            "password": os.environ["NL_FUZZ_ADMIN_PASSWORD"],
        },
        timeout=10,
    )
    login.raise_for_status()
    token = login.json()["access_token"]
    created = requests.post(
        f"{BASE_URL}/api/v1/api-keys",
        headers={
            "Authorization": f"Bearer {token}",
            "Idempotency-Key": f"fuzz-http-{uuid.uuid4()}",
        },
        json=json.loads(os.environ["NL_FUZZ_KEY_REQUEST"]),
        timeout=10,
    )
    created.raise_for_status()
    return created.json()["secret"]


@schemathesis.auth(refresh_interval=86400)
class NetledgerApiKey:
    """The current key: the script's first, then a new one after each 401."""

    def __init__(self) -> None:
        self.first = os.environ.get("NL_FUZZ_API_KEY")

    def get(self, case, ctx):
        if self.first:
            key, self.first = self.first, None
            return key
        return _issue_key()

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
