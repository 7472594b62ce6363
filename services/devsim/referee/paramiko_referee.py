"""Interop referee: a third-party SSH/SFTP client (paramiko) against devsim.

For every device of the manifest (a RouterOS 7 and a RouterOS 6 one): connects with the host
key checked against the manifest's `ssh_host_key_sha256` (SHA-256 of the key's SSH wire
encoding; a wrong pin must fail), logs in with the password (a wrong one must fail) and with
an Ed25519 key authorized through the control API, and drives the RouterOS console over
`exec`: `/export` (header `# <date> <time> by RouterOS <version>`, the date format of the
version: `mmm/dd/yyyy` before 7.10, ISO from 7.10; `terse` puts the full menu path on every
line; the other version's sensitivity flag is refused), an SFTP upload of a script then
`/import file-name=` (checked through `/export terse`), `/system backup save` (v7 in the
slash form, v6 in the space form) then an SFTP download whose size must equal SFTP stat and
`/file print`, file removal over exec and SFTP, and the interactive shell (prompt
`[user@identity] > `, a command, `quit`). ROUTEROS-NOTES §5.9-§5.11, §6, §7.

Prints `referee-paramiko: N passed, M failed`; exits non-zero on any failure.
Usage: paramiko_referee.py MANIFEST.json CONTROL_URL
"""
import base64
import hashlib
import io
import json
import re
import socket
import sys
import time
import traceback
import urllib.request

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

OLD_DATE = r"[a-z]{3}/\d{2}/\d{4}"
ISO_DATE = r"\d{4}-\d{2}-\d{2}"


class Pinned(paramiko.MissingHostKeyPolicy):
    """Accepts the host key only if its SHA-256 (wire encoding) is the expected one."""

    def __init__(self, expected_hex):
        self.expected = expected_hex

    def missing_host_key(self, client, hostname, key):
        got = hashlib.sha256(key.asbytes()).hexdigest()
        if got != self.expected:
            raise paramiko.SSHException(f"host key SHA256 {got} != manifest {self.expected}")
        # the same 32 bytes as OpenSSH's `SHA256:` fingerprint
        b64 = base64.b64encode(bytes.fromhex(got)).decode().rstrip("=")
        assert key.fingerprint == f"SHA256:{b64}", key.fingerprint


def host_port(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def ssh(dev, pin=None, **auth):
    host, port = host_port(dev["ssh"])
    c = paramiko.SSHClient()
    c.set_missing_host_key_policy(Pinned(pin or dev["ssh_host_key_sha256"]))
    if not auth:
        auth = {"username": dev["username"], "password": dev["password"]}
    c.connect(host, port, look_for_keys=False, allow_agent=False, timeout=10,
              banner_timeout=10, auth_timeout=10, **auth)
    return c


def run(c, cmd):
    _, out, _ = c.exec_command(cmd, timeout=30)
    text = out.read().decode()
    status = out.channel.recv_exit_status()
    assert status == 0, (cmd, status, text)
    return text


def iso_dates(version):
    major, minor = (int(x) for x in re.findall(r"\d+", version)[:2])
    return (major, minor) >= (7, 10)


def check_export(c, dev):
    version = dev["version"]
    date = ISO_DATE if iso_dates(version) else OLD_DATE
    out = run(c, "/export")
    first = out.splitlines()[0]
    assert re.fullmatch(rf"# {date} \d{{2}}:\d{{2}}:\d{{2}} by RouterOS {re.escape(version)}",
                        first), (version, first)
    assert "\n/ip address\n" in out, out[:400]
    terse = run(c, "/export terse")
    assert terse.splitlines()[0].split(" by ")[1] == first.split(" by ")[1], terse[:200]
    body = [l for l in terse.splitlines() if l and not l.startswith("#")]
    assert body and all(l.startswith("/") and not l.endswith("\\") for l in body), body[:5]
    assert any(l.startswith("/ip address add ") for l in body), body
    v7 = version.startswith("7")
    wrong = "hide-sensitive" if v7 else "show-sensitive"
    assert run(c, f"/export {wrong}") == "expected end of command (line 1 column 9)\n", wrong
    right = "show-sensitive" if v7 else "hide-sensitive"
    assert run(c, f"/export {right}").startswith("# "), right
    assert run(c, "nosuchcommand").startswith("bad command name nosuchcommand")


def check_import(c, sftp, dev):
    script = (
        "/ip address\n"
        "add address=10.88.0.1/24 comment=referee-paramiko interface=ether2\n"
        f"/system identity set name=referee-{dev['id']}\n"
    )
    with sftp.open("referee.rsc", "w") as f:
        f.write(script)
    assert sftp.stat("referee.rsc").st_size == len(script)
    out = run(c, "/import file-name=referee.rsc")
    assert out == "Script file loaded and executed successfully\n", out
    terse = run(c, "/export terse")
    assert ("/ip address add address=10.88.0.1/24 comment=referee-paramiko interface=ether2"
            in terse.splitlines()), terse
    assert f"/system identity set name=referee-{dev['id']}" in terse.splitlines(), terse
    # a failing import names the failing line
    with sftp.open("referee-bad.rsc", "w") as f:
        f.write("/ip address add address=10.88.0.1/24 interface=ether2\n")
    out = run(c, "/import file-name=referee-bad.rsc")
    assert "(line 1 column" in out and "already have such address" in out, out


def file_print_size(c, name):
    table = run(c, "/file print")
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["#", "NAME", "TYPE", "SIZE"], table
    for l in lines[1:]:
        cols = l.split()
        if cols[1] == name:
            return int(cols[3]), cols[2]
    raise AssertionError(f"{name} not in /file print:\n{table}")


def check_backup(c, sftp, dev):
    v7 = dev["version"].startswith("7")
    cmd = ("/system/backup/save" if v7 else "/system backup save") + " name=referee-backup"
    out = run(c, cmd)
    assert out == "Configuration backup saved\n", out
    size = sftp.stat("referee-backup.backup").st_size
    buf = io.BytesIO()
    sftp.getfo("referee-backup.backup", buf)
    data = buf.getvalue()
    assert len(data) == size > 0, (len(data), size)
    printed, kind = file_print_size(c, "referee-backup.backup")
    assert printed == size and kind == "backup", (printed, kind, size)
    # binary upload round trip
    blob = bytes((i * 7 + i // 256) % 256 for i in range(100_000))
    sftp.putfo(io.BytesIO(blob), "referee.bin")
    buf = io.BytesIO()
    sftp.getfo("referee.bin", buf)
    assert buf.getvalue() == blob


def check_remove(c, sftp, dev):
    assert run(c, "/file remove referee.rsc") == ""
    assert run(c, "/file remove [find name=referee-bad.rsc]") == ""
    sftp.remove("referee-backup.backup")
    sftp.remove("referee.bin")
    names = sftp.listdir("/")
    for n in ("referee.rsc", "referee-bad.rsc", "referee-backup.backup", "referee.bin"):
        assert n not in names, names
    assert "referee" not in run(c, "/file print")


class Terminal:
    """What an interactive channel printed, read up to a marker at a time."""

    def __init__(self, chan):
        self.chan = chan
        self.buf = b""

    def read_until(self, what, timeout=10):
        marker = what.encode()
        deadline = time.time() + timeout
        while marker not in self.buf:
            if time.time() > deadline:
                raise AssertionError(f"no {what!r} in {self.buf!r}")
            if self.chan.recv_ready():
                self.buf += self.chan.recv(65536)
            else:
                time.sleep(0.02)
        end = self.buf.index(marker) + len(marker)
        seen, self.buf = self.buf[:end], self.buf[end:]
        return seen.decode()


def check_shell(c, dev):
    chan = c.invoke_shell(width=200)
    term = Terminal(chan)
    prompt = f"[{dev['username']}@referee-{dev['id']}] > "
    term.read_until(prompt)
    chan.send("/system backup save name=shell dont-encrypt=yes\r")
    # a terminal echoes what is typed, then the output, then the prompt again
    seen = term.read_until(prompt)
    assert "/system backup save name=shell dont-encrypt=yes\r\n" in seen, seen
    assert "Configuration backup saved\r\n" in seen, seen
    chan.send("/file remove shell.backup\r")
    term.read_until(prompt)
    chan.send("quit\r")
    assert chan.recv_exit_status() == 0
    assert "shell.backup" not in run(c, "/file print")


def check_refusals(dev, other):
    try:
        ssh(dev, password="wrong", username=dev["username"])
        raise AssertionError("wrong password accepted")
    except paramiko.AuthenticationException:
        pass
    try:
        ssh(dev, pin=other["ssh_host_key_sha256"]).close()
        raise AssertionError("a host key that is not the pinned one was accepted")
    except paramiko.SSHException as e:
        assert "host key SHA256" in str(e), e


def check_key_login(dev, control):
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                            serialization.NoEncryption()).decode()
    pkey = paramiko.Ed25519Key.from_private_key(io.StringIO(pem))
    try:
        ssh(dev, username=dev["username"], pkey=pkey)
        raise AssertionError("a key nobody authorized was accepted")
    except paramiko.AuthenticationException:
        pass
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()
    body = json.dumps({"user": dev["username"], "key": f"{line} referee@paramiko"}).encode()
    req = urllib.request.Request(f"{control}/devices/{dev['id']}/ssh-keys", data=body,
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 204, r.status
    c = ssh(dev, username=dev["username"], pkey=pkey)
    assert run(c, "/export").startswith("# ")
    c.close()


def main():
    with open(sys.argv[1]) as f:
        manifest = json.load(f)
    control = sys.argv[2].rstrip("/")
    devices = manifest[:2]
    majors = sorted(d["version"].split(".")[0] for d in devices)
    assert majors == ["6", "7"], majors
    passed = failed = 0

    def check(label, fn, *args):
        nonlocal passed, failed
        try:
            fn(*args)
            passed += 1
            print(f"paramiko {label}: ok")
        except Exception:  # noqa: BLE001 - a referee reports every failure
            failed += 1
            print(f"paramiko {label}: FAILED")
            traceback.print_exc()

    for k, dev in enumerate(devices):
        other = devices[1 - k]
        label = f"device {dev['id']} ({dev['version']})"
        socket.create_connection(host_port(dev["ssh"]), timeout=5).close()
        c = ssh(dev)
        sftp = c.open_sftp()
        check(f"{label} export", check_export, c, dev)
        check(f"{label} sftp upload + /import", check_import, c, sftp, dev)
        check(f"{label} backup save + sftp download", check_backup, c, sftp, dev)
        check(f"{label} file remove", check_remove, c, sftp, dev)
        check(f"{label} interactive shell", check_shell, c, dev)
        check(f"{label} wrong password and wrong host key", check_refusals, dev, other)
        check(f"{label} authorized ed25519 key", check_key_login, dev, control)
        sftp.close()
        c.close()
    print(f"referee-paramiko: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
