"""The pages of ``/ui/``. Each view calls the same functions as the API (``app.actions``,
``app.tasks``, ``app.watch``) with the person's key; roles are checked in
``app.access`` (``ENDPOINT_ROLES``), users inside those functions."""
from __future__ import annotations

import json
import uuid as uuid_module
from typing import Any

from flask import (Blueprint, current_app, flash, g, jsonify, redirect, render_template,
                   request, url_for)
from marshmallow import ValidationError

from .. import actions, constants, states, watch
from ..auth import Unauthorized
from ..errors import SlurmProxyError, flatten_messages
from ..schemas.task import SubmitSchema
from ..services import get_services
from ..tasks import lookup_by_uuid, record_by_uuid, submit_task
from . import CrossSiteRequest, check_same_origin_post, sign_in_with

blp = Blueprint("ui", __name__, url_prefix="/ui", template_folder="templates",
                static_folder="static")
PAGE_SIZE = 25


@blp.app_template_global()
def show(value) -> str:
    """A stored value as a person reads it: times in UTC to the second, lists joined."""
    from datetime import datetime, timezone

    if value is None or value == [] or value == "":
        return "\u2013"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


@blp.app_template_global()
def record_json(value) -> str:
    """A stored task as indented JSON text (escaped like any other text)."""
    return json.dumps(value, indent=2, default=str)


def person():
    return g.api_key


@blp.before_request
def _csrf():
    check_same_origin_post()


@blp.errorhandler(CrossSiteRequest)
def _cross_site(exc):
    return render_template("error.html", title="Request refused",
                           message=f"Refused {exc}: forms of this page can only be sent "
                                   f"from the page itself."), 403


@blp.errorhandler(SlurmProxyError)
def _error(exc: SlurmProxyError):
    if request.accept_mimetypes.best == "application/json" or request.path.endswith((".json", "/events")):
        headers = {"WWW-Authenticate": 'Bearer realm="slurm-proxy"'} if exc.status == 401 else {}
        return jsonify({"code": exc.code, "status": exc.status, "message": exc.message,
                        "errors": exc.errors}), exc.status, headers
    return render_template("error.html", title=f"{exc.status} {exc.code.replace('_', ' ')}",
                           message=exc.message), exc.status


# -- signing in ----------------------------------------------------------------------
@blp.route("/login", methods=["GET", "POST"])
def login():
    target = request.values.get("next") or ""
    if not target.startswith("/ui/") or target.startswith("//"):
        target = url_for("ui.tasks")
    if request.method == "GET":
        return render_template("login.html", next=target)
    try:
        sign_in_with(get_services().keys, request.form.get("api_key", ""))
    except Unauthorized as exc:
        return render_template("login.html", next=target, error=exc.message), 401
    return redirect(target)


@blp.post("/logout")
def logout():
    from flask import session

    session.clear()
    return redirect(url_for("ui.login"))


# -- my tasks --------------------------------------------------------------------------
@blp.get("/")
def tasks():
    from ..blueprints.monitor import ListArgs

    raw = {k: v for k, v in request.args.items() if v and k in ("username", "state", "name",
                                                               "cursor", "since", "until")}
    errors: dict[str, list[str]] = {}
    try:
        args = ListArgs().load({**raw, "limit": PAGE_SIZE})
        page = actions.list_tasks(get_services(), person(), args)
    except ValidationError as exc:
        errors = flatten_messages(exc.messages)
        page = {"tasks": [], "next_cursor": None}
    base_filters = {k: v for k, v in raw.items() if k != "cursor"}
    return render_template("tasks.html", page=page, filters=raw, errors=errors,
                           base_filters=base_filters,
                           states=sorted(states.FINAL_STATES | states.ACTIVE_STATES),
                           names=sorted(constants.TASK_METADATA))


@blp.get("/events")
def events():
    from ..blueprints.watch import event_response, visible_users

    since = watch.parse_last_event_id(request.headers.get("Last-Event-ID"))
    return event_response(watch.open_stream(get_services(), users=visible_users(person(), None),
                                            since=since, dumps=current_app.json.dumps))


# -- one task ----------------------------------------------------------------------------
@blp.get("/tasks/<string:task_uuid>")
def task(task_uuid):
    lookup = lookup_by_uuid(get_services(), task_uuid, person())
    return render_template("task.html", lookup=lookup, m=lookup["monitor"],
                           task=lookup["monitor"]["task"], live=lookup.get("slurm"),
                           final=watch.is_final(lookup["monitor"]["slurm_job_state"]),
                           key=person())


@blp.get("/tasks/<string:task_uuid>/record.json")
def task_record(task_uuid):
    return jsonify(lookup_by_uuid(get_services(), task_uuid, person()))


@blp.get("/tasks/<string:task_uuid>/events")
def task_events(task_uuid):
    from ..blueprints.watch import event_response

    record = record_by_uuid(get_services(), task_uuid)
    person().check_owner(record)
    return event_response(watch.open_stream(get_services(), uuid=record["task"]["uuid"],
                                            dumps=current_app.json.dumps))


@blp.get("/tasks/<string:task_uuid>/output.json")
def task_output(task_uuid):
    stream = "stderr" if request.args.get("stream") == "stderr" else "stdout"
    try:
        return jsonify(actions.read_output(get_services(), task_uuid, person(), stream, 200))
    except SlurmProxyError as exc:        # "not yet written" is a normal answer here
        return jsonify({"lines": [], "missing": exc.message, "code": exc.code}), 200


@blp.post("/tasks/<string:task_uuid>/cancel")
def cancel(task_uuid):
    answer = actions.cancel_by_uuid(get_services(), task_uuid, person())
    flash(f"Cancel of Slurm job {answer['slurm_job_id']} requested.")
    return redirect(url_for("ui.task", task_uuid=answer["uuid"]))


def _int_or_text(value: str):
    value = value.strip()
    return int(value) if value.isdigit() else value


@blp.post("/tasks/<string:task_uuid>/resubmit")
def resubmit(task_uuid):
    form = request.form
    old = record_by_uuid(get_services(), task_uuid)
    overrides: dict[str, Any] = {}
    if "cmd" in form and constants.TASK_METADATA.get(old["task"].get("name"), {}).get("allows_cmd", True):
        overrides["cmd"] = form["cmd"].strip()
        overrides["params"] = [line for line in form.get("params", "").splitlines() if line.strip()]
    slurm = {k: _int_or_text(form[k]) if k == "mem" else form[k].strip()
             for k in ("mem", "time") if form.get(k, "").strip()}
    if slurm:
        overrides["slurm"] = slurm
    try:
        answer = actions.resubmit_task(get_services(), task_uuid, overrides, person())
    except ValidationError as exc:
        lookup = lookup_by_uuid(get_services(), task_uuid, person())
        return render_template("task.html", lookup=lookup, m=lookup["monitor"],
                               task=lookup["monitor"]["task"], live=lookup.get("slurm"),
                               final=watch.is_final(lookup["monitor"]["slurm_job_state"]),
                               key=person(), errors=flatten_messages(exc.messages),
                               resubmit_form=form), 400
    flash(f"Submitted again as Slurm job {answer['slurm_job_id']}.")
    return redirect(url_for("ui.task", task_uuid=answer["uuid"]))


# -- submit ------------------------------------------------------------------------------
def task_from_form(form) -> dict[str, Any]:
    name = form.get("name", "generic")
    task: dict[str, Any] = {"uuid": str(uuid_module.uuid4()), "name": name,
                            "username": form.get("username", "").strip(),
                            "cwd": form.get("cwd", "").strip(),
                            "dirs": {"output": form.get("output_dir", "").strip(),
                                     "error": form.get("error_dir", "").strip()}}
    if name == "generic" or constants.TASK_METADATA.get(name, {}).get("allows_cmd"):
        task["cmd"] = form.get("cmd", "").strip()
        task["params"] = [line for line in form.get("params", "").splitlines() if line.strip()]
    slurm = {"partition": form.get("partition", "").strip(), "time": form.get("time", "").strip(),
             "mem": _int_or_text(form.get("mem", "")), "job_name": form.get("job_name", "").strip()}
    task["slurm"] = {k: v for k, v in slurm.items() if v not in ("", None)}
    return task


@blp.route("/submit", methods=["GET", "POST"])
def submit():
    key = person()
    users = [u for u in key.users if u != "*"]
    if request.method == "GET":
        return render_template("submit.html", form={}, errors={}, users=users,
                               names=constants.TASK_METADATA)
    try:
        task = SubmitSchema().load({"task": task_from_form(request.form)})["task"]
        answer = submit_task(get_services(), task, key)
    except ValidationError as exc:
        return render_template("submit.html", form=request.form, users=users,
                               names=constants.TASK_METADATA,
                               errors=flatten_messages(exc.messages)), 400
    except SlurmProxyError as exc:
        if exc.status >= 500 or exc.status == 403:
            raise
        return render_template("submit.html", form=request.form, users=users,
                               names=constants.TASK_METADATA,
                               errors=exc.errors or {"task": [exc.message]}), exc.status
    flash(f"Submitted as Slurm job {answer['slurm_job_id']}.")
    return redirect(url_for("ui.task", task_uuid=answer["uuid"]))


# -- the cluster -----------------------------------------------------------------------
@blp.get("/cluster")
def cluster():
    services = get_services()
    return render_template("cluster.html", summary=services.cluster_cache.get(services))
