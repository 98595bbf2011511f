"""``slurm-proxy``: the command-line client.

    slurm-proxy submit task.json --wait       # exits with the job's exit code
    slurm-proxy status UUID | --job-id N [--wait 60]
    slurm-proxy list [--user U] [--state S] [--name N] [--since ISO] [--limit N] [--all]
    slurm-proxy cancel UUID | --job-id N
    slurm-proxy resubmit UUID --set slurm.mem=2000 --set slurm.time=1:00:00 [--wait]
    slurm-proxy output UUID [--stream stderr] [--tail 50]
    slurm-proxy cluster

The service's URL and an API key come from --url/--key, SLURM_PROXY_URL /
SLURM_PROXY_KEY, or a JSON file ({"url": ..., "key": ...}) at $SLURM_PROXY_CONFIG or
~/.config/slurm-proxy/config.json. Output is for people; --json prints the service's
JSON answers for scripts. Exit status: 0 ok, 1 the service said no (its message on
stderr), 2 bad usage; with --wait, the job's own exit code (128+signal when killed,
1 for any other unsuccessful end).
"""
from __future__ import annotations

import json
import os
import sys
import time
import uuid as uuid_module
from typing import Any

import click
import requests

from .states import COMPLETED, FINAL_STATES



class Client:
    def __init__(self, url: str, key: str | None, as_json: bool):
        self.url, self.key, self.as_json = url.rstrip("/"), key, as_json
        self.session = requests.Session()
        self.session.trust_env = False
        if key:
            self.session.headers["Authorization"] = f"Bearer {key}"

    def call(self, method: str, path: str, *, timeout: float = 30, **kwargs) -> dict[str, Any]:
        try:
            resp = self.session.request(method, self.url + path, timeout=(5, timeout), **kwargs)
        except requests.RequestException as exc:
            raise click.ClickException(f"cannot reach {self.url}: {exc.__class__.__name__}") from None
        try:
            body = resp.json()
        except ValueError:
            raise click.ClickException(f"{self.url} answered HTTP {resp.status_code}, not JSON") from None
        if resp.status_code >= 400:
            message = body.get("message") or f"HTTP {resp.status_code}"
            raise click.ClickException(f"{message} [HTTP {resp.status_code} {body.get('code', '')}]")
        return body

    def show(self, body: Any, human) -> None:
        if self.as_json:
            click.echo(json.dumps(body, indent=2, sort_keys=True))
        else:
            human(body)


def load_settings(path: str | None) -> dict[str, str]:
    """The client's own settings file (``url``, ``key``). The client is a program of
    its own, run by users anywhere: its settings are its options, their environment
    variables (click's ``envvar``) and this file, never the service's ``config.py``."""
    path = path or os.path.expanduser("~/.config/slurm-proxy/config.json")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None


@click.group(help="The slurm-proxy command-line client: submit, watch, cancel and rerun Slurm tasks.")
@click.option("--url", envvar="SLURM_PROXY_URL", help="The service, e.g. https://slurm-proxy.example.org")
@click.option("--key", envvar="SLURM_PROXY_KEY", help="An API key (better: SLURM_PROXY_KEY or the config file)")
@click.option("--json", "as_json", is_flag=True, help="Print the service's JSON answers.")
@click.option("--config", "config_path", envvar="SLURM_PROXY_CONFIG",
              help="The settings file (default ~/.config/slurm-proxy/config.json)")
@click.pass_context
def main(ctx, url, key, as_json, config_path):
    settings = load_settings(config_path)
    ctx.obj = Client(url or settings.get("url") or "http://127.0.0.1:5001",
                     key or settings.get("key"), as_json)


# -- helpers ---------------------------------------------------------------------
def exit_status(monitor: dict[str, Any]) -> int:
    if monitor["slurm_job_state"] == COMPLETED:
        return 0
    code, signal = monitor.get("exit_code"), monitor.get("signal")
    if code:
        return code % 256 or 1
    if signal:
        return 128 + signal
    return 1


def describe_task(body: dict[str, Any]) -> None:
    m, live = body["monitor"], body.get("slurm")
    task = m["task"]
    exit_text = "" if m.get("exit_code") is None else f" exit {m['exit_code']}"
    if m.get("signal"):
        exit_text += f" signal {m['signal']}"
    click.echo(f"{task['uuid']}  {task.get('name', '-')}  user {task['username']}  "
               f"job {m.get('slurm_job_id') or '-'}  {m['slurm_job_state']}{exit_text}")
    if m.get("outputs"):
        click.echo(f"  stdout {m['outputs']['stdout']}\n  stderr {m['outputs']['stderr']}")
    if m.get("error"):
        click.echo(f"  error: {m['error'].get('message')}")
    for d in m.get("deliveries") or []:
        click.echo(f"  notify {d['method']} {d['target']} on {d['state']}: {d['status']}"
                   + (f" ({d['last_error']})" if d.get("last_error") else ""))
    if live is None and body.get("slurm_error"):
        click.echo(f"  slurm: {body['slurm_error']['message']}")


def events(client: Client, path: str, read_timeout: float = 45):
    """Server-sent events from ``path``: yields (event, data) pairs until the server
    ends the stream. The server sends a keep-alive every 15 s, so a silent connection
    for ``read_timeout`` seconds is a dead one."""
    try:
        resp = client.session.get(client.url + path, stream=True, timeout=(5, read_timeout),
                                  headers={"Accept": "text/event-stream"})
    except requests.RequestException as exc:
        raise click.ClickException(f"cannot reach {client.url}: {exc.__class__.__name__}") from None
    with resp:
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = {}
            raise click.ClickException(f"{body.get('message') or f'HTTP {resp.status_code}'} "
                                       f"[HTTP {resp.status_code} {body.get('code', '')}]")
        event, data = None, []
        for line in resp.iter_lines(decode_unicode=True):
            if line == "":
                if event:
                    yield event, json.loads("\n".join(data) or "null")
                event, data = None, []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())


def follow(client: Client, uuid: str, timeout: float | None) -> int:
    """Show each state as the service records it (its event stream: no polling),
    until the task is final; return the job's exit status."""
    deadline = time.monotonic() + timeout if timeout else None
    last = None
    while last not in FINAL_STATES:
        try:
            for event, data in events(client, f"/monitor/task_uuid/{uuid}/events"):
                if event == "state" and data["slurm_job_state"] != last:
                    last = data["slurm_job_state"]
                    click.echo(f"{time.strftime('%H:%M:%S')} {uuid} job "
                               f"{data.get('slurm_job_id') or '-'}: {last}", err=True)
                if event == "end" or last in FINAL_STATES:
                    break
                if deadline and time.monotonic() > deadline:
                    break
        except requests.RequestException:
            time.sleep(1)              # the service restarted or the network blinked
        if deadline and time.monotonic() > deadline and last not in FINAL_STATES:
            raise click.ClickException(f"still {last} after {timeout:.0f} s")
    body = client.call("GET", f"/monitor/task_uuid/{uuid}")
    client.show(body, describe_task)
    return exit_status(body["monitor"])


def parse_assignment(text: str) -> tuple[list[str], Any]:
    path, sep, raw = text.partition("=")
    if not sep or not path:
        raise click.BadParameter(f"{text!r} is not PATH=VALUE (e.g. slurm.mem=2000)")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return path.split("."), value


# -- commands --------------------------------------------------------------------
@main.command()
@click.argument("file", type=click.File("r"))
@click.option("--wait", is_flag=True, help="Follow the job; exit with its exit code.")
@click.option("--timeout", type=float, help="With --wait: give up after this many seconds.")
@click.pass_obj
def submit(client: Client, file, wait, timeout):
    """Submit the task in FILE (- for standard input): {"task": {...}} or the task itself."""
    try:
        body = json.load(file)
    except ValueError as exc:
        raise click.ClickException(f"{file.name} is not JSON: {exc}") from None
    task = body.get("task", body) if isinstance(body, dict) else body
    if isinstance(task, dict) and not task.get("uuid"):
        task["uuid"] = str(uuid_module.uuid4())
    answer = client.call("POST", "/submit", json={"task": task})
    client.show(answer, lambda a: click.echo(f"{a['uuid']} submitted as Slurm job {a['slurm_job_id']}"))
    if wait:
        sys.exit(follow(client, answer["uuid"], timeout))


@main.command()
@click.argument("uuid", required=False)
@click.option("--job-id", type=int, help="Look the task up by Slurm job id.")
@click.option("--cluster", help="With --job-id: the job's cluster (default: the first).")
@click.option("--wait", type=int, default=0,
              help="Follow the task up to this many seconds, showing each state, until it is final.")
@click.pass_obj
def status(client: Client, uuid, job_id, cluster, wait):
    """A task's record and its live Slurm job."""
    path = _task_path(uuid, job_id)
    params = {"cluster": cluster} if cluster and job_id else None
    if wait:
        uuid = uuid or client.call("GET", path, params=params)["monitor"]["task"]["uuid"]
        try:
            follow(client, uuid, wait)
        except click.ClickException as exc:
            if not exc.message.startswith("still "):
                raise
            click.echo(exc.message, err=True)
            client.show(client.call("GET", f"/monitor/task_uuid/{uuid}"), describe_task)
        return
    client.show(client.call("GET", path, params=params), describe_task)


@main.command(name="list")
@click.option("--user", help="Only this user's tasks.")
@click.option("--state", help="Only tasks in this state (e.g. RUNNING).")
@click.option("--name", help="Only this task type.")
@click.option("--since", help="Submitted at or after (ISO 8601).")
@click.option("--until", help="Submitted before (ISO 8601).")
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--all", "everything", is_flag=True, help="Follow every page.")
@click.pass_obj
def list_(client: Client, user, state, name, since, until, limit, everything):
    """Your tasks, newest first."""
    params = {k: v for k, v in {"username": user, "state": state, "name": name, "since": since,
                                "until": until, "limit": limit}.items() if v}
    tasks, cursor = [], None
    while True:
        page = client.call("GET", "/monitor", params={**params, **({"cursor": cursor} if cursor else {})})
        tasks += page["tasks"]
        cursor = page["next_cursor"]
        if not (everything and cursor):
            break

    def human(rows):
        for t in rows:
            exit_text = "-" if t.get("exit_code") is None else str(t["exit_code"])
            click.echo(f"{t['uuid']}  {t['created_at'][:19]}  {t['username']:10s} "
                       f"{t.get('name') or '-':18s} job {t.get('slurm_job_id') or '-':<8} "
                       f"{t['slurm_job_state']:13s} exit {exit_text}")
        if cursor and not everything:
            click.echo("(more: --all, or --since/--until)", err=True)
    client.show({"tasks": tasks, "next_cursor": cursor} if client.as_json else tasks, human)


@main.command()
@click.argument("uuid", required=False)
@click.option("--job-id", type=int)
@click.option("--cluster", help="With --job-id: the job's cluster (default: the first).")
@click.pass_obj
def cancel(client: Client, uuid, job_id, cluster):
    """Cancel a task's Slurm job (its end is then reported like any other)."""
    body = client.call("DELETE", _task_path(uuid, job_id),
                       params={"cluster": cluster} if cluster and job_id else None)
    client.show(body, lambda b: click.echo(f"{b['uuid']}: cancel of Slurm job {b['slurm_job_id']} requested"))


@main.command()
@click.argument("uuid")
@click.option("--set", "assignments", multiple=True, metavar="PATH=VALUE",
              help="Change a field, e.g. slurm.mem=2000 (JSON values parsed). Repeatable.")
@click.option("--file", "overrides_file", type=click.File("r"), help="Changes as JSON.")
@click.option("--wait", is_flag=True, help="Follow the new job; exit with its exit code.")
@click.pass_obj
def resubmit(client: Client, uuid, assignments, overrides_file, wait):
    """Submit a task again, with changes; the new task links to the old one."""
    overrides: dict[str, Any] = json.load(overrides_file) if overrides_file else {}
    overrides = overrides.get("task", overrides)
    for text in assignments:
        path, value = parse_assignment(text)
        node = overrides
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    answer = client.call("POST", f"/monitor/task_uuid/{uuid}/resubmit", json={"task": overrides})
    client.show(answer, lambda a: click.echo(
        f"{a['uuid']} submitted as Slurm job {a['slurm_job_id']} (again from {a['resubmitted_from']})"))
    if wait:
        sys.exit(follow(client, answer["uuid"], None))


@main.command()
@click.argument("uuid")
@click.option("--stream", type=click.Choice(["stdout", "stderr"]), default="stdout", show_default=True)
@click.option("--tail", type=int, default=100, show_default=True)
@click.pass_obj
def output(client: Client, uuid, stream, tail):
    """The last lines of a task's stdout or stderr."""
    body = client.call("GET", f"/monitor/task_uuid/{uuid}/output", params={"stream": stream, "tail": tail})
    client.show(body, lambda b: click.echo("\n".join(b["lines"])))


@main.command()
@click.option("--cluster", "name", help="Which cluster (default: the first).")
@click.pass_obj
def cluster(client: Client, name):
    """Partitions: nodes and CPUs idle, allocated and down; jobs pending and running."""
    body = client.call("GET", "/cluster", params={"cluster": name} if name else None)

    def human(b):
        for p in b["partitions"]:
            n, c, j = p["nodes"], p["cpus"], p["jobs"]
            click.echo(f"{p['name']:16s} {p.get('state') or '-':6s} nodes {n['idle']} idle "
                       f"{n['mixed']} mixed {n['allocated']} allocated {n['down']} down / {n['total']}   "
                       f"cpus {c['idle']} idle {c['allocated']} allocated {c['down']} down / {c['total']}   "
                       f"jobs {j['running']} running {j['pending']} pending")
    client.show(body, human)


def _task_path(uuid: str | None, job_id: int | None) -> str:
    if bool(uuid) == bool(job_id):
        raise click.UsageError("give a task uuid or --job-id, one of them")
    return f"/monitor/task_uuid/{uuid}" if uuid else f"/monitor/slurm_job_id/{job_id}"


if __name__ == "__main__":
    main()
