"""A real scenario driven through the Python client generated from openapi/openapi.json
(openapi-python-client). Run by tests/api.rs `generated_python_client_drives_a_scenario`:

    python client_scenario.py <base url> <admin e-mail> <admin password>

Logs in, checks a typed error, registers a device (with an Idempotency-Key, twice), starts a
backup, and reads the events of both streams. Exits non-zero on any mismatch.
"""

import sys

from netledger_api_client import AuthenticatedClient, Client
from netledger_api_client.api.auth import get_me, login
from netledger_api_client.api.devices import get_device_state, register_device
from netledger_api_client.api.events import list_stream_events
from netledger_api_client.api.workflows import start_backup
from netledger_api_client.models import (
    BackupRequest,
    DeviceStateDto,
    DeviceWritten,
    EventPage,
    LoginRequest,
    Me,
    NewDevice,
    Problem,
    TokenResponse,
    WorkflowStartedDto,
)


def check(cond, what):
    if not cond:
        print(f"client scenario failed: {what}", file=sys.stderr)
        sys.exit(1)


def main():
    base, email, password = sys.argv[1:4]
    anon = Client(base_url=base, raise_on_unexpected_status=True)

    bad = login.sync(client=anon, body=LoginRequest(email=email, password="not the password"))
    check(isinstance(bad, Problem), f"a wrong password gives a Problem, got {bad!r}")
    check(bad.type_ == "urn:netledger:problem:invalid-credentials", f"problem type {bad.type_}")

    token = login.sync(client=anon, body=LoginRequest(email=email, password=password))
    check(isinstance(token, TokenResponse), f"login answers a token, got {token!r}")
    client = AuthenticatedClient(base_url=base, token=token.access_token, raise_on_unexpected_status=True)

    me = get_me.sync(client=client)
    check(isinstance(me, Me) and me.kind == "user", f"who am I: {me!r}")

    body = NewDevice(name="py-edge-1", host="192.0.2.44", username="api", password="device-pass-123", tags=["py"])
    dev = register_device.sync(client=client, body=body, idempotency_key="py-register-1")
    check(isinstance(dev, DeviceWritten), f"register answers DeviceWritten, got {dev!r}")
    again = register_device.sync(client=client, body=body, idempotency_key="py-register-1")
    check(isinstance(again, DeviceWritten) and again.device_id == dev.device_id, "the key replays the first answer")
    check(dev.events[0].stream == f"device-{dev.device_id}", f"write names its stream: {dev.events!r}")

    state = get_device_state.sync(device_id=dev.device_id, client=client)
    check(isinstance(state, DeviceStateDto) and state.version == 1, f"state: {state!r}")

    wf = start_backup.sync(client=client, body=BackupRequest(device_id=dev.device_id), idempotency_key="py-backup-1")
    check(isinstance(wf, WorkflowStartedDto) and not wf.existed, f"backup started: {wf!r}")

    wf_events = list_stream_events.sync(stream=f"workflow-{wf.workflow_id}", client=client)
    check(isinstance(wf_events, EventPage), f"workflow events: {wf_events!r}")
    types = [e.event_type for e in wf_events.items]
    check("WorkflowStarted" in types, f"workflow journal: {types}")
    check(wf_events.items[0].position == wf.events[0].first_position, "positions agree")

    dev_events = list_stream_events.sync(stream=f"device-{dev.device_id}", client=client)
    check([e.event_type for e in dev_events.items] == ["DeviceRegistered"], "device stream")
    check("device-pass-123" not in str([e.payload.to_dict() for e in dev_events.items]), "no password in events")

    print("client scenario: 1 passed, 0 failed")


if __name__ == "__main__":
    main()
