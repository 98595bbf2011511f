"""Client authentication: API keys sent as ``Authorization: Bearer <key>``.

A key looks like ``sp_<id>_<secret>``; only its SHA-256 is stored (the secret is 256
random bits, so a slow hash would add nothing), with a name, the Slurm users it may
act for (a list, or ``*`` for a trusted service account) and its roles:

- ``submit``: POST /submit, POST /monitor
- ``read``: GET /monitor/...
- ``cancel``: cancel tasks
- ``admin``: the operator routes under /slurm (and every other role)

Keys live in MongoDB (collection ``api_keys``) when MONGODB_URI is set, else in a JSON
file (SLURM_PROXY_API_KEYS_FILE, written 0600). ``python -m app.keys`` creates (printing
the key once), lists and revokes them.
"""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from .errors import SlurmProxyError
from .store import utcnow

ROLES = ("submit", "read", "cancel", "admin")
KEY_FORMAT = re.compile(r"^sp_([0-9a-f]{12})_[A-Za-z0-9_-]{20,100}$")


class Unauthorized(SlurmProxyError):
    status = 401
    code = "unauthorized"


class Forbidden(SlurmProxyError):
    status = 403
    code = "forbidden"


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    users: tuple[str, ...]
    roles: frozenset[str]

    def has_role(self, role: str) -> bool:
        return role in self.roles or "admin" in self.roles

    def may_act_for(self, user: str) -> bool:
        return "*" in self.users or user in self.users

    def check_user(self, user: str) -> None:
        if not self.may_act_for(user):
            raise Forbidden(f"API key {self.name!r} may not act for user {user!r}.")

    def check_owner(self, record) -> None:
        """For a stored task: Forbidden unless the key may act for its user, whom the
        answer names to an admin key only (a uuid or job id must not tell who owns it)."""
        user = record["task"]["username"]
        if not self.may_act_for(user):
            who = f"user {user!r}" if self.has_role("admin") else "a user it does not act for"
            raise Forbidden(f"API key {self.name!r} may not act for this task: it belongs to {who}.")


# What a request runs as when authentication is explicitly off (loopback only).
ANONYMOUS = ApiKey("-", "authentication off", ("*",), frozenset(ROLES))


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def new_key(name: str, users: Iterable[str], roles: Iterable[str]) -> tuple[str, dict[str, Any]]:
    """A new key: (the plaintext, shown once; the record to store)."""
    users, roles = sorted(set(users)), sorted(set(roles))
    unknown = set(roles) - set(ROLES)
    if unknown or not roles:
        raise ValueError(f"roles must be some of {', '.join(ROLES)}")
    if not users:
        raise ValueError("a key must name at least one user, or *")
    key_id = secrets.token_hex(6)
    plaintext = f"sp_{key_id}_{secrets.token_urlsafe(32)}"
    record = {"id": key_id, "name": name, "hash": hash_key(plaintext), "users": users,
              "roles": roles, "created_at": utcnow(), "revoked_at": None}
    return plaintext, record


def to_api_key(record: dict[str, Any]) -> ApiKey:
    return ApiKey(record["id"], record["name"], tuple(record["users"]), frozenset(record["roles"]))


class FileKeyStore:
    """Keys in a JSON file, re-read when it changes; writes are atomic and 0600."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._cache: tuple[float, dict[str, dict]] | None = None

    def _load(self) -> dict[str, dict]:
        try:
            mtime = os.stat(self.path).st_mtime
        except FileNotFoundError:
            return {}
        with self._lock:
            if self._cache is None or self._cache[0] != mtime:
                with open(self.path, encoding="utf-8") as fh:
                    keys = {k["id"]: k for k in json.load(fh).get("keys", [])}
                self._cache = (mtime, keys)
            return self._cache[1]

    def _write(self, keys: dict[str, dict]) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".api-keys.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"keys": list(keys.values())}, fh, indent=2, default=str)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def get(self, key_id: str) -> dict | None:
        record = self._load().get(key_id)
        if record is None:
            return None
        # A copy, so that a caller cannot change the cache; records are flat (strings,
        # and lists of strings), so this is a deep copy at a tenth of deepcopy's cost.
        return {k: (list(v) if type(v) is list else copy.deepcopy(v) if isinstance(v, dict) else v)
                for k, v in record.items()}

    def add(self, record: dict) -> None:
        keys = dict(self._load())
        keys[record["id"]] = {**record, "created_at": str(record["created_at"])}
        self._write(keys)

    def list(self) -> list[dict]:
        return [copy.deepcopy(k) for k in self._load().values()]

    def revoke(self, key_id: str) -> bool:
        keys = dict(self._load())
        if key_id not in keys or keys[key_id].get("revoked_at"):
            return False
        keys[key_id] = {**keys[key_id], "revoked_at": str(utcnow())}
        self._write(keys)
        return True


class MemoryKeyStore(FileKeyStore):
    """For tests: the same behaviour, no file."""

    def __init__(self, records: Iterable[dict] = ()):
        super().__init__("")
        self._keys = {r["id"]: r for r in records}

    def _load(self):
        return self._keys

    def _write(self, keys):
        self._keys = keys


def authenticate(store, header: str | None) -> ApiKey:
    """The key in an ``Authorization: Bearer`` header, or Unauthorized."""
    scheme, _, token = (header or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
    match = KEY_FORMAT.match(token)
    record = store.get(match.group(1)) if match else None
    if (record is None or record.get("revoked_at")
            or not hmac.compare_digest(record["hash"], hash_key(token))):
        raise Unauthorized("Invalid or revoked API key.")
    return to_api_key(record)


def describe(record: dict) -> str:
    created = record.get("created_at")
    created = created.isoformat() if isinstance(created, datetime) else created
    state = f"revoked {record['revoked_at']}" if record.get("revoked_at") else "active"
    return (f"{record['id']}  {record['name']:20s} users={','.join(record['users'])} "
            f"roles={','.join(record['roles'])} created={created} {state}")
