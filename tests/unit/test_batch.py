"""The batch script: exact expected text, and no request value escaping its place."""
from __future__ import annotations

import copy
import shlex
import subprocess

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.batch import build_script, build_submission
from app.constants import resolve_task
from app.schemas.task import SubmitSchema
from tests.conftest import HELLO_TASK


def plan_for(task: dict) -> dict:
    return resolve_task(SubmitSchema().load({"task": task})["task"])


def test_hello_world_script_is_exactly_this():
    script = build_script(plan_for(copy.deepcopy(HELLO_TASK)))
    assert script == (
        "#!/bin/bash\n"
        "# slurm-proxy task 123e4567-e89b-12d3-a456-426614174000\n"
        "out=/home/someone/slurm-proxy-test/output/slurm-proxy-test.generic.output.txt\n"
        "err=/home/someone/slurm-proxy-test/error/slurm-proxy-test.generic.error.txt\n"
        "mkdir -p -- /home/someone/slurm-proxy-test /home/someone/slurm-proxy-test/input "
        "/home/someone/slurm-proxy-test/output /home/someone/slurm-proxy-test/error || exit 73\n"
        'exec >"$out" 2>"$err" || exit 73\n'
        "cd -- /home/someone || exit 66\n"
        "eval -- 'echo -e \"hello, world! (sent job $SLURM_JOB_ID to $SLURM_JOB_USER at "
        "`date`)\"'\n"
    )


def test_submission_carries_the_slurm_options():
    sub = build_submission(plan_for(copy.deepcopy(HELLO_TASK)))
    assert (sub.name, sub.partition, sub.time_limit, sub.memory_per_node, sub.nodes,
            sub.tasks_per_node, sub.cpus_per_task) == (
        "slurm-proxy-test.generic", "hpcz-test", 30, 1000, 1, 1, 1)
    assert sub.environment == {"PATH": "/bin/:/usr/bin/:/sbin/"}
    assert sub.comment == "slurm-proxy:123e4567-e89b-12d3-a456-426614174000"


def test_the_script_runs_the_command_with_the_shell_expanding_it(tmp_path):
    task = copy.deepcopy(HELLO_TASK)
    base = str(tmp_path / "t")
    task["dirs"] = {"parent": base, "input": f"{base}/in", "output": f"{base}/o u t",
                    "error": f"{base}/err"}
    task["cwd"] = str(tmp_path)
    task["params"] = ["-n", '"job=$SLURM_JOB_ID"', "`echo ok`", "'single quoted'"]
    script = build_script(plan_for(task))
    subprocess.run(["bash", "-c", script], check=True, env={"SLURM_JOB_ID": "42", "PATH": "/bin:/usr/bin"})
    out = (tmp_path / "t" / "o u t" / "slurm-proxy-test.generic.output.txt").read_text()
    assert out == "job=42 ok single quoted"


def test_stdout_and_stderr_in_one_file_keep_both(tmp_path):
    task = copy.deepcopy(HELLO_TASK)
    task["dirs"] = {"parent": str(tmp_path), "output": str(tmp_path), "error": str(tmp_path)}
    task["cwd"] = str(tmp_path)
    task["slurm"]["error"] = task["slurm"]["output"]
    task["cmd"], task["params"] = "echo", ["out;", "echo", "err", ">&2"]
    (tmp_path / task["slurm"]["output"]).write_text("old run\n")
    subprocess.run(["bash", "-c", build_script(plan_for(task))], check=True,
                   env={"PATH": "/bin:/usr/bin"})
    assert (tmp_path / task["slurm"]["output"]).read_text() == "out\nerr\n"


def test_an_unbalanced_quote_fails_inside_the_job_not_around_it(tmp_path):
    task = copy.deepcopy(HELLO_TASK)
    task["dirs"] = {"parent": str(tmp_path), "output": str(tmp_path), "error": str(tmp_path)}
    task["cwd"] = str(tmp_path)
    task["params"] = ['"unbalanced']
    script = build_script(plan_for(task))
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    result = subprocess.run(["bash", "-c", script], env={"PATH": "/bin:/usr/bin"})
    assert result.returncode == 2           # eval's syntax error, inside the job
    assert "unexpected EOF" in (tmp_path / "slurm-proxy-test.generic.error.txt").read_text()


def test_a_directory_that_cannot_be_made_exits_73(tmp_path):
    task = copy.deepcopy(HELLO_TASK)
    blocker = tmp_path / "file"
    blocker.write_text("")
    task["dirs"] = {"parent": str(blocker / "sub"), "output": str(blocker / "sub"),
                    "error": str(blocker / "sub")}
    task["cwd"] = str(tmp_path)
    result = subprocess.run(["bash", "-c", build_script(plan_for(task))],
                            env={"PATH": "/bin:/usr/bin"}, capture_output=True)
    assert result.returncode == 73


# -- property: whatever a request puts in a field, it stays one word in its place --

_text = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"),
                                       blacklist_characters="\x85"), min_size=1, max_size=40)
_path_segment = _text.filter(lambda s: "/" not in s and s not in {".", ".."})
_path = st.lists(_path_segment, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts))
_filename = _path_segment


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parent=_path, out=_path, err=_path, cwd=_path, out_name=_filename, err_name=_filename,
       cmd=_text, params=st.lists(_text, max_size=5), job_name=_text)
def test_no_field_escapes_its_quoting(parent, out, err, cwd, out_name, err_name, cmd,
                                      params, job_name):
    task = copy.deepcopy(HELLO_TASK)
    task.update(cwd=cwd, cmd=cmd, params=params,
                dirs={"parent": parent, "output": out, "error": err})
    task["slurm"].update(output=out_name, error=err_name, job_name=job_name)
    plan = plan_for(task)
    script = build_script(plan)

    # 1. bash parses it.
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0

    # 2. Every line still has its shape, and the words are exactly the values.
    lines = script.split("\n")
    assert len(lines) == 9 and lines[-1] == ""
    d = plan["dirs"]
    assert shlex.split(lines[2]) == [f"out={d['output']}/{out_name}"]
    assert shlex.split(lines[3]) == [f"err={d['error']}/{err_name}"]
    dirs = list(dict.fromkeys([d["parent"], d["output"], d["error"]]))
    assert shlex.split(lines[4]) == ["mkdir", "-p", "--", *dirs, "||", "exit", "73"]
    same = f"{d['output']}/{out_name}" == f"{d['error']}/{err_name}"
    assert lines[5] == ('exec >"$out" 2>&1 || exit 73' if same else
                        'exec >"$out" 2>"$err" || exit 73')
    assert shlex.split(lines[6]) == ["cd", "--", plan["cwd"], "||", "exit", "66"]
    assert shlex.split(lines[7]) == ["eval", "--", " ".join([cmd, *params])]
    # job_name goes to Slurm as JSON, never into the script: changing it changes nothing.
    other = copy.deepcopy(plan)
    other["slurm"]["job_name"] = "something else entirely"
    assert build_script(other) == script
