"""Test doubles shared by the poller and notification tests."""
from __future__ import annotations

from datetime import timedelta

from app.errors import NotificationError, SlurmJobNotFound, SlurmUnavailable
from app.notify import PermanentNotificationError
from app.slurm.versions import JobsSince
from app.store import utcnow
from app.tasks import new_record
from tests.conftest import hello_task


class Clock:
    def __init__(self):
        self.now = utcnow()      # records are stamped with the real time when made

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += timedelta(seconds=seconds)


class PollSlurm:
    """Answers GET /jobs from a dict, counting requests."""

    def __init__(self):
        self.jobs = {}
        self.db = {}
        self.requests = 0
        self.down = False

    def get_jobs_since(self, update_time):
        self.requests += 1
        if self.down:
            raise SlurmUnavailable("slurmrestd at http://x is not reachable.")
        return JobsSince(list(self.jobs.values()), 1)

    def get_db_job(self, job_id):
        self.requests += 1
        if job_id not in self.db:
            raise SlurmJobNotFound("no")
        return self.db[job_id]


class RecordingNotifier:
    def __init__(self, name="email", fail=0, permanent=False, crash=False):
        self.name, self.fail, self.permanent, self.crash = name, fail, permanent, crash
        self.sent = []
        self.calls = 0

    @staticmethod
    def redact(target):
        return target

    def send(self, event, params, target, delivery_id):
        self.calls += 1
        if self.crash:
            raise RuntimeError("plugin bug")
        if self.permanent:
            raise PermanentNotificationError("recipient refused (550)")
        if self.fail:
            self.fail -= 1
            raise NotificationError("SMTP server not reachable")
        self.sent.append((event, params, target, delivery_id))


def add_task(store, job_id, state="PENDING", methods=("email",), on=None,
             webhook_url="https://hooks.example.org/x", **task_changes):
    """A task record as the service stores it (no request involved)."""
    task = hello_task(**task_changes)
    task["notification"] = {"methods": list(methods), "params": {
        "email": {"recipient": "someone@example.org", "subject": "done", "body": "my words"},
        "webhook": {"url": webhook_url}}}
    if on:
        task["notification"]["on"] = on
    record = new_record(task, state=state, source="submit", job_id=job_id)
    store.insert(record)
    return task["uuid"]
