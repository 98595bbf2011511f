"""Event streams (server-sent events) of task state changes, for programs and the web
page: one task's, or every task the key may see. They are fed by ``app.watch`` from
what the store records, never by asking Slurm."""
from __future__ import annotations

from flask import Response, current_app, request
from marshmallow import Schema

from .. import watch
from ..access import current_key
from ..schemas.fields import UserName
from ..services import get_services
from ..tasks import record_by_uuid
from .common import Blueprint, document_errors

blp = Blueprint("watch", __name__, description="Follow task state changes as they happen.")

EVENT_STREAM_DOC = {"200": {
    "description": "`text/event-stream`: an `event: state` message per change, its `data` "
                   "a JSON object (`uuid`, `name`, `username`, `slurm_job_id`, "
                   "`slurm_job_state`, `final`, `exit_code`, `signal`, `created_at`, "
                   "`updated_at`, `end_time`), its `id` the change time in ms (send it "
                   "back as `Last-Event-ID` to resume); a `: keepalive` comment every 15 s.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}}}}


def event_response(events) -> Response:
    return Response(events, mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def visible_users(key, username: str | None):
    """The users whose tasks ``key`` may see (None: everyone), narrowed to ``username``."""
    if username:
        key.check_user(username)
        return [username]
    return None if "*" in key.users else list(key.users)


@blp.route("/monitor/task_uuid/<string:task_uuid>/events", methods=["GET"])
@blp.doc(responses=EVENT_STREAM_DOC)
@document_errors(blp, 404, 503)
def task_events(task_uuid):
    """A task's state changes as they happen: its current state first, then each new
    one; ends with `event: end` once the state is final."""
    services = get_services()
    record = record_by_uuid(services, task_uuid)
    current_key().check_owner(record)
    return event_response(watch.open_stream(services, uuid=record["task"]["uuid"],
                                            dumps=current_app.json.dumps))


class EventsArgs(Schema):
    username = UserName(metadata={"description": "Only this user's tasks."})


@blp.route("/monitor/events", methods=["GET"])
@blp.arguments(EventsArgs, location="query")
@blp.doc(responses=EVENT_STREAM_DOC)
@document_errors(blp, 400, 503)
def all_events(args):
    """State changes (and new tasks) of every task this key may see, as they happen.
    With `Last-Event-ID`, the changes missed since that event come first."""
    users = visible_users(current_key(), args.get("username"))
    since = watch.parse_last_event_id(request.headers.get("Last-Event-ID"))
    return event_response(watch.open_stream(get_services(), users=users, since=since,
                                            dumps=current_app.json.dumps))
