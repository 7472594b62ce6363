"""Interop referee: a third-party RouterOS client (librouteros) against devsim.

Logs in over API and API-SSL (certificate checked against the manifest's SHA-256
fingerprint) and runs print/add/set/remove, asserting the replies. Then checks who-changed
records: a change made through librouteros appears in /system/history with `by` = the
librouteros login user (the manifest's user, and a second RouterOS user added for the
purpose), with the row shape and the time format of the device's version
(ROUTEROS-NOTES §4.3, §5.14), and /user/active lists the live sessions (§5.16).
Exits non-zero on any failure. Usage: librouteros_referee.py MANIFEST.json
"""
import hashlib
import json
import re
import ssl
import sys
import time

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


# RouterOS prints dates as `nov/24/2016 21:07:05` up to 7.9 and `2023-07-14 21:07:05` from
# 7.10 (ROUTEROS-NOTES §4.3).
OLD_TIME = re.compile(r"^[a-z]{3}/\d{2}/\d{4} \d{2}:\d{2}:\d{2}$")
ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def iso_dates(version):
    major, minor = (int(x) for x in re.findall(r"\d+", version)[:2])
    return (major, minor) >= (7, 10)


def newest_history(api):
    rows = tuple(api.path("system", "history"))
    assert rows, "empty /system/history after a change"
    return rows[0]


def check_history_row(row, by, action, version):
    for key in (".id", "action", "by", "policy", "time"):
        assert key in row, (key, row)
    assert str(row[".id"]).startswith("*"), row
    assert row["by"] == by, (by, row)
    assert row["action"] == action, (action, row)
    assert row["policy"] == "write", row
    pattern = ISO_TIME if iso_dates(version) else OLD_TIME
    assert pattern.match(row["time"]), (version, row["time"])
    assert row.get("undoable") is True, row  # API booleans are true/false


def who_changed(api, dev, label):
    """A change through librouteros is recorded with the login user as `by`."""
    version = dev["version"]
    rules = api.path("ip", "firewall", "filter")
    rule = rules.add(chain="forward", action="drop", comment="referee who-changed")
    check_history_row(newest_history(api), dev["username"], "filter rule added", version)
    rules.remove(rule)

    # A second RouterOS user, logged in through librouteros too.
    users = api.path("user")
    user_id = users.add(name="referee", group="full", password="referee-pw")
    host, port = dev["api"].rsplit(":", 1)
    other = connect(host=host, port=int(port), username="referee", password="referee-pw",
                    login_method=plain)
    other.path("ip", "address").add(address="10.78.0.1/24", interface="ether2",
                                    comment="referee by second user")
    row = newest_history(api)
    check_history_row(row, "referee", "address added", version)
    assert newest_history(other)[".id"] == row[".id"]

    active = tuple(api.path("user", "active"))
    names = sorted(r["name"] for r in active)
    assert names == sorted([dev["username"], "referee"]), active
    pattern = ISO_TIME if iso_dates(version) else OLD_TIME
    for r in active:
        for key in (".id", "when", "name", "address", "via", "group"):
            assert key in r, (key, r)
        assert r["via"] == "api" and r["address"] == "127.0.0.1", r
        assert pattern.match(r["when"]), (version, r["when"])
    other.close()
    for _ in range(50):
        names = [r["name"] for r in api.path("user", "active")]
        if "referee" not in names:
            break
        time.sleep(0.05)
    assert "referee" not in names, names
    users.remove(user_id)
    print(f"librouteros {label}: /system/history and /user/active ok")


def main():
    with open(sys.argv[1]) as f:
        manifest = json.load(f)
    failures = 0
    for dev in manifest[:2]:
        host, port = dev["api"].rsplit(":", 1)
        api = connect(host=host, port=int(port), username=dev["username"],
                      password=dev["password"], login_method=plain)
        exercise(api, f"device {dev['id']} api ({dev['version']})")
        who_changed(api, dev, f"device {dev['id']} api ({dev['version']})")
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
