"""Field types shared by the request schemas.

Every string that can reach a batch script, a Slurm option or a log line goes through
``Text``, which refuses control characters: a newline in ``job_name`` can never become
a new script line, a NUL can never cut a path short.
"""
from __future__ import annotations

import posixpath
import re
import uuid as uuid_module

from marshmallow import ValidationError, fields, validate

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_EXCEPT_NL_TAB = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TIME_PATTERNS = (
    re.compile(r"^(?P<m>\d+)$"),
    re.compile(r"^(?P<m>\d+):(?P<s>\d+)$"),
    re.compile(r"^(?P<h>\d+):(?P<m>\d+):(?P<s>\d+)$"),
    re.compile(r"^(?P<d>\d+)-(?P<h>\d+)$"),
    re.compile(r"^(?P<d>\d+)-(?P<h>\d+):(?P<m>\d+)$"),
    re.compile(r"^(?P<d>\d+)-(?P<h>\d+):(?P<m>\d+):(?P<s>\d+)$"),
)
MAX_TIME_MINUTES = 365 * 24 * 60


class Text(fields.String):
    """A string without control characters (optionally allowing newline and tab)."""

    def __init__(self, *args, max_length: int = 4096, multiline: bool = False, **kwargs):
        given = kwargs.pop("validate", None) or []
        validators = list(given) if isinstance(given, (list, tuple)) else [given]
        validators.append(validate.Length(max=max_length))
        super().__init__(*args, validate=validators, **kwargs)
        self._pattern = _CONTROL_EXCEPT_NL_TAB if multiline else _CONTROL

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        found = self._pattern.search(text)
        if found:
            raise ValidationError(
                f"Control characters are not allowed (found {found.group()!r} "
                f"at position {found.start()}).")
        return text


class AbsolutePath(Text):
    """An absolute POSIX path with no ``..`` segment, returned normalised."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, max_length=1024, **kwargs)

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
        super().__init__(*args, max_length=255, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        name = super()._deserialize(value, attr, data, **kwargs)
        if "/" in name or name in {"", ".", ".."}:
            raise ValidationError("Must be a file name without '/' (it is placed in task.dirs).")
        return name


class TaskUUID(fields.String):
    """A UUID in any of its usual spellings, stored in canonical lower-case form."""

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
    Seconds round up to the next minute (Slurm's own rounding).
    """

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise ValidationError("Must be minutes (an integer) or a Slurm time string.")
        if isinstance(value, int):
            minutes = value
        elif isinstance(value, str):
            minutes = parse_slurm_time(value)
        else:
            raise ValidationError("Must be minutes (an integer) or a Slurm time string.")
        if not 1 <= minutes <= MAX_TIME_MINUTES:
            raise ValidationError(f"Must be between 1 minute and {MAX_TIME_MINUTES} minutes.")
        return minutes


def parse_slurm_time(text: str) -> int:
    text = text.strip()
    for pattern in _TIME_PATTERNS:
        match = pattern.match(text)
        if match:
            parts = {k: int(v) for k, v in match.groupdict().items() if v is not None}
            seconds = (parts.get("d", 0) * 86400 + parts.get("h", 0) * 3600
                       + parts.get("m", 0) * 60 + parts.get("s", 0))
            return -(-seconds // 60)
    raise ValidationError(
        "Not a Slurm time: use minutes, M:S, H:M:S, D-H, D-H:M or D-H:M:S.")


class Environment(fields.Field):
    """``"K=V"``, a list of ``"K=V"``, or an object; loads as an ordered dict."""

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
            if len(items) > 256:
                raise ValidationError("At most 256 variables.")
            for item in items:
                if not isinstance(item, str) or "=" not in item:
                    raise ValidationError(f'Each entry must be a "K=V" string, got {item!r:.80}.')
                key, _, val = item.partition("=")
                env[key] = val
        else:
            if len(value) > 256:
                raise ValidationError("At most 256 variables.")
            for key, val in value.items():
                if isinstance(val, bool) or not isinstance(val, (str, int, float)):
                    raise ValidationError(f"The value of {key!r:.80} must be a string.")
                env[str(key)] = str(val)
        for key, val in env.items():
            if not _ENV_NAME.match(key):
                raise ValidationError(f"{key!r:.80} is not a valid variable name.")
            if _CONTROL.search(val) or len(val) > 4096:
                raise ValidationError(f"The value of {key} has control characters or is too long.")
        return env


def strict_int(minimum: int = 1, maximum: int = 1_000_000, **kwargs) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=minimum, max=maximum), **kwargs)
