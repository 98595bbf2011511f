"""A quicker ``load`` for the submit body, with marshmallow's own answer on every error.

marshmallow spends most of a submit's validation in its schema machinery, not in the
fields: for each declared field of each nested schema (about 30 in a task, most of them
absent) it builds a closure, an error store entry and a missing-value check, then runs
the schema's hooks and the unknown-field check (about a tenth of the web worker's CPU
per submit, bench/submit.py).

``FastLoad.load`` walks the same fields in the same order and calls the same public
``Field.deserialize`` with the same arguments as ``Schema._deserialize`` does, but
without that machinery, for schemas marshmallow would load exactly so: no hooks, no
``many``/``partial``/``only``/``exclude``, unknown fields refused (``RAISE``). Nested
schemas of that kind are walked the same way; any other field (a list, a schema with a
``post_load`` such as ``task.notification``) is the field's own ``deserialize``.

It only ever answers a load that succeeds: at the first error, or anything it does not
handle (an unknown key, a missing required field, a value that is not an object), it
stops and the load is marshmallow's own from the start. So every error, and its
message, is marshmallow's; tests compare both on valid and invalid bodies.
"""
from __future__ import annotations

from typing import Any, Callable

from marshmallow import RAISE, Schema, fields
from marshmallow.utils import missing

Loader = Callable[[Any], dict]


class _Unhandled(Exception):
    """This body is for marshmallow to load (an error, or a case not walked here)."""


def _is_plain(schema: Schema) -> bool:
    """Whether marshmallow loads this schema by its fields alone."""
    return (not any(schema._hooks.values()) and not schema.many and not schema.partial
            and schema.unknown == RAISE and schema.only is None and not schema.exclude
            and not schema.dump_only and schema.dict_class is dict)


def _nested_loader(field: fields.Field) -> Loader | None:
    """A walker for a Nested field's schema, when the field adds nothing to it."""
    if (type(field) is not fields.Nested or field.many or field.validators
            or field.pre_load or field.post_load or field.unknown not in (None, RAISE)
            or field.only is not None or field.exclude):
        return None
    return compile_loader(field.schema)


def compile_loader(schema: Schema) -> Loader | None:
    """A function loading a body as ``schema.load`` would when it succeeds, raising
    ``_Unhandled`` otherwise; None when the schema is not one walked here."""
    if not _is_plain(schema):
        return None
    steps = []
    for attr_name, field in schema.load_fields.items():
        key = field.data_key if field.data_key is not None else attr_name
        out = field.attribute or attr_name
        if "." in out:                              # marshmallow nests dotted attributes
            return None
        # Absent and without a load_default: Field.deserialize would return ``missing``
        # (nothing stored), unless the field class changes how absence is handled.
        skip_absent = (field.load_default is missing
                       and type(field).deserialize is fields.Field.deserialize
                       and type(field)._validate_missing is fields.Field._validate_missing)
        steps.append((key, out, field, field.required, skip_absent, _nested_loader(field)))
    known = frozenset(step[0] for step in steps)

    def load(data: Any) -> dict:
        if type(data) is not dict or not known.issuperset(data):
            raise _Unhandled
        result = {}
        for key, out, field, required, skip_absent, nested in steps:
            value = data.get(key, missing)
            if value is missing:
                if required:
                    raise _Unhandled
                if skip_absent:
                    continue
                value = field.deserialize(missing, key, data)      # its load_default
            elif nested is not None and value is not None:
                value = nested(value)
            else:
                value = field.deserialize(value, key, data)
            if value is not missing:
                result[out] = value
        return result

    return load


class FastLoad:
    """Mixin for a ``Schema``: ``load`` as above when called without options."""

    _compiled: dict[type, Loader | None] = {}

    def load(self, data, *, many=None, partial=None, unknown=None):
        if many is None and partial is None and unknown in (None, RAISE):
            loader = self._loader()
            if loader is not None:
                try:
                    return loader(data)
                except Exception:  # noqa: BLE001 - any error: marshmallow's own load says it
                    pass
        return super().load(data, many=many, partial=partial, unknown=unknown)

    def _loader(self) -> Loader | None:
        # One walker per schema class, built from its first plain instance: the submit
        # view's schema lives as long as the app, but other callers make one per body
        # (every plain instance of a class has the same fields).
        if not _is_plain(self):
            return None
        cls = type(self)
        if cls not in FastLoad._compiled:
            FastLoad._compiled[cls] = compile_loader(self)
        return FastLoad._compiled[cls]
