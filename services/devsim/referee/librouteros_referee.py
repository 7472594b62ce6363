"""Interop referee: a third-party RouterOS client (librouteros) against devsim.

Logs in over API and API-SSL (certificate checked against the manifest's SHA-256
fingerprint) and runs print/add/set/remove, asserting the replies. Exits non-zero on any
failure. Usage: librouteros_referee.py MANIFEST.json
"""
import hashlib
import json
import ssl
import sys

from librouteros import connect
from librouteros.exceptions import TrapError
from librouteros.login import plain


def pinned_wrapper(expected_hex):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # verified below by fingerprint

    def wrap(sock):
        s = ctx.wrap_socket(sock)
        der = s.getpeercert(binary_form=True)
        got = hashlib.sha256(der).hexdigest()
        if got != expected_hex:
            raise SystemExit(f"certificate fingerprint {got} != manifest {expected_hex}")
        return s

    return wrap


def exercise(api, label):
    ident = tuple(api.path("system", "identity"))
    assert ident and ident[0]["name"].startswith("devsim-"), ident
    res = tuple(api.path("system", "resource"))
    assert "uptime" in res[0] and "version" in res[0], res

    addrs = api.path("ip", "address")
    before = len(tuple(addrs))
    new_id = addrs.add(address="10.77.0.1/24", interface="ether2", comment=f"referee {label}")
    assert str(new_id).startswith("*"), new_id
    rows = [r for r in addrs if r[".id"] == new_id]
    assert len(rows) == 1 and rows[0]["address"] == "10.77.0.1/24", rows
    assert rows[0]["disabled"] is False, rows  # API booleans are true/false

    addrs.update(**{".id": new_id, "comment": "changed by referee"})
    rows = [r for r in addrs if r[".id"] == new_id]
    assert rows[0]["comment"] == "changed by referee", rows

    try:
        addrs.add(address="10.77.0.1/24", interface="ether2")
        raise SystemExit("duplicate address was accepted")
    except TrapError as e:
        assert "already have such address" in str(e), e

    addrs.remove(new_id)
    assert len(tuple(addrs)) == before
    try:
        addrs.remove(new_id)
        raise SystemExit("removing a removed item succeeded")
    except TrapError as e:
        assert "no such item" in str(e), e
    print(f"librouteros {label}: ok")


def main():
    with open(sys.argv[1]) as f:
        manifest = json.load(f)
    failures = 0
    for dev in manifest[:2]:
        host, port = dev["api"].rsplit(":", 1)
        api = connect(host=host, port=int(port), username=dev["username"],
                      password=dev["password"], login_method=plain)
        exercise(api, f"device {dev['id']} api ({dev['version']})")
        api.close()
        host, port = dev["api_ssl"].rsplit(":", 1)
        api = connect(host=host, port=int(port), username=dev["username"],
                      password=dev["password"], login_method=plain,
                      ssl_wrapper=pinned_wrapper(dev["tls_sha256"]))
        exercise(api, f"device {dev['id']} api-ssl ({dev['version']})")
        api.close()
        try:
            connect(host=host, port=int(dev["api"].rsplit(":", 1)[1]), username=dev["username"],
                    password="wrong", login_method=plain)
            failures += 1
            print("wrong password accepted")
        except TrapError as e:
            assert "invalid user name or password" in str(e), e
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
