"""The batch script for a task: one job that makes its directories and runs the command.

``build_script(plan)`` is pure. Every value from the request is passed through
``shlex.quote`` and sits in exactly one place; the script's shape never depends on the
request. ``cmd`` + ``params`` are joined as shell words (the reference README's
hello-world relies on ``$SLURM_JOB_ID`` and backticks being expanded), and that line
is handed to ``eval`` as a single quoted word, so even an unbalanced quote in a
parameter fails at run time inside the job instead of changing the script around it.

Slurm's own stdout/stderr go to /dev/null: the script opens the task's files itself,
after ``mkdir -p``, so Slurm never has to open a file in a directory that does not
exist yet. Like ``sbatch --output``, the files are truncated when the job starts. Exit codes of its own: 73 when the directories or files cannot be made
(EX_CANTCREAT), 66 when ``cwd`` cannot be entered (EX_NOINPUT).
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from shlex import quote
from typing import Any, Mapping

EXIT_CANNOT_CREATE = 73
EXIT_NO_CWD = 66


@dataclass(frozen=True)
class JobSubmission:
    """What we ask Slurm for, independent of the API version."""

    script: str
    name: str
    cwd: str
    environment: dict[str, str]
    comment: str
    partition: str | None = None
    time_limit: int | None = None          # minutes
    memory_per_node: int | None = None     # MB
    nodes: int | None = None
    tasks_per_node: int | None = None
    cpus_per_task: int | None = None
    account: str | None = None
    qos: str | None = None
    array: str | None = None
    dependency: str | None = None      # job ids only (task uuids resolved before)
    standard_output: str = "/dev/null"
    standard_error: str = "/dev/null"
    extra: dict[str, Any] = field(default_factory=dict)


def output_paths(plan: Mapping[str, Any]) -> tuple[str, str]:
    """Where the task's stdout and stderr go: ``dirs.output/slurm.output`` etc."""
    dirs, slurm = plan["dirs"], plan["slurm"]
    return (posixpath.join(dirs["output"], slurm["output"]),
            posixpath.join(dirs["error"], slurm["error"]))


def command_line(plan: Mapping[str, Any]) -> str:
    return " ".join([plan["cmd"], *plan.get("params", [])])


def build_script(plan: Mapping[str, Any]) -> str:
    out, err = output_paths(plan)
    dirs = plan["dirs"]
    wanted = [dirs[k] for k in ("parent", "input", "output", "error") if dirs.get(k)]
    unique_dirs = list(dict.fromkeys(wanted))
    lines = [
        "#!/bin/bash",
        f"# slurm-proxy task {plan['uuid']}",
        f"out={quote(out)}",
        f"err={quote(err)}",
        f"mkdir -p -- {' '.join(quote(d) for d in unique_dirs)} || exit {EXIT_CANNOT_CREATE}",
        (f'exec >"$out" 2>&1 || exit {EXIT_CANNOT_CREATE}' if out == err else
         f'exec >"$out" 2>"$err" || exit {EXIT_CANNOT_CREATE}'),
        f"cd -- {quote(plan['cwd'])} || exit {EXIT_NO_CWD}",
        f"eval -- {quote(command_line(plan))}",
        "",
    ]
    return "\n".join(lines)


def build_submission(plan: Mapping[str, Any]) -> JobSubmission:
    slurm = plan["slurm"]
    return JobSubmission(
        script=build_script(plan),
        name=slurm["job_name"],
        cwd=plan["cwd"],
        environment=dict(slurm["environment"]),
        comment=f"slurm-proxy:{plan['uuid']}",
        partition=slurm.get("partition"),
        time_limit=slurm.get("time") or None,      # 0: the partition's default
        memory_per_node=slurm.get("mem"),
        nodes=slurm.get("nodes"),
        tasks_per_node=slurm.get("ntasks_per_node"),
        cpus_per_task=slurm.get("cpus_per_task"),
        account=slurm.get("account"),
        qos=slurm.get("qos"),
        array=slurm.get("array"),
        dependency=slurm.get("dependency_job_ids") or slurm.get("dependency"),
    )
