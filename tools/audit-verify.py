#!/usr/bin/env python3
"""Independent verifier for Netledger audit bundles (format netledger-audit-bundle/2).

Written from docs/auditing.md alone (no look at the Rust implementation), so that
its agreement with `netledger audit verify` shows the document is complete. Section
numbers in names and comments (§4.1, §7.3, ...) refer to that document.

    audit-verify.py BUNDLE --trusted-key KEY [--trusted-key KEY]... [--trusted-keys FILE]
    audit-verify.py --self-test      # checks the §4.2 worked example and the §3.1 stub example

KEY is a 64-hex ed25519 public key, `SHA256:<64 hex>` or `<key id>=<64 hex>`. Exit status:
0 `OK: ...`, 1 `TAMPERED at position N: ...` / `TAMPERED in member NAME: ...`, 2 error.
Needs Python 3.11, the `cryptography` package and the `git` command.
"""
import argparse
import datetime
import hashlib
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import uuid
from decimal import Decimal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FORMAT = "netledger-audit-bundle/2"
ZEROS = "0" * 64
MEMBERS = ["manifest.json", "events.jsonl", "checkpoints.jsonl", "keys.json",
           "external-checkpoint.json", "config.bundle"]            # §1, in archive order
REQUIRED = ["manifest.json", "events.jsonl", "checkpoints.jsonl", "keys.json"]
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
LOWER_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HEX64 = re.compile(r"[0-9a-f]{64}")  # §4: hex in events and checkpoints is lowercase
ANY_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
LOWER_HEX64 = re.compile(r"[0-9a-f]{64}")
HEX128 = re.compile(r"[0-9a-f]{128}")
KEY_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,100}")
TIME_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\.([0-9]{6})Z")
I64 = (-2**63, 2**63 - 1)


class Tampered(Exception):
    """A finding: `TAMPERED at position N` (position given) or `in member NAME`."""

    def __init__(self, detail, position=None, member=None):
        super().__init__(detail)
        self.detail, self.position, self.member = detail, position, member

    def line(self):
        where = f"at position {self.position}" if self.member is None else f"in member {self.member}"
        return f"TAMPERED {where}: {self.detail}"


class Fatal(Exception):
    """The verifier could not run (exit 2)."""


class NotCanonical(ValueError):
    pass


# ---------------------------------------------------------------- §4.1 canonical JSON

def canonical_number(x: float) -> str:
    """§4.1 rule for non-integers: shortest round-trip digits d1..dn and k, value = 0.d1..dn × 10^k."""
    if not math.isfinite(x):
        raise NotCanonical(f"{x} is not a finite double")
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    _, digits, exp = Decimal(repr(abs(x))).as_tuple()
    k = len(digits) + exp
    ds = "".join(map(str, digits)).rstrip("0")
    n, sign = len(ds), "-" if x < 0 else ""
    if -5 < k <= 16:
        if k <= 0:
            return f"{sign}0.{'0' * -k}{ds}"
        if k >= n:
            return f"{sign}{ds}{'0' * (k - n)}.0"
        return f"{sign}{ds[:k]}.{ds[k:]}"
    return f"{sign}{ds[0]}{'.' + ds[1:] if n > 1 else ''}e{'+' if k >= 1 else '-'}{abs(k - 1)}"


def canonical_integer(i: int) -> str:
    if -2**63 <= i <= 2**64 - 1:
        return str(i)
    return canonical_number(float(i))  # outside the integer range it is a double (§4.1)


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
_TO_ESCAPE = re.compile(r'["\\\x00-\x1f]')


def canonical_string(s: str) -> str:
    return '"' + _TO_ESCAPE.sub(lambda m: _ESCAPES.get(m[0]) or f"\\u{ord(m[0]):04x}", s) + '"'


def canonical_text(v) -> str:
    if v is None:
        return "null"
    if v is True or v is False:
        return "true" if v else "false"
    if isinstance(v, int):
        return canonical_integer(v)
    if isinstance(v, float):
        return canonical_number(v)
    if isinstance(v, str):
        return canonical_string(v)
    if isinstance(v, list):
        return "[" + ",".join(canonical_text(x) for x in v) + "]"
    items = sorted(v.items(), key=lambda kv: kv[0].encode("utf-8"))
    return "{" + ",".join(canonical_string(k) + ":" + canonical_text(x) for k, x in items) + "}"


def canonical(v) -> bytes:
    try:
        return canonical_text(v).encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate from a \ud800 escape
        raise NotCanonical("string is not valid Unicode") from e


def _object(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise NotCanonical(f"duplicate key {k!r}")
        obj[k] = v
    return obj


def _integer(token):
    value = int(token)
    if canonical_integer(value) != token:
        raise NotCanonical(f"number {token} is not canonical")
    return value


def _double(token):
    value = float(token)
    if canonical_number(value) != token:
        raise NotCanonical(f"number {token} is not canonical ({canonical_number(value)})")
    return value


def _constant(token):
    raise NotCanonical(f"{token} is not JSON")


def parse_json(data: bytes, canonical_numbers=True):
    """Strict JSON: UTF-8, unique keys, no NaN/Infinity; number tokens canonical (§4.1) if asked."""
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_object, parse_constant=_constant,
                          parse_int=_integer if canonical_numbers else int,
                          parse_float=_double if canonical_numbers else float)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise NotCanonical(str(e)) from e


def parse_canonical(data: bytes):
    """§4.1: parse, re-serialise canonically and require the same bytes."""
    value = parse_json(data)
    if canonical(value) != data:
        raise NotCanonical("not canonical JSON")
    return value


# ---------------------------------------------------------------- §4 an event's hash

def u32(n):
    return struct.pack(">I", n)


def i64(n):
    return struct.pack(">q", n)


def u64(n):
    return struct.pack(">Q", n)


def str_(s):
    b = s.encode("utf-8")
    return u32(len(b)) + b


def uuid_(s):
    return uuid.UUID(s).bytes


def hex32(s):
    return bytes.fromhex(s)


def micros(t: str) -> int:
    """Microseconds since 1970-01-01T00:00:00Z of a `YYYY-MM-DDTHH:MM:SS.ffffffZ` time."""
    m = TIME_RE.fullmatch(t)
    dt = datetime.datetime(*map(int, m.groups()), tzinfo=datetime.timezone.utc)
    return (dt - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)) // datetime.timedelta(microseconds=1)


def event_hash_parts(e):
    content_bytes = (b"NLEC1" + uuid_(e["tenant_id"]) + str_(e["stream"]) + uuid_(e["event_id"])
                     + str_(e["event_type"]) + u32(e["schema_version"])
                     + str_(canonical(e["metadata"]).decode()) + str_(canonical(e["payload"]).decode()))
    content_hash = hashlib.sha256(content_bytes).digest()
    chain_bytes = (b"NLEV2" + hex32(e["prev_hash"]) + i64(e["position"]) + i64(e["tenant_prev_position"])
                   + i64(e["version"]) + i64(micros(e["recorded_at"])) + content_hash)
    return content_bytes, content_hash, chain_bytes, hashlib.sha256(chain_bytes).hexdigest()


def chain_hash(e, content_hash: bytes) -> str:
    """§4 hash from an event's placement and a content hash (for a §3.1 stub: its own)."""
    chain_bytes = (b"NLEV2" + hex32(e["prev_hash"]) + i64(e["position"]) + i64(e["tenant_prev_position"])
                   + i64(e["version"]) + i64(micros(e["recorded_at"])) + content_hash)
    return hashlib.sha256(chain_bytes).hexdigest()


def event_hash(e) -> str:
    if is_stub(e):
        return chain_hash(e, hex32(e["content_hash"]))
    return event_hash_parts(e)[3]


def is_stub(e) -> bool:
    """§3: a line with `content_hash` is a hash-only stub (§3.1)."""
    return "content_hash" in e


# ---------------------------------------------------------------- §3, §5, §6 shapes

def is_int(v, lo=I64[0], hi=I64[1]):
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def is_time(v):
    if not isinstance(v, str) or not TIME_RE.fullmatch(v):
        return False
    try:
        micros(v)
        return True
    except ValueError:
        return False


def matches(rx):
    return lambda v: isinstance(v, str) and rx.fullmatch(v) is not None


def is_str(v):
    return isinstance(v, str)


def check_shape(obj, fields, optional=(), exact=True):
    """Problem with a JSON object's keys and value types, or None."""
    if not isinstance(obj, dict):
        return "not a JSON object"
    for k, ok in fields.items():
        if k not in obj:
            if k in optional:
                continue
            return f"missing key {k!r}"
        if not ok(obj[k]):
            return f"bad value for {k!r}"
    extra = sorted(set(obj) - set(fields))
    return f"unexpected key {extra[0]!r}" if exact and extra else None


EVENT_FIELDS = {  # §3
    "event_id": matches(LOWER_UUID_RE), "event_type": is_str, "hash": matches(LOWER_HEX64),
    "metadata": lambda v: isinstance(v, dict), "payload": lambda v: True, "position": is_int,
    "prev_hash": matches(HEX64), "recorded_at": is_time, "schema_version": lambda v: is_int(v, 0, 2**32 - 1),
    "stream": is_str, "tenant_id": matches(UUID_RE), "tenant_prev_position": is_int, "version": is_int,
}
STUB_FIELDS = {  # §3.1
    "content_hash": matches(LOWER_HEX64), "hash": matches(LOWER_HEX64), "position": is_int,
    "prev_hash": matches(HEX64), "recorded_at": is_time, "stream": is_str, "tenant_prev_position": is_int,
    "version": is_int,
}
HEAD_FIELDS = {"hash": matches(HEX64), "position": is_int, "stream": is_str, "version": is_int}
HANDOVER_FIELDS = {  # §6
    "at": is_time, "from_key_id": matches(KEY_ID_RE), "from_public_key": matches(HEX64),
    "from_signature": matches(HEX128), "to_key_id": matches(KEY_ID_RE), "to_public_key": matches(HEX64),
    "to_signature": matches(HEX128),
}
CHECKPOINT_FIELDS = {  # §5
    "tenant_id": matches(UUID_RE), "seq": is_int, "from_position": is_int, "to_position": is_int,
    "event_count": is_int, "prev_digest": matches(HEX64),
    "heads": lambda v: isinstance(v, list) and all(check_shape(h, HEAD_FIELDS) is None for h in v),
    "digest": matches(HEX64), "key_id": matches(KEY_ID_RE), "signature": matches(HEX128),
    "handover": lambda v: check_shape(v, HANDOVER_FIELDS) is None,
}
KEY_FIELDS = {"key_id": is_str, "public_key": matches(ANY_HEX64)}  # §7.1 step 4: other fields not checked

P25519 = 2**255 - 19
D25519 = -121665 * pow(121666, P25519 - 2, P25519) % P25519


def is_ed25519_point(b: bytes) -> bool:
    """RFC 8032 §5.1.3 point decoding succeeds."""
    y = int.from_bytes(b, "little")
    sign, y = y >> 255, y & (2**255 - 1)
    if y >= P25519:
        return False
    x2 = (y * y - 1) * pow(D25519 * y * y + 1, P25519 - 2, P25519) % P25519
    if x2 == 0:
        return sign == 0
    x = pow(x2, (P25519 + 3) // 8, P25519)
    if (x * x - x2) % P25519:
        x = x * pow(2, (P25519 - 1) // 4, P25519) % P25519
    return (x * x - x2) % P25519 == 0


def ed25519_ok(public_hex, signature_hex, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(hex32(public_hex)).verify(bytes.fromhex(signature_hex), message)
        return True
    except (InvalidSignature, ValueError):
        return False


# ---------------------------------------------------------------- the archive

class Archive:
    """The tar members (first occurrence of each name) and streamed reads of them."""

    def __init__(self, path):
        try:
            self.tar = tarfile.open(path, "r:")
            self.members = self.tar.getmembers()
            self.tar.fileobj.seek(self.tar.offset)  # tarfile stops quietly at a bad header: what follows
            if any(self.tar.fileobj.read(tarfile.BLOCKSIZE)):  # the last member must be the end marker
                raise tarfile.HeaderError(f"bad tar header at offset {self.tar.offset}")
        except (OSError, tarfile.TarError) as e:
            raise Fatal(f"cannot read {path} as an uncompressed tar archive: {e}") from e
        self.by_name = {}
        for m in self.members:
            self.by_name.setdefault(m.name, m)

    def has(self, name):
        m = self.by_name.get(name)
        return m is not None and m.isfile()

    def open(self, name):
        try:
            return self.tar.extractfile(self.by_name[name])
        except (OSError, tarfile.TarError) as e:
            raise Fatal(f"cannot read member {name}: {e}") from e

    def read(self, name):
        with self.open(name) as f:
            return f.read()

    def sha256(self, name):
        h = hashlib.sha256()
        with self.open(name) as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    def lines(self, name):
        """(line number, line bytes without the newline), streamed."""
        with self.open(name) as f:
            for n, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    raise Tampered(f"line {n}: not terminated by a newline", member=name)
                yield n, line[:-1]


# ---------------------------------------------------------------- §7.1 members

def check_manifest(ar):
    """§7.1 step 1: the manifest is the first member, a JSON object of format /2."""
    def bad(detail):
        return Tampered(detail, member="manifest.json")
    if not ar.has("manifest.json"):
        raise bad("missing")
    if ar.members[0].name != "manifest.json":
        raise bad("not the first member")
    try:
        manifest = parse_json(ar.read("manifest.json"), canonical_numbers=False)
    except NotCanonical as e:
        raise bad(f"does not parse: {e}") from e
    if not isinstance(manifest, dict):
        raise bad("not a JSON object")
    if "format" not in manifest:
        raise bad("no format")
    if manifest["format"] != FORMAT:
        raise Fatal(f"unsupported bundle format {manifest['format']!r} (this verifier reads {FORMAT})")
    rng = manifest.get("range")
    problem = (check_shape(manifest, {"members": lambda v: isinstance(v, list), "tenant_id": matches(UUID_RE),
                                      "range": lambda v: isinstance(v, dict)}, exact=False)
               or check_shape(rng, {"from_position": is_int, "to_position": lambda v: v is None or is_int(v)},
                              exact=False))
    if problem:
        raise bad(problem)
    return manifest


def check_listed_members(ar, manifest):
    """§7.1 step 2: each listed member exists with the given size and SHA-256."""
    entry_fields = {"name": is_str, "bytes": lambda v: is_int(v, 0), "sha256": matches(LOWER_HEX64)}
    for entry in manifest["members"]:
        problem = check_shape(entry, entry_fields, exact=False)
        if problem:
            raise Tampered(f"members entry: {problem}", member="manifest.json")
        name = entry["name"]
        if not ar.has(name):
            raise Tampered("listed in the manifest but not in the archive", member=name)
        if ar.by_name[name].size != entry["bytes"]:
            raise Tampered(f"{ar.by_name[name].size} bytes, manifest says {entry['bytes']}", member=name)
        if ar.sha256(name) != entry["sha256"]:
            raise Tampered("SHA-256 differs from the manifest", member=name)


def check_archive_members(ar, manifest):
    """§7.1 step 3: no unlisted, duplicate, unknown or non-file member; required ones present."""
    listed = [e["name"] for e in manifest["members"]]
    seen = set()
    for i, m in enumerate(ar.members):
        if m.name not in MEMBERS or not m.isfile():
            raise Tampered("not a member of the format", member=m.name)
        if m.name in seen:
            raise Tampered("given twice in the archive", member=m.name)
        seen.add(m.name)
        if i > 0 and m.name not in listed:
            raise Tampered("not listed in the manifest", member=m.name)
    for i, name in enumerate(listed):
        if name in listed[:i]:
            raise Tampered("given twice in the manifest", member=name)
    for name in REQUIRED:
        if name not in seen:
            raise Tampered("required member missing", member=name)


def parse_keys(ar):
    """§7.1 step 4, keys.json (§6): {key id: entry}."""
    def bad(detail):
        return Tampered(detail, member="keys.json")
    try:
        doc = parse_json(ar.read("keys.json"), canonical_numbers=False)
    except NotCanonical as e:
        raise bad(f"does not parse: {e}") from e
    problem = check_shape(doc, {"keys": lambda v: isinstance(v, list)}, exact=False)
    if problem:
        raise bad(problem)
    keys = {}
    for n, k in enumerate(doc["keys"], 1):
        problem = check_shape(k, KEY_FIELDS, exact=False)
        if problem:
            raise bad(f"key {n}: {problem}")
        if k["key_id"] in keys:
            raise bad(f"key id {k['key_id']} given twice")
        if not is_ed25519_point(hex32(k["public_key"])):
            raise bad(f"key {k['key_id']}: not an ed25519 public key")
        keys[k["key_id"]] = k
    return keys


def parse_checkpoints(ar):
    """§7.1 step 4, checkpoints.jsonl (§5)."""
    checkpoints = []
    for n, line in ar.lines("checkpoints.jsonl"):
        try:
            c = parse_canonical(line)
        except NotCanonical as e:
            raise Tampered(f"line {n}: {e}", member="checkpoints.jsonl") from e
        problem = check_shape(c, CHECKPOINT_FIELDS, optional=("handover",))
        if problem:
            raise Tampered(f"line {n}: {problem}", member="checkpoints.jsonl")
        checkpoints.append(c)
    return checkpoints


def parse_external(ar):
    """§7.1 step 4, external-checkpoint.json (§7.4), when present."""
    if not ar.has("external-checkpoint.json"):
        return None
    try:
        doc = parse_json(ar.read("external-checkpoint.json"), canonical_numbers=False)
        canonical(doc)  # its strings are valid Unicode
    except NotCanonical as e:
        raise Tampered(f"does not parse: {e}", member="external-checkpoint.json") from e
    problem = check_shape(doc, {"checkpoint": lambda v: check_shape(v, CHECKPOINT_FIELDS, ("handover",)) is None,
                                "source": is_str}, exact=False)
    if problem:
        raise Tampered(problem, member="external-checkpoint.json")
    return doc["checkpoint"]


def parse_event(n, line):
    """§3: one line of events.jsonl."""
    try:
        e = parse_canonical(line)
    except NotCanonical as err:
        raise Tampered(f"line {n}: {err}", member="events.jsonl") from err
    problem = check_shape(e, STUB_FIELDS if isinstance(e, dict) and is_stub(e) else EVENT_FIELDS)
    if problem:
        raise Tampered(f"line {n}: {problem}", member="events.jsonl")
    return e


def device_filter(manifest):
    """§2/§7.1 step 3: the manifest's `devices` as a set of ids, or None without a filter."""
    devices = manifest.get("devices")
    if devices is None:
        return None
    if not isinstance(devices, list) or not all(matches(LOWER_UUID_RE)(d) for d in devices):
        raise Tampered("devices is not null or an array of lowercase hyphenated UUIDs", member="manifest.json")
    return set(devices)


def withheld(stream, devices):
    """§3.1: the filter withholds `device-<lowercase uuid>` streams of devices it does not list."""
    m = WITHHELD_STREAM.fullmatch(stream)
    return devices is not None and m is not None and m[1] not in devices


def check_events_parse(ar):
    """§7.1 step 4, events.jsonl: a first streamed pass, before any event is judged."""
    for n, line in ar.lines("events.jsonl"):
        parse_event(n, line)


def check_pins(keys, pins):
    """§7.1 step 5: at least one pinned key is the public key of an entry of keys.json."""
    if not any(pin_matches(pin, k) for pin in pins for k in keys.values()):
        raise Tampered("the bundle does not hold a pinned key", member="keys.json")


def pin_matches(pin, key):
    kind, value = pin
    public = hex32(key["public_key"])
    return public.hex() == value if kind == "public" else hashlib.sha256(public).hexdigest() == value


# ---------------------------------------------------------------- §8 configuration history

class ConfigHistory:
    """config.bundle unpacked into a temporary bare repository, read by one `git cat-file --batch`."""

    def __init__(self, ar, tmp):
        self.proc = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        self.env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0")
        bundle, self.repo = os.path.join(tmp, "config.bundle"), os.path.join(tmp, "config.git")
        with ar.open("config.bundle") as src, open(bundle, "wb") as dst:
            shutil.copyfileobj(src, dst)
        self.git("init", "-q", "--bare", self.repo)
        try:
            self.git("-C", self.repo, "fetch", "-q", bundle, "refs/heads/main:refs/heads/main")
        except Fatal as e:
            raise Tampered(f"git cannot read it: {e}", member="config.bundle") from e

    def git(self, *args):
        try:
            r = subprocess.run(["git", *args], env=self.env, capture_output=True)
        except OSError as e:
            raise Fatal(f"cannot run git: {e}") from e
        if r.returncode:
            raise Fatal(r.stderr.decode(errors="replace").strip())

    def object(self, name):
        """(type, content) of a git object name, or None when missing."""
        if self.proc is None:
            self.proc = subprocess.Popen(["git", "-C", self.repo, "cat-file", "--batch"], env=self.env,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.proc.stdin.write(name.encode() + b"\n")
        self.proc.stdin.flush()
        header = self.proc.stdout.readline().split()
        if len(header) != 3:
            return None
        data = self.proc.stdout.read(int(header[2]))
        self.proc.stdout.read(1)
        return header[1].decode(), data

    def blob_sha256(self, commit, path):
        """SHA-256 hex of `path` in commit `commit`, or None."""
        if not isinstance(commit, str) or not re.fullmatch(r"[0-9a-f]{40}", commit):
            return None
        obj = self.object(commit)
        if obj is None or obj[0] != "commit":
            return None
        obj = self.object(f"{commit}:{path}")
        return hashlib.sha256(obj[1]).hexdigest() if obj and obj[0] == "blob" else None

    def close(self):
        if self.proc:
            self.proc.stdin.close()
            self.proc.wait()


CONFIG_EVENTS = {"ConfigSnapshotRecorded": "sha256", "ConfigDriftDetected": "found_sha256"}
DEVICE_STREAM = re.compile(r"device-(" + UUID_RE.pattern + ")")
WITHHELD_STREAM = re.compile(r"device-(" + LOWER_UUID_RE.pattern + ")")


def check_config_reference(e, config):
    """§7.3 step 8."""
    field, device = CONFIG_EVENTS.get(e["event_type"]), DEVICE_STREAM.fullmatch(e["stream"])
    if field is None or device is None:
        return
    p = e["payload"]
    if not isinstance(p, dict) or not isinstance(p.get("commit"), str) or not isinstance(p.get(field), str):
        raise Tampered(f"config reference without string payload.commit/{field}", position=e["position"])
    path = f"devices/{device[1]}.rsc"
    got = config.blob_sha256(p["commit"], path) if config else None
    if got is None:
        raise Tampered(f"config.bundle does not hold {p['commit']}:{path}", position=e["position"])
    if got != p[field]:
        raise Tampered(f"{p['commit']}:{path} has SHA-256 {got}, the event says {p[field]}", position=e["position"])


# ---------------------------------------------------------------- §7.4 external checkpoint, §7.2 keys

def external_checkpoint(external, checkpoints, manifest):
    """§7.4: the checkpoint list to verify (sorted by seq, stable)."""
    if external is not None:
        same = next((c for c in checkpoints if c["seq"] == external["seq"]), None)
        if same is not None:
            if same != external:
                raise Tampered(f"checkpoint {same['seq']} differs from the external copy",
                               position=same["from_position"])
        elif manifest["range"]["to_position"] is None or manifest["range"]["to_position"] >= external["from_position"]:
            checkpoints = checkpoints + [external]
    return sorted(checkpoints, key=lambda c: c["seq"])


def handover_message(h):
    return (b"NLHO1" + str_(h["from_key_id"]) + hex32(h["from_public_key"]) + str_(h["to_key_id"])
            + hex32(h["to_public_key"]) + i64(micros(h["at"])))


def key_problems(checkpoints, keys, pins):
    """§7.2: the key problem of each checkpoint (or None) and the set of trusted key ids."""
    problems, links, current, retired = [], [], None, set()
    for i, c in enumerate(checkpoints):
        k, h, p = c["key_id"], c.get("handover"), None
        if k not in keys:
            p = f"key {k} is not in keys.json"
        elif i == 0 and h is not None:
            p = "the first checkpoint carries a hand-over"
        elif i > 0 and k == current and h is not None:
            p = "hand-over without a key change"
        elif i > 0 and k != current and k in retired:
            p = f"key {k} is retired"
        elif i > 0 and k != current and h is None:
            p = f"key changes from {current} to {k} without a hand-over"
        elif i > 0 and k != current:
            if h["from_key_id"] != current or h["to_key_id"] != k:
                p = "hand-over does not link the previous key to this one"
            elif h["from_key_id"] not in keys or hex32(h["from_public_key"]) != hex32(keys[current]["public_key"]) \
                    or hex32(h["to_public_key"]) != hex32(keys[k]["public_key"]):
                p = "hand-over public keys differ from keys.json"
            elif not (ed25519_ok(h["from_public_key"], h["from_signature"], handover_message(h))
                      and ed25519_ok(h["to_public_key"], h["to_signature"], handover_message(h))):
                p = "hand-over signature does not verify"
            else:
                links.append((current, k))
        problems.append(p)
        if i == 0 or k != current:
            if i > 0:
                retired.add(current)
            current = k
    trusted = {kid for kid, key in keys.items() if any(pin_matches(pin, key) for pin in pins)}
    grown = True
    while grown:
        grown = False
        for a, b in links:
            if (a in trusted) != (b in trusted):
                trusted |= {a, b}
                grown = True
    return problems, trusted


# ---------------------------------------------------------------- §5 digest, §7.3 history

def checkpoint_digest(c, events_digest: bytes) -> str:
    data = (b"NLCP1" + uuid_(c["tenant_id"]) + i64(c["seq"]) + i64(c["from_position"]) + i64(c["to_position"])
            + i64(c["event_count"]) + hex32(c["prev_digest"]) + u64(len(c["heads"])))
    for h in c["heads"]:
        s = h["stream"].encode("utf-8")
        data += u64(len(s)) + s + i64(h["version"]) + i64(h["position"]) + hex32(h["hash"])
    return hashlib.sha256(data + events_digest).hexdigest()


class Range:
    """The events added to an open checkpoint's range."""

    def __init__(self):
        self.digest, self.streams, self.count, self.last = hashlib.sha256(), {}, 0, None

    def add(self, e):
        self.digest.update(i64(e["position"]) + hex32(e["hash"]))
        self.streams[e["stream"]] = (e["version"], e["position"], e["hash"])
        self.count, self.last = self.count + 1, e["position"]


class History:
    """§7.3 state and its rules."""

    def __init__(self, checkpoints, key_problems, trusted, keys, manifest, config, devices):
        self.cps, self.key_problems, self.trusted, self.keys = checkpoints, key_problems, trusted, keys
        self.tenant, self.config, self.devices, self.stubs = manifest["tenant_id"], config, devices, 0
        self.streams = {}
        self.last = self.before_last = 0
        self.cursor, self.opened, self.range = 0, -1, None
        self.prev_digest, self.prev_to, self.signed_through = ZEROS, 0, 0
        self.problem = None                 # (position, detail): the first checkpoint problem
        self.events = self.unsigned = self.checked = 0

    def open(self):
        """Opening the cursor's checkpoint (once); False when it has (or there is) a problem."""
        if self.opened != self.cursor:
            self.opened, self.range = self.cursor, Range()
            c, i = self.cps[self.cursor], self.cursor
            if c["seq"] != i + 1 or c["prev_digest"] != self.prev_digest or c["from_position"] != self.prev_to + 1:
                p = f"checkpoint {c['seq']}: chain broken"
            elif self.key_problems[i]:
                p = f"checkpoint {c['seq']}: {self.key_problems[i]}"
            elif c["key_id"] not in self.trusted:
                p = f"checkpoint {c['seq']}: untrusted key {c['key_id']}"
            elif not ed25519_ok(self.keys[c["key_id"]]["public_key"], c["signature"], hex32(c["digest"])):
                p = f"checkpoint {c['seq']}: bad signature"
            else:
                p = None
            if p:
                self.problem = (c["from_position"], p)
        return self.problem is None

    def close(self):
        """Closing the cursor's checkpoint: compare it with the events added to its range."""
        c, r = self.cps[self.cursor], self.range
        candidates, with_head = [], set()
        for h in c["heads"]:
            with_head.add(h["stream"])
            got = r.streams.get(h["stream"])
            if got is None:
                candidates.append((h["position"], f"no event of head stream {h['stream']} in the range"))
            elif got != (h["version"], h["position"], h["hash"]):
                pos = h["position"] if got[0] < h["version"] else got[1] if got[0] > h["version"] \
                    else min(h["position"], got[1])
                candidates.append((pos, f"head of {h['stream']} differs from the range's last event"))
        for s in sorted(r.streams, key=lambda s: s.encode("utf-8")):
            if s not in with_head:
                candidates.append((r.streams[s][1], f"stream {s} has events but no head"))
        finding = min(candidates, key=lambda x: x[0]) if candidates else None
        if finding is None and r.count != c["event_count"]:
            finding = (r.last if r.count else c["to_position"], f"{r.count} events, checkpoint says {c['event_count']}")
        if checkpoint_digest(c, r.digest.digest()) != c["digest"]:
            finding = finding or (c["from_position"], "digest does not match")
        if finding:
            self.problem = (finding[0], f"checkpoint {c['seq']}: {finding[1]}")
            return
        self.prev_digest, self.prev_to = c["digest"], c["to_position"]
        self.signed_through = c["to_position"]
        self.cursor += 1
        self.checked += 1

    def left(self):
        return self.problem is None and self.cursor < len(self.cps)

    def prior_checkpoints(self, from_position):
        while self.left() and self.cps[self.cursor]["to_position"] < from_position:
            if not self.open():
                return
            c = self.cps[self.cursor]
            for h in c["heads"]:
                self.streams[h["stream"]] = (h["version"], h["hash"])
            if c["heads"]:
                self.last = max(h["position"] for h in c["heads"])
            self.prev_digest, self.prev_to = c["digest"], c["to_position"]
            self.signed_through = c["to_position"]
            self.cursor += 1
            self.checked += 1

    def event(self, e):
        pos, tpp, stub = e["position"], e["tenant_prev_position"], is_stub(e)
        if not stub and e["tenant_id"] != self.tenant:
            raise Tampered(f"event of another tenant {e['tenant_id']}", position=pos)
        if stub != withheld(e["stream"], self.devices):                        # §3.1 filter
            raise Tampered(f"{'stub' if stub else 'full event'} of stream {e['stream']}, which the device filter "
                           f"{'does not withhold' if stub else 'withholds'}", position=pos)
        if pos <= self.last:                                                    # 1
            raise Tampered(f"out of place (after position {self.last})", position=pos)
        if event_hash(e) != e["hash"]:                                          # 2
            raise Tampered("event modified (hash does not match)", position=pos)
        if tpp > self.last:                                                     # 3
            raise Tampered(f"event missing (next event {pos} follows it)", position=tpp)
        if tpp < self.last:                                                     # 4
            if tpp == self.before_last:
                raise Tampered("event inserted", position=self.last)
            raise Tampered(f"tenant_prev_position {tpp} is not {self.last}", position=pos)
        v, h = self.streams.get(e["stream"], (0, ZEROS))                        # 5
        if e["version"] != v + 1 or e["prev_hash"] != h:
            raise Tampered(f"stream chain of {e['stream']} broken", position=pos)
        self.streams[e["stream"]] = (e["version"], e["hash"])                   # 6
        self.before_last, self.last = self.last, pos
        while self.left():                                                      # 7
            if not self.open():
                break
            c = self.cps[self.cursor]
            if pos > c["to_position"]:
                self.close()
                continue
            if pos >= c["from_position"]:
                self.range.add(e)
            break
        if stub:
            self.stubs += 1
        else:
            check_config_reference(e, self.config)                              # 8
        self.events += 1

    def end(self):
        while self.left():
            if self.open():
                self.close()
        if self.problem:
            raise Tampered(self.problem[1], position=self.problem[0])
        unsigned = "every event is signed" if self.last <= self.signed_through else \
            f"events after position {self.signed_through} are hash-chained but not yet signed"
        withheld_ = "" if self.devices is None else \
            (f"; device filter [{', '.join(sorted(self.devices))}]: {self.stubs} events of other devices withheld "
             f"as hash-only stubs (their content is not checked)")
        return (f"OK: {self.events} events and {self.checked} checkpoints verified; signed through position "
                f"{self.signed_through}, last position {self.last}; {unsigned}{withheld_}")


# ---------------------------------------------------------------- §7 verification

def verify(path, pins):
    ar = Archive(path)
    with tempfile.TemporaryDirectory(prefix="audit-verify-") as tmp:
        manifest = check_manifest(ar)                                     # §7.1 step 1
        check_listed_members(ar, manifest)                                # step 2
        check_archive_members(ar, manifest)                               # step 3
        devices = device_filter(manifest)
        keys = parse_keys(ar)                                             # step 4
        checkpoints = parse_checkpoints(ar)
        external = parse_external(ar)
        check_events_parse(ar)
        config = ConfigHistory(ar, tmp) if ar.has("config.bundle") else None
        try:
            check_pins(keys, pins)                                        # step 5
            checkpoints = external_checkpoint(external, checkpoints, manifest)  # §7.4
            problems, trusted = key_problems(checkpoints, keys, pins)     # §7.2
            history = History(checkpoints, problems, trusted, keys, manifest, config, devices)  # §7.3
            history.prior_checkpoints(manifest["range"]["from_position"])
            for n, line in ar.lines("events.jsonl"):
                history.event(parse_event(n, line))
            return history.end()
        finally:
            if config:
                config.close()


def parse_pin(text):
    """A pinned key (§6 Trust): ("public", hex) or ("fingerprint", hex)."""
    m = re.fullmatch(r"(?:([A-Za-z0-9._-]{1,100})=)?([0-9a-fA-F]{64})", text)
    if m:
        return "public", m[2].lower()
    m = re.fullmatch(r"SHA256:([0-9a-fA-F]{64})", text)
    if m:
        return "fingerprint", m[1].lower()
    raise Fatal(f"not a public key, SHA256: fingerprint or <key id>=<public key>: {text!r}")


def read_pins_file(path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise Fatal(f"cannot read {path}: {e}") from e
    return [tok for line in text.splitlines() if not line.strip().startswith("#")
            for tok in re.split(r"[,\s]+", line) if tok]


def self_test():
    """Check §4.2's worked example, values read from ../docs/auditing.md."""
    doc_path = os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "docs", "auditing.md")
    with open(doc_path, encoding="utf-8") as f:
        doc = f.read()
    marked = re.search(r"<!-- worked-example:begin -->(.*?)<!-- worked-example:end -->", doc, re.S)
    section = marked[1] if marked else doc.split("### 4.2 Worked example", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"^[ \t]*(\{.*\})[ \t]*$", section, re.M)
    if block is None:
        raise Fatal("self-test FAILED: no event line in §4.2 of " + doc_path)
    line, section = block[1].encode("utf-8"), section[block.end():]
    e, failures = parse_json(line), []
    if canonical(e) != line:
        failures.append("the example line is not canonical JSON (§4.1); canonical form:\n  " + canonical(e).decode())
    if check_shape(e, EVENT_FIELDS):
        failures.append(f"the example line is not a §3 event: {check_shape(e, EVENT_FIELDS)}")
    content_bytes, content_hash, chain_bytes, hash_ = event_hash_parts(e)
    computed = {"content_bytes": content_bytes.hex(), "content_hash": content_hash.hex(),
                "chain_bytes": chain_bytes.hex(), "hash": hash_}
    # the hex values of the document: runs of 16+ hex digits, a run continued on the next line joined
    joined = re.sub(r"(?<=[0-9a-fA-F])[ \t`]*\n[ \t>`]*(?=[0-9a-fA-F]+(?:[\s`]|$))", "", section)
    documented = {run.lower() for run in re.findall(r"(?<![0-9a-zA-Z_])[0-9a-fA-F]{16,}(?![0-9a-zA-Z_])", joined)}
    for name, value in computed.items():
        if value not in documented:
            failures.append(f"{name}: {value} (computed) is not in §4.2")
    m = re.search(r"recorded_at_micros\W+(-?\d+)", section)
    if m and int(m[1]) != micros(e["recorded_at"]):
        failures.append(f"recorded_at_micros: document {m[1]}, computed {micros(e['recorded_at'])}")
    if e.get("hash") != hash_:
        failures.append(f"the example's hash field is {e.get('hash')}, computed {hash_}")
    # §3.1: the same event as a hash-only stub.
    stub_block = re.search(r"<!-- stub-example:begin -->(.*?)<!-- stub-example:end -->", doc, re.S)
    stub_line = re.search(r"^[ \t]*(\{.*\})[ \t]*$", stub_block[1], re.M) if stub_block else None
    if stub_line is None:
        failures.append("no stub example line in §3.1")
    else:
        raw = stub_line[1].encode("utf-8")
        stub = parse_json(raw)
        if canonical(stub) != raw:
            failures.append("the stub example is not canonical JSON (§4.1)")
        elif not is_stub(stub) or check_shape(stub, STUB_FIELDS):
            failures.append(f"the stub example is not a §3.1 stub: {check_shape(stub, STUB_FIELDS)}")
        else:
            if stub["content_hash"] != content_hash.hex():
                failures.append(f"the stub's content_hash is {stub['content_hash']}, §4.2 computes {content_hash.hex()}")
            if event_hash(stub) != stub["hash"] or stub["hash"] != hash_:
                failures.append(f"the stub hashes to {event_hash(stub)}, its hash field is {stub['hash']}, "
                                f"§4.2's event hash is {hash_}")
            for k in ("position", "prev_hash", "recorded_at", "stream", "tenant_prev_position", "version"):
                if stub[k] != e[k]:
                    failures.append(f"the stub's {k} differs from §4.2's event")
    if failures:
        raise Fatal("self-test FAILED:\n" + "\n".join(failures))
    print("self-test OK")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bundle", nargs="?")
    ap.add_argument("--trusted-key", action="append", default=[], metavar="KEY")
    ap.add_argument("--trusted-keys", action="append", default=[], metavar="FILE")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args(argv)
    sys.stdout.reconfigure(errors="backslashreplace")
    try:
        if args.self_test:
            self_test()
            return 0
        if not args.bundle:
            raise Fatal("no bundle given")
        texts = args.trusted_key + [t for path in args.trusted_keys for t in read_pins_file(path)]
        pins = [parse_pin(t) for t in texts]
        if not pins:
            raise Fatal("at least one --trusted-key or --trusted-keys is required")
        print(verify(args.bundle, pins))
        return 0
    except Tampered as t:
        print(t.line())
        return 1
    except (Fatal, OSError) as e:
        print(f"audit-verify: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # a bug here must not look like a verdict (exit 1)
        print(f"audit-verify: internal error: {e!r}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
