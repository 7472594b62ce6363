"""Authentication for scripts/fuzz-http: an API key of the bootstrap admin, issued through
the API and issued again whenever the server answers 401.

The fuzzer exercises every operation with real identifiers, `DELETE /api/v1/api-keys/{key_id}`
on the key it is using included (`GET /api/v1/api-keys` lists it). Without this provider the
rest of the run would get 401 everywhere and test nothing behind authentication. schemathesis
drops a cached credential when a response is 401 and asks `get` again (then replays the
request), so a revoked key is replaced by a new one. The first key is the one the script
issued (NL_FUZZ_API_KEY); the request for another is NL_FUZZ_KEY_REQUEST, sent with a fresh
login of NL_FUZZ_ADMIN_EMAIL / NL_FUZZ_ADMIN_PASSWORD at NL_FUZZ_BASE_URL.

Logins are limited per account (5 a minute, docs/api.md) and the fuzzer may revoke keys
faster than that: the session of the last login is kept and reused for the next key while the
server accepts it, and a 429 on login waits for its `Retry-After` (at most 65 s) and tries
again, instead of failing the token fetch.

It also corrects one labelling slip of schemathesis 4.32.5, gives each distinct positive
request its own Idempotency-Key (`before_call` below), and generates the `ssh-private-key`
string format from real keys (services/routeros-ssh/testdata): no JSON Schema can say what a
private key is, so without it a schema-valid request would carry a random string the server
rightly refuses.
"""

import hashlib
import json
import os
import pathlib
import time
import uuid

import requests
import schemathesis
from hypothesis import strategies as st

BASE_URL = os.environ["NL_FUZZ_BASE_URL"]

_KEYS = pathlib.Path(__file__).resolve().parent.parent / "services/routeros-ssh/testdata"
schemathesis.openapi.format(
    "ssh-private-key",
    st.sampled_from(
        [
            (_KEYS / name).read_text()
            for name in ("ed25519-openssh.key", "rsa-pkcs1.pem", "ecdsa-pkcs8.pem")
        ]
    ),
)

_session = {"token": None}


def _login() -> str:
    for _ in range(4):
        login = requests.post(
            f"{BASE_URL}/api/v1/auth/login",
            json={
                "email": os.environ["NL_FUZZ_ADMIN_EMAIL"],
                "password": os.environ["NL_FUZZ_ADMIN_PASSWORD"],
            },
            timeout=10,
        )
        if login.status_code == 429:
            time.sleep(min(int(login.headers.get("Retry-After", "10")), 65))
            continue
        login.raise_for_status()
        return login.json()["access_token"]
    login.raise_for_status()
    raise RuntimeError("login kept answering 429")


def _create_key(token: str) -> requests.Response:
    return requests.post(
        f"{BASE_URL}/api/v1/api-keys",
        headers={
            "Authorization": f"Bearer {token}",
            "Idempotency-Key": f"fuzz-http-{uuid.uuid4()}",
        },
        json=json.loads(os.environ["NL_FUZZ_KEY_REQUEST"]),
        timeout=10,
    )


def _issue_key() -> str:
    created = None
    if _session["token"]:
        created = _create_key(_session["token"])
    if created is None or created.status_code == 401:
        # no session yet, or the fuzzer ended it (logout, logout-all) or it expired
        _session["token"] = _login()
        created = _create_key(_session["token"])
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


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    """A case with a negative component is a negative case.

    schemathesis 4.32.5's coverage phase keeps a negative value it generated for an optional
    header in its template (e.g. `If-Match: 0` against the header's pattern) and sends it with
    the later "Valid object" body cases, which it labels positive while their own metadata
    says the header component is negative; `positive_data_acceptance` then reports the 400
    for the bad header as a valid request refused. Labelled negative, the case is judged by
    the negative checks instead (which expect exactly that 400)."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    if any(c.mode.is_negative for c in meta.components.values()):
        meta.generation.mode = schemathesis.GenerationMode.NEGATIVE
        return
    _key_per_request(case)


def _key_per_request(case):
    """An Idempotency-Key names one request: sent again with a different one it is refused
    (422 `idempotency-key-reused`, tested in services/api/tests/api.rs), which no schema can
    say, and schemathesis draws the same few keys for many bodies. Like a correct client, a
    positive case's key is made that request's own: the drawn key plus a digest of method,
    path, query and body (so the same request sent twice still replays)."""
    headers = case.headers or {}
    name = next((h for h in headers if h.lower() == "idempotency-key"), None)
    if name is None:
        return
    request = json.dumps(
        [case.method, case.path, case.path_parameters, case.query, case.body],
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(request.encode()).hexdigest()[:16]
    headers[name] = f"{headers[name][:183]}-{digest}"
