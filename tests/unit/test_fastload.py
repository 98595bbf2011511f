"""``SubmitSchema.load`` (app.schemas.fastload) answers exactly as marshmallow's own
``Schema.load``: the same task for every valid body, the same errors (and messages)
for every invalid one."""
from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from marshmallow import Schema, ValidationError

from app.schemas.fastload import compile_loader
from app.schemas.task import SubmitSchema
from tests.conftest import HELLO_TASK
from tests.unit.test_schemas import BAD, with_change


def outcome(load, body):
    try:
        return "loaded", load(body)
    except ValidationError as exc:
        return "refused", exc.messages


def both(body):
    schema = SubmitSchema()
    ours = outcome(schema.load, copy.deepcopy(body))
    marshmallows = outcome(lambda b: Schema.load(SubmitSchema(), b), copy.deepcopy(body))
    return ours, marshmallows


def test_the_submit_body_is_walked_not_handed_to_marshmallow():
    """Not vacuous: the walker exists for SubmitSchema and loads a task by itself."""
    loader = compile_loader(SubmitSchema())
    assert loader is not None
    body = {"task": copy.deepcopy(HELLO_TASK)}
    assert loader(copy.deepcopy(body)) == Schema.load(SubmitSchema(), body)


GOOD = [
    {"task": copy.deepcopy(HELLO_TASK)},
    with_change("notification", None, delete=True),
    with_change("slurm.environment", {"A": "1", "B": ""}),
    with_change("slurm.environment", ["A=1", "B=2"]),
    with_change("slurm.environment", "A=1"),
    with_change("slurm.time", "1-02:03:04"),
    with_change("slurm.time", 5.0),
    with_change("slurm.array", "0-9%2"),
    with_change("slurm.dependency", "afterok:123e4567-e89b-12d3-a456-426614174000"),
    with_change("uuid", "123E4567E89B12D3A456426614174000"),
    with_change("dirs.output", "/home/someone//x/./y/"),
    with_change("cluster", "default"),
    with_change("notification", {"methods": ["rabbithq"], "params": {"rabbithq": {"msg": "x"}}}),
    with_change("params", ["a", "b c"]),
]


@pytest.mark.parametrize("body", GOOD)
def test_valid_bodies_load_as_marshmallow_loads_them(body):
    ours, marshmallows = both(body)
    assert ours == marshmallows and ours[0] == "loaded"


@pytest.mark.parametrize("path, value, field", BAD)
def test_invalid_bodies_are_refused_with_marshmallows_messages(path, value, field):
    ours, marshmallows = both(with_change(path, value))
    assert ours == marshmallows and ours[0] == "refused"


@pytest.mark.parametrize("body", [
    None, [], "task", {}, {"task": None}, {"task": []}, {"task": {}},
    {"task": copy.deepcopy(HELLO_TASK), "extra": 1},
    with_change("slurm", None), with_change("slurm", "x"), with_change("dirs", None),
    with_change("slurm.mem", None), with_change("cmd", None),
    with_change("username", None, delete=True), with_change("dirs.output", None, delete=True),
])
def test_odd_bodies_are_answered_as_marshmallow_answers_them(body):
    ours, marshmallows = both(body)
    assert ours == marshmallows


# Values of every JSON kind, with some that are valid for some fields.
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10**9), st.floats(allow_nan=False),
    st.sampled_from(["", "x", "1:00", "hpcz-test", "/tmp", "/tmp/../x", "a\nb", "A=1",
                     "generic", "someone", "0-3", "afterok:1", "email", "COMPLETED"]),
    st.text(max_size=12),
    st.lists(st.sampled_from(["A=1", "x", 1, None]), max_size=3),
    st.dictionaries(st.sampled_from(["A", "b-c", "email", "recipient"]),
                    st.sampled_from(["1", "a@b.org", None, 2]), max_size=2),
)
PATHS = sorted({path for path, _, _ in BAD} | {
    "slurm.array", "slurm.dependency", "slurm.account", "slurm.qos", "cluster",
    "notification.methods", "notification.on", "dirs.input", "slurm.cpus_per_task"})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PATHS), VALUES, st.booleans()), min_size=1, max_size=4))
def test_random_changes_load_or_fail_as_with_marshmallow(changes):
    body = {"task": copy.deepcopy(HELLO_TASK)}
    for path, value, delete in changes:
        *parents, last = path.split(".")
        node = body["task"]
        for key in parents:
            if not isinstance(node, dict) or not isinstance(node.get(key), dict):
                break
            node = node[key]
        else:
            if delete:
                node.pop(last, None)
            else:
                node[last] = value
    ours, marshmallows = both(body)
    assert ours == marshmallows
