"""Device credentials for the production broker: mosquitto 2's password file, written from the registry.

Every device signs in to mosquitto with its id as the user name (the ACL in deploy/mosquitto/acl
lets a user publish only under its own id) and a random password. mosquitto keeps a hash of each
password in a text file, one `user:hash` line per user. The hash format of mosquitto 2
(`mosquitto_passwd`, type 7) is

    $7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512(password, salt, iterations)>

with a 12-byte salt and a 64-byte digest, standard base64 with padding. mosquitto 2.0 writes 101
iterations by default and reads whatever count a line names. These passwords are random (about
190 bits), so key stretching adds nothing against guessing them; 101 keeps a reconnect storm of
thousands of devices cheap for the broker.

Passwords exist in clear text only once: in the secrets CSV of the run that made them, for
provisioning the devices. Existing entries are never changed unless a rotation is asked for.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import os
import secrets
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

ITERATIONS = 101  # mosquitto 2.0's own default (mosquitto_passwd)
SALT_BYTES = 12  # mosquitto 2.0's salt length
PASSWORD_LENGTH = 32  # letters and digits: ~190 bits, safe in URLs, CSV cells and device config files
_ALPHABET = string.ascii_letters + string.digits
SERVICE_USER = "firewatch"  # the service's own broker user (deploy/mosquitto/acl)
# No device may be called like the service: not its user (it would sign in with the service's
# rights), nor its client ids (firewatch-ingest, ...: on the device listener a device's client id is
# its user name, and a second connection with a client id pushes the first one off the broker).
RESERVED_PREFIX = "firewatch"


def is_reserved(name: str) -> bool:
    return name.lower().startswith(RESERVED_PREFIX)


class PasswordFileError(ValueError):
    """A password file cannot be read or a request cannot be carried out; the message says why."""


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """mosquitto 2's type-7 hash of `password` (a fresh random salt unless one is given)."""
    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` matches a type-7 hash (False for any other or malformed hash)."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7":
        return False
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except ValueError:
        return False
    if iterations < 1:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(digest, expected)


def generate_password(length: int = PASSWORD_LENGTH) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def parse_password_file(text: str, source: str = "password file") -> dict[str, str]:
    """user -> hash, in file order. Blank lines and `#` comments are skipped, as mosquitto does."""
    entries: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, encoded = line.partition(":")
        if not sep or not user or not encoded:
            raise PasswordFileError(f"{source}:{number}: expected user:hash")
        if user in entries:
            raise PasswordFileError(f"{source}:{number}: user {user!r} is listed twice")
        entries[user] = encoded
    return entries


def format_password_file(entries: Mapping[str, str]) -> str:
    return "".join(f"{user}:{encoded}\n" for user, encoded in entries.items())


@dataclass
class Plan:
    """What one run does: the file's new entries and the passwords issued in clear text."""

    entries: dict[str, str]
    issued: dict[str, str] = field(default_factory=dict)  # user -> password, new or rotated
    added: list[str] = field(default_factory=list)
    rotated: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # users not in the registry, dropped (prune)
    stale: list[str] = field(default_factory=list)  # users not in the registry, kept


def plan_passwords(
    existing: Mapping[str, str],
    device_ids: Iterable[str],
    *,
    rotate: Iterable[str] = (),
    rotate_all: bool = False,
    prune: bool = False,
) -> Plan:
    """Entries for every device: existing ones kept as they are, new devices given a password.

    `rotate` (or `rotate_all`) gives those devices a new password. `prune` drops users that are not
    devices of the registry (decommissioned devices); the service's users (`firewatch...`) always
    stay. No device may have such a name (is_reserved).
    """
    devices = list(device_ids)
    clash = sorted(d for d in devices if is_reserved(d))
    if clash:
        raise PasswordFileError(
            f"device id(s) {', '.join(clash)}: ids starting with {RESERVED_PREFIX!r} are the service's "
            f"own broker user and client ids; rename the device(s) in the registry"
        )
    rotate_set = set(rotate)
    unknown = sorted(rotate_set.difference(devices))
    if unknown:
        raise PasswordFileError(f"cannot rotate {', '.join(unknown)}: not a device of the registry")
    plan = Plan(entries={})
    wanted = set(devices)
    for user, encoded in existing.items():  # the file's order first: diffs stay small
        if user in wanted:
            continue
        if is_reserved(user) or not prune:
            plan.entries[user] = encoded
            if not is_reserved(user):
                plan.stale.append(user)
        else:
            plan.removed.append(user)
    for device in devices:
        if device in existing and not rotate_all and device not in rotate_set:
            plan.entries[device] = existing[device]
            plan.kept.append(device)
            continue
        password = generate_password()
        plan.entries[device] = hash_password(password)
        plan.issued[device] = password
        (plan.rotated if device in existing else plan.added).append(device)
    return plan


SECRETS_HEADER = ("device_id", "site", "mqtt_username", "mqtt_password", "publish_topics")


def secrets_csv(issued: Mapping[str, str], sites: Mapping[str, str], prefix: str = "fw/v1") -> str:
    """The provisioning sheet: one row per issued password, with the topics the device may use."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SECRETS_HEADER)
    for device, password in issued.items():
        site = sites.get(device, "")
        writer.writerow((device, site, device, password, f"{prefix}/{site}/{device}/telemetry|event|status"))
    return out.getvalue()


def write_private(path: Path, text: str, *, exclusive: bool) -> None:
    """Write a file readable by its owner only (0600), created with that mode (never world-readable
    for a moment). exclusive: refuse to replace an existing file. Otherwise the file is replaced
    atomically (a temporary file renamed over it), so mosquitto never reads half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if exclusive:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        return
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
