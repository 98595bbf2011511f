"""The task registry.

``TASK_METADATA`` is the read-only registry of task types the reference README tells
operators to extend: add an entry here to offer a new task name. A request's own
fields are merged over a *copy* of its entry (``resolve_task``); the registry itself
never changes at run time. Job states and state sets live in ``app/states.py``.
"""
from __future__ import annotations

import copy
from types import MappingProxyType
from typing import Any, Mapping

from .notify import registry_params

DEFAULT_ENVIRONMENT = "PATH=/bin/:/usr/bin/:/sbin/"


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


_IMMUTABLE = (str, int, float, bool, type(None))


def thaw(value: Any) -> Any:
    """A plain, mutable deep copy of a frozen registry entry (or of JSON-like data).

    Types are tested exactly first: ``isinstance`` against ``typing.Mapping`` and
    ``copy.deepcopy`` of every string were most of the registry merge's cost per submit."""
    kind = type(value)
    if kind in _IMMUTABLE:
        return value
    if kind is dict or kind is MappingProxyType or isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if kind is tuple or kind is list:
        return [thaw(v) for v in value]
    return copy.deepcopy(value)


_HELLO = '"hello, world! (ran $SLURM_JOB_ID for $SLURM_JOB_USER at `date`)"'

TASK_METADATA: Mapping[str, Mapping[str, Any]] = _freeze({
    # Runs the request's own cmd + params; notifications only if the request names them.
    "generic": {
        "description": "Run task.cmd with task.params.",
        "requires_cmd": True,
        "allows_cmd": True,
        "slurm": {},
        "notification": {"methods": [], "params": {}},
    },
    # A canned hello-world job, with canned notifications for every method.
    "echo_hello_world": {
        "description": "Print a hello-world line naming the job and its user.",
        "requires_cmd": False,
        "allows_cmd": False,       # its command is its own: a request may not replace it
        "cmd": "echo",
        "params": ["-e", _HELLO],
        "slurm": {
            "job_name": "slurm-proxy.echo_hello_world",
            "output": "slurm-proxy.echo_hello_world.output.txt",
            "error": "slurm-proxy.echo_hello_world.error.txt",
            "time": 5,
            "mem": 100,
            "nodes": 1,
            "ntasks_per_node": 1,
            "cpus_per_task": 1,
        },
        # Each notifier plugin's canned words (its ``registry_defaults``).
        "notification": {"methods": [], "params": registry_params("echo_hello_world")},
    },
})

# Defaults for task.slurm when neither the request nor the registry sets them.
SLURM_DEFAULTS: Mapping[str, Any] = MappingProxyType({
    "job_name": None,          # None -> "slurm-proxy.<task name>"
    "output": "slurm-proxy.output.txt",
    "error": "slurm-proxy.error.txt",
    "nodes": 1,
    "environment": DEFAULT_ENVIRONMENT,
})


def deep_merge(base: dict, override: Mapping) -> dict:
    """Merge ``override`` into ``base`` in place: dicts key by key, the rest replaced."""
    for key, value in override.items():
        if (type(value) is dict or isinstance(value, Mapping)) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        elif type(value) in _IMMUTABLE:
            base[key] = value
        else:
            base[key] = copy.deepcopy(value)
    return base


def resolve_task(task: Mapping[str, Any]) -> dict[str, Any]:
    """Merge a validated request task over its registry entry, in a new dict.

    Dicts merge key by key (``slurm``, ``dirs``, ``notification.params.<method>``);
    lists and scalars in the request replace the registry's.
    """
    entry = thaw(TASK_METADATA[task["name"]])
    plan: dict[str, Any] = {
        "slurm": deep_merge(dict(SLURM_DEFAULTS), entry.get("slurm", {})),
        "notification": entry.get("notification", {"methods": [], "params": {}}),
    }
    for key in ("cmd", "params"):
        if key in entry:
            plan[key] = entry[key]
    deep_merge(plan, task)
    notification = plan["notification"]
    methods = notification.get("methods", [])
    # Keep only the params of methods actually used: smaller records, and no canned
    # settings of unused methods pretending to apply.
    notification["params"] = {m: notification.get("params", {}).get(m, {}) for m in methods}
    plan.setdefault("params", [])
    env = plan["slurm"].get("environment") or {}
    if isinstance(env, str):
        key, _, value = env.partition("=")
        env = {key: value}
    # slurmctld refuses a batch job with no environment; PATH is the one it needs.
    env.setdefault("PATH", DEFAULT_ENVIRONMENT.partition("=")[2])
    plan["slurm"]["environment"] = env
    if not plan["slurm"].get("job_name"):
        plan["slurm"]["job_name"] = f"slurm-proxy.{plan['name']}"
    return plan
