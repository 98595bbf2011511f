"""Field types shared by the request schemas.

Every string that can reach a batch script, a Slurm option or a log line goes through
``Text``, which refuses control characters: a newline in ``job_name`` can never become
a new script line, a NUL can never cut a path short.

Each field validates with the same regular expression it publishes in the OpenAPI
document (``metadata``), so the document says exactly what the service accepts: a
client, or schemathesis, can rely on it both ways.
"""
from __future__ import annotations

import posixpath
import re
import uuid as uuid_module

from marshmallow import ValidationError, fields, validate

C = r"\x00-\x1f\x7f-\x9f"                    # control characters (C0, DEL, C1)
C_MULTILINE = r"\x00-\x08\x0b-\x1f\x7f-\x9f"  # the same, but newline and tab allowed
NO_CONTROL = rf"^[^{C}]*$"
NO_CONTROL_MULTILINE = rf"^[^{C_MULTILINE}]*$"
# A path segment that is not "..": empty, ".", or anything else without "/".
_SEGMENT = rf"(|[^./{C}][^/{C}]*|\.|\.[^./{C}][^/{C}]*|\.\.[^/{C}]+)"
ABSOLUTE_PATH = rf"^(/{_SEGMENT})+$"
FILE_NAME = rf"^([^./{C}][^/{C}]*|\.[^./{C}][^/{C}]*|\.\.[^/{C}]+)$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
ENV_ITEM = rf"^[A-Za-z_][A-Za-z0-9_]*=[^{C}]*$"
# Slurm time strings, with digit counts that keep every value within MAX_TIME_MINUTES.
TIME_STRING = (r"^(\d{1,5}|\d{1,5}:\d{1,2}|\d{1,3}:\d{1,2}:\d{1,2}|\d{1,2}-\d{1,2}"
               r"|\d{1,2}-\d{1,2}:\d{1,2}|\d{1,2}-\d{1,2}:\d{1,2}:\d{1,2})$")
MAX_TIME_MINUTES = 365 * 24 * 60
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PORT = r"([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
HTTP_URL = rf"^https?://{_LABEL}(\.{_LABEL})*(:{_PORT})?(/[^\s{C}]*)?$"
MAX_ENV = 256
# A cluster, partition, account or QOS name (also a name in the settings: a cluster in
# SLURM_CLUSTERS_FILE, an Apprise target).
SLURM_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# A user name, as Slurm and the web page's single sign-on header give it.
USERNAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")
# A task uuid in its canonical form, to be placed inside other patterns.
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


_CONTROL = re.compile(rf"[{C}]")
_CONTROL_MULTILINE = re.compile(rf"[{C_MULTILINE}]")


def _check(pattern: str, value: str, message: str) -> None:
    if not re.fullmatch(pattern, value):
        raise ValidationError(message)


class Text(fields.String):
    """A string without control characters (optionally allowing newline and tab)."""

    def __init__(self, *args, max_length: int = 4096, multiline: bool = False, **kwargs):
        given = kwargs.pop("validate", None) or []
        validators = list(given) if isinstance(given, (list, tuple)) else [given]
        validators.append(validate.Length(max=max_length))
        self._pattern = NO_CONTROL_MULTILINE if multiline else NO_CONTROL
        self._control = _CONTROL_MULTILINE if multiline else _CONTROL
        metadata = dict(kwargs.pop("metadata", {}) or {})
        if not any(isinstance(v, validate.Regexp) for v in validators):
            metadata.setdefault("pattern", self._pattern)
        super().__init__(*args, validate=validators, metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        found = self._control.search(text)
        if found:
            raise ValidationError(
                f"Control characters are not allowed (found {found.group()!r} "
                f"at position {found.start()}).")
        return text


class AbsolutePath(Text):
    """An absolute POSIX path with no ``..`` segment, returned normalised."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, max_length=1024, metadata={"pattern": ABSOLUTE_PATH}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        path = super()._deserialize(value, attr, data, **kwargs)
        if not path.startswith("/"):
            raise ValidationError("Must be an absolute path (starting with '/').")
        if ".." in path.split("/"):
            raise ValidationError("Must not contain '..' segments.")
        return posixpath.normpath(path) if path != "/" else path


class FileName(Text):
    """A plain file name: no '/', not '.' or '..'."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, max_length=255, metadata={"pattern": FILE_NAME}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        name = super()._deserialize(value, attr, data, **kwargs)
        _check(FILE_NAME, name, "Must be a file name without '/' (it is placed in task.dirs).")
        return name


class TaskUUID(fields.String):
    """A UUID in any of its usual spellings, stored in canonical lower-case form."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, metadata={"format": "uuid"}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        return canonical_uuid(text)


def canonical_uuid(text: str) -> str:
    try:
        if len(text) > 64:
            raise ValueError
        return str(uuid_module.UUID(text))
    except ValueError:
        raise ValidationError("Must be a UUID, e.g. 123e4567-e89b-12d3-a456-426614174000.") from None


class SlurmTime(fields.Field):
    """A time limit: minutes as an integer, or a Slurm time string; loads as minutes.

    Accepted strings are Slurm's: "M", "M:S", "H:M:S", "D-H", "D-H:M", "D-H:M:S".
    Seconds round up to the next minute (Slurm's own rounding). 0 means no explicit
    limit: the partition's default applies.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, metadata={"oneOf": [
            {"type": "integer", "minimum": 0, "maximum": MAX_TIME_MINUTES},
            {"type": "string", "pattern": TIME_STRING}],
            "description": "Minutes, or a Slurm time string (M, M:S, H:M:S, D-H, D-H:M, "
                           "D-H:M:S); 0: the partition's default."}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValidationError("Must be minutes (an integer) or a Slurm time string.")
        minutes = value if isinstance(value, int) else parse_slurm_time(value)
        if not 0 <= minutes <= MAX_TIME_MINUTES:
            raise ValidationError(f"Must be between 0 and {MAX_TIME_MINUTES} minutes.")
        return minutes


def parse_slurm_time(text: str) -> int:
    _check(TIME_STRING, text, "Not a Slurm time: use minutes, M:S, H:M:S, D-H, D-H:M or D-H:M:S.")
    days, _, rest = text.rpartition("-") if "-" in text else ("0", "", text)
    parts = [int(p) for p in rest.split(":")]
    if "-" in text:                     # D-H, D-H:M, D-H:M:S
        h, m, s = (parts + [0, 0])[:3]
    elif len(parts) == 3:               # H:M:S
        h, m, s = parts
    elif len(parts) == 2:               # M:S
        h, m, s = 0, parts[0], parts[1]
    else:                               # M
        h, m, s = 0, parts[0], 0
    seconds = int(days) * 86400 + h * 3600 + m * 60 + s
    return -(-seconds // 60)


class Environment(fields.Field):
    """``"K=V"``, a list of ``"K=V"``, or an object of strings; loads as a dict."""

    def __init__(self, *args, **kwargs):
        item = {"type": "string", "pattern": ENV_ITEM, "maxLength": 4096}
        super().__init__(*args, metadata={"oneOf": [
            item,
            {"type": "array", "items": item, "maxItems": MAX_ENV},
            {"type": "object", "maxProperties": MAX_ENV, "propertyNames": {"pattern": ENV_NAME},
             "additionalProperties": {"type": "string", "pattern": NO_CONTROL, "maxLength": 4096}}],
            "description": 'Default "PATH=/bin/:/usr/bin/:/sbin/"; PATH is always set.'}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            items = [value]
        elif isinstance(value, list):
            items = value
        elif isinstance(value, dict):
            items = None
        else:
            raise ValidationError('Must be "K=V", a list of "K=V" strings, or an object.')
        env: dict[str, str] = {}
        if items is not None:
            if len(items) > MAX_ENV:
                raise ValidationError(f"At most {MAX_ENV} variables.")
            for item in items:
                if not isinstance(item, str) or len(item) > 4096 or not re.fullmatch(ENV_ITEM, item):
                    raise ValidationError(f'Each entry must be a "NAME=value" string, got {item!r:.80}.')
                key, _, val = item.partition("=")
                env[key] = val
            return env
        if len(value) > MAX_ENV:
            raise ValidationError(f"At most {MAX_ENV} variables.")
        for key, val in value.items():
            if not re.fullmatch(ENV_NAME, key):
                raise ValidationError(f"{key!r:.80} is not a valid variable name.")
            if not isinstance(val, str) or len(val) > 4096 or not re.fullmatch(NO_CONTROL, val):
                raise ValidationError(f"The value of {key} must be a string without control "
                                      f"characters, at most 4096 long.")
            env[key] = val
        return env


class HttpUrl(fields.String):
    """An http(s) URL with a host name or IPv4 address (where it may go is policy)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, validate=validate.Length(max=2048),
                         metadata={"pattern": HTTP_URL, "format": "uri"}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        url = super()._deserialize(value, attr, data, **kwargs)
        _check(HTTP_URL, url, "Must be an http(s) URL with a host, e.g. https://hooks.example.org/x.")
        return url


class WholeNumber(fields.Integer):
    """A JSON integer: 5 or 5.0 (JSON Schema's "integer"), never "5", 5.5 or true."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError("Not a valid integer.")
        return super()._deserialize(value, attr, data, **kwargs)


def strict_int(minimum: int = 1, maximum: int = 1_000_000, **kwargs) -> fields.Integer:
    return WholeNumber(validate=validate.Range(min=minimum, max=maximum), **kwargs)


class Recipients(fields.Field):
    """One address or a list of them (at most 20)."""

    _email = fields.Email()

    def __init__(self, *args, **kwargs):
        email = {"type": "string", "format": "email"}
        super().__init__(*args, metadata={"oneOf": [
            email, {"type": "array", "items": email, "minItems": 1, "maxItems": 20}]}, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        items = value if isinstance(value, list) else [value]
        if not items or len(items) > 20:
            raise ValidationError("Give one to 20 addresses.")
        out = []
        for item in items:
            if not isinstance(item, str):
                raise ValidationError("Each address must be a string.")
            out.append(self._email.deserialize(item))
        return out if isinstance(value, list) else out[0]


def SlurmName(what: str, **kwargs) -> Text:
    """A ``what`` ("cluster", "partition", "account", "QOS") name field."""
    return Text(validate=validate.Regexp(SLURM_NAME, error=f"Not a valid {what} name."), **kwargs)


def UserName(**kwargs) -> Text:
    """A user name field."""
    return Text(validate=validate.Regexp(USERNAME, error="Not a valid user name."), **kwargs)
