"""The task of the reference README: ``POST /submit`` body and its parts.

Decisions (DESIGN.md §2): ``slurm.time`` is minutes or a Slurm time string;
``slurm.mem`` is MB per node; ``slurm.nodes`` is a node count; ``environment`` is
``"K=V"``, a list of them, or an object. Unknown keys are refused, naming the key.
"""
from __future__ import annotations


from marshmallow import Schema, fields, validate

from ..constants import TASK_METADATA
from ..states import MONITOR_STATES
from .fastload import FastLoad
from .fields import (UUID, AbsolutePath, Environment, FileName, SlurmTime, TaskUUID, Text,
                     SlurmName, UserName, strict_int)
from .notification import NotificationSchema

_DEP_ONE = rf"(after|afterany|afterok|afternotok|aftercorr):([0-9]{{1,10}}|{UUID})(:([0-9]{{1,10}}|{UUID}))*"
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
    partition = SlurmName("partition")
    time = SlurmTime()
    environment = Environment()
    account = SlurmName("account")
    qos = SlurmName("QOS")
    array = Text(max_length=255, validate=validate.Regexp(ARRAY, error=(
        "Not a Slurm array specification (e.g. 0-9, 1,3,5, 0-99:2%10).")))
    dependency = Text(max_length=1024, validate=validate.Regexp(DEPENDENCY, error=(
        "Not a dependency: e.g. afterok:<task uuid or job id>[:...], singleton.")))


class DirsSchema(Schema):
    parent = AbsolutePath()
    error = AbsolutePath(required=True)
    input = AbsolutePath()
    output = AbsolutePath(required=True)


class TaskSchema(Schema):
    """A task for ``POST /submit``."""

    name = fields.String(required=True, validate=validate.OneOf(
        tuple(TASK_METADATA), error="Unknown task name {input!r}; known: {choices}."))
    username = UserName(required=True)
    cwd = AbsolutePath(required=True)
    uuid = TaskUUID(required=True)
    slurm = fields.Nested(SlurmSchema, required=True)
    dirs = fields.Nested(DirsSchema, required=True)
    cmd = Text(validate=validate.Length(min=1))
    params = fields.List(Text(), validate=validate.Length(max=256))
    notification = fields.Nested(NotificationSchema)
    cluster = SlurmName("cluster", metadata={
        "description": "Which configured cluster (default: the first)."})


class SubmitSchema(FastLoad, Schema):
    """``POST /submit``'s body; loaded by ``FastLoad`` (marshmallow's own answer on
    any error)."""

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
