"""The task of the reference README: ``POST /submit`` body and its parts.

Decisions (DESIGN.md §2): ``slurm.time`` is minutes or a Slurm time string;
``slurm.mem`` is MB per node; ``slurm.nodes`` is a node count; ``environment`` is
``"K=V"``, a list of them, or an object. Unknown keys are refused, naming the key.
"""
from __future__ import annotations

import re

from marshmallow import Schema, fields, validate

from ..constants import TASK_METADATA
from ..states import MONITOR_STATES
from .fields import (AbsolutePath, Environment, FileName, SlurmTime, TaskUUID, Text,
                     strict_int)
from .notification import NotificationSchema

USERNAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")
PARTITION = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_DEP_ONE = rf"(after|afterany|afterok|afternotok|aftercorr):([0-9]{{1,10}}|{_UUID})(:([0-9]{{1,10}}|{_UUID}))*"
# Slurm's --dependency, where a job may also be named by a task uuid of this service.
DEPENDENCY = rf"^(singleton|{_DEP_ONE})(,(singleton|{_DEP_ONE}))*$"
# Slurm's --array: indexes and ranges with an optional step, then an optional %limit.
ARRAY = r"^[0-9]{1,7}(-[0-9]{1,7}(:[0-9]{1,7})?)?(,[0-9]{1,7}(-[0-9]{1,7}(:[0-9]{1,7})?)?)*(%[0-9]{1,5})?$"


class SlurmSchema(Schema):
    cpus_per_task = strict_int(1, 4096)
    error = FileName()
    output = FileName()
    job_name = Text(max_length=200)
    mem = strict_int(1, 64 * 1024 * 1024)
    nodes = strict_int(1, 100_000)
    ntasks_per_node = strict_int(1, 4096)
    partition = Text(validate=validate.Regexp(PARTITION, error="Not a valid partition name."))
    time = SlurmTime()
    environment = Environment()
    account = Text(validate=validate.Regexp(PARTITION, error="Not a valid account name."))
    qos = Text(validate=validate.Regexp(PARTITION, error="Not a valid QOS name."))
    array = Text(max_length=255, validate=validate.Regexp(ARRAY, error=(
        "Not a Slurm array specification (e.g. 0-9, 1,3,5, 0-99:2%10).")))
    dependency = Text(max_length=1024, validate=validate.Regexp(DEPENDENCY, error=(
        "Not a dependency: e.g. afterok:<task uuid or job id>[:...], singleton.")))


class DirsSchema(Schema):
    parent = AbsolutePath()
    error = AbsolutePath(required=True)
    input = AbsolutePath()
    output = AbsolutePath(required=True)


_username = dict(validate=validate.Regexp(USERNAME, error="Not a valid user name."))


class TaskSchema(Schema):
    """A task for ``POST /submit``."""

    name = fields.String(required=True, validate=validate.OneOf(
        tuple(TASK_METADATA), error="Unknown task name {input!r}; known: {choices}."))
    username = Text(required=True, **_username)
    cwd = AbsolutePath(required=True)
    uuid = TaskUUID(required=True)
    slurm = fields.Nested(SlurmSchema, required=True)
    dirs = fields.Nested(DirsSchema, required=True)
    cmd = Text(validate=validate.Length(min=1))
    params = fields.List(Text(), validate=validate.Length(max=256))
    notification = fields.Nested(NotificationSchema)
    cluster = Text(validate=validate.Regexp(PARTITION, error="Not a valid cluster name."),
                   metadata={"description": "Which configured cluster (default: the first)."})


class SubmitSchema(Schema):
    task = fields.Nested(TaskSchema, required=True)


class MonitorTaskSchema(TaskSchema):
    """A task registered after the fact: only ``uuid`` and ``username`` are required."""

    name = fields.String(validate=validate.OneOf(
        tuple(TASK_METADATA), error="Unknown task name {input!r}; known: {choices}."))
    cwd = AbsolutePath()
    slurm = fields.Nested(SlurmSchema)
    dirs = fields.Nested(DirsSchema)


class MonitorBodySchema(Schema):
    task = fields.Nested(MonitorTaskSchema, required=True)
    slurm_job_id = strict_int(1, 2**32 - 1, required=True)
    slurm_job_state = fields.String(validate=validate.OneOf(
        MONITOR_STATES, error="Not a Slurm job state; use one of: {choices}."))


class MonitorSchema(Schema):
    monitor = fields.Nested(MonitorBodySchema, required=True)
