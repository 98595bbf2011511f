"""Every adapter against real recorded slurmrestd answers, replayed over HTTP by a
local server (pytest-httpserver) standing in for slurmrestd.

The recordings are in tests/fixtures/slurmrestd/<release>/<version>/, each with an
index.json of method, path, request body and status per kind:
- slurm-22.05/v0.0.38: the Debian 12 dev cluster (scripts/record_fixtures.py);
- slurm-24.11.7/v0.0.40-42 and slurm-26.05.3/v0.0.42-45: clusters built from source,
  with their /openapi/v3 documents (which the field checks below read).
v0.0.39 has no recording: only Slurm 23.02 and 24.05 serve it, and neither builds
here, so it keeps the request-shape tests (test_submit_body_shapes_per_version).
"""
from __future__ import annotations

import base64
import copy
import json
import pathlib
import re
from functools import lru_cache

import jwt
import msgspec
import pytest
from werkzeug import Response as WerkzeugResponse

from app.batch import build_submission
from app.config import SlurmAuth
from app.constants import resolve_task
from app.errors import (ConfigError, SlurmAuthError, SlurmError, SlurmJobFinished,
                        SlurmJobNotFound, SlurmRejected, SlurmVersionUnserved)
from app.schemas.task import SubmitSchema
from app.slurm.client import SlurmClient
from app.states import BASE_STATES, OTHER_FLAGS, UNFINISHED_FLAGS
from app.slurm.transport import Transport
from app.slurm.versions import ADAPTERS, version_key
from app.slurm.versions.base import decode_jobs_state
from tests.conftest import FIXTURES, HELLO_TASK

BASE = "http://slurmrestd.test:6820"
KEY = b"k" * 32
UNRECORDED = {"0.0.39"}     # served only by 23.02 and 24.05: request shapes only

RECORDINGS = sorted(((d.parent.name, d.name[1:]) for d in FIXTURES.glob("slurm-*/v*")
                     if (d / "index.json").exists()), key=lambda r: version_key(r[1]))


class Recorded:
    def __init__(self, release: str, version: str):
        self.release, self.version = release, version
        self.dir: pathlib.Path = FIXTURES / release / f"v{version}"
        self.index = json.loads((self.dir / "index.json").read_text())
        self.adapter = ADAPTERS[version]()

    def __repr__(self):
        return f"{self.release}/v{self.version}"

    def body(self, kind):
        return json.loads((self.dir / self.index[kind]["file"]).read_text())

    def job_id(self, kind):
        return int(self.index[kind]["path"].split("?")[0].rstrip("/").rsplit("/", 1)[1])

    def serve(self, rsps, kind):
        """Answer the request of ``kind`` as slurmrestd did (path without trailing slash)."""
        entry = self.index[kind]
        path = entry["path"].split("?")[0].rstrip("/")
        content = (self.dir / entry["file"]).read_bytes()
        rsps.add(entry["method"], BASE + path, body=content, status=entry["status"],
                 content_type=entry["content_type"] or None)
        return entry

    @property
    def modern(self) -> bool:
        return version_key(self.version) >= (0, 0, 40)


SERVER = [BASE]      # where make_client's transport goes: the replaying server, once up


def make_client(version: str) -> SlurmClient:
    auth = SlurmAuth("key", "slurm", key=KEY, lifespan=600)
    return SlurmClient(Transport(SERVER[0], auth, read_timeout=5), version)


class Call:
    """One request the replaying server received."""

    def __init__(self, request):
        self.request = request
        request.body = request.get_data()
        request.params = request.args


class Replay:
    """Serves recorded answers at the paths slurmrestd would (``BASE + path``)."""

    def __init__(self, httpserver):
        self.server = httpserver

    def _path(self, url: str) -> str:
        assert url.startswith(BASE), url
        return url[len(BASE):]

    def add(self, method, url, *, body=b"", status=200, content_type=None, json=None):
        if json is not None:
            body, content_type = __import__("json").dumps(json), "application/json"
        self.server.expect_oneshot_request(self._path(url), method=method).respond_with_response(
            WerkzeugResponse(body, status=status, content_type=content_type or None))

    def add_callback(self, method, url, *, callback):
        def handler(request):
            request.params = request.args
            status, headers, body = callback(request)
            return WerkzeugResponse(body, status=status, headers=headers)
        self.server.expect_request(self._path(url), method=method).respond_with_handler(handler)

    @property
    def calls(self) -> list[Call]:
        return [Call(request) for request, _ in self.server.log]


@pytest.fixture(params=RECORDINGS, ids=[f"{r}/v{v}" for r, v in RECORDINGS])
def rec(request):
    return Recorded(*request.param)


@pytest.fixture
def rsps(httpserver):
    """The recorded answers, each served once; every one must have been asked for."""
    SERVER[0] = httpserver.url_for("").rstrip("/")
    replay = Replay(httpserver)
    yield replay
    SERVER[0] = BASE
    httpserver.check_assertions()
    assert not httpserver.oneshot_handlers, "a recorded answer was never asked for"


# -- coverage of the recordings --------------------------------------------------------
def test_every_adapter_has_recordings_from_a_real_slurm():
    recorded = {v for _, v in RECORDINGS}
    assert set(ADAPTERS) - UNRECORDED <= recorded, "an adapter has no real recording"
    assert {"slurm-22.05", "slurm-24.11.7", "slurm-26.05.3"} <= {r for r, _ in RECORDINGS}


def test_the_recordings_need_nothing_outside_the_repository():
    for release, version in RECORDINGS:
        index = Recorded(release, version).index
        for entry in index.values():
            assert (FIXTURES / release / f"v{version}" / entry["file"]).is_file()


# -- submit ------------------------------------------------------------------------------
def test_submit_returns_the_job_id(rec, rsps):
    rec.serve(rsps, "submit")
    job_id = make_client(rec.version).submit(build_submission(_plan()), user="someone")
    assert job_id == rec.body("submit")["job_id"]
    sent = json.loads(rsps.calls[0].request.body)
    headers = rsps.calls[0].request.headers
    assert headers["X-SLURM-USER-NAME"] == "someone"
    claims = jwt.decode(headers["X-SLURM-USER-TOKEN"], KEY, algorithms=["HS256"])
    assert claims["sun"] == "someone" and claims["exp"] - claims["iat"] == 600
    recorded = rec.index["submit"]["request_body"]
    # Our body has the shape this real slurmrestd accepted.
    assert ("script" in sent) == ("script" in recorded)
    assert type(sent["job"]["environment"]) is type(recorded["job"]["environment"])
    for name in ("time_limit", "memory_per_node"):
        if name in recorded["job"]:
            assert type(sent["job"][name]) is type(recorded["job"][name])


def test_submit_body_shapes_per_version():
    plan = _plan()
    old = ADAPTERS["0.0.38"]().submit_body(build_submission(plan))
    assert old["script"].startswith("#!/bin/bash") and "script" not in old["job"]
    assert old["job"]["environment"] == {"PATH": "/bin/:/usr/bin/:/sbin/"}
    assert old["job"]["time_limit"] == 30 and old["job"]["memory_per_node"] == 1000
    assert old["job"]["nodes"] == "1"
    for version in sorted(set(ADAPTERS) - {"0.0.38"}, key=version_key):
        body = ADAPTERS[version]().submit_body(build_submission(plan))
        assert set(body) == {"job"} and body["job"]["script"].startswith("#!/bin/bash")
        assert body["job"]["environment"] == ["PATH=/bin/:/usr/bin/:/sbin/"]
        assert body["job"]["time_limit"] == {"set": True, "infinite": False, "number": 30}
        assert body["job"]["memory_per_node"] == {"set": True, "infinite": False, "number": 1000}


def test_bad_partition_is_rejected_with_slurms_reason(rec, rsps):
    rec.serve(rsps, "submit_bad_partition")
    with pytest.raises(SlurmRejected) as info:
        make_client(rec.version).submit(build_submission(_plan()), user="someone")
    assert "Invalid partition name specified" in info.value.message
    assert info.value.errors["slurm_errors"][0]["code"] == 2000


def test_missing_environment_is_rejected(rec, rsps):
    rec.serve(rsps, "submit_no_environment")
    with pytest.raises(SlurmRejected) as info:
        make_client(rec.version).submit(build_submission(_plan()), user="someone")
    assert info.value.errors["slurm_errors"]


# -- a job -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,state,terminal,exit_code,signal", [
    ("job_completed", "COMPLETED", None, 0, None),
    ("job_failed", "FAILED", True, 3, None),
    ("job_running", "RUNNING", False, 0, None),
    ("job_pending", "PENDING", False, 0, None),
    ("job_cancelled_final", "CANCELLED", True, None, 15),
    ("job_timeout", "TIMEOUT", True, None, 15),
])
def test_job_states_and_exit_codes(rec, rsps, kind, state, terminal, exit_code, signal):
    rec.serve(rsps, kind)
    job = make_client(rec.version).get_job(rec.job_id(kind))
    assert job.state == state
    if terminal is not None:
        assert job.is_terminal is terminal
    else:   # COMPLETED may still carry COMPLETING (v0.0.42 capture): final only without it
        assert job.is_terminal is ("COMPLETING" not in job.state_flags)
    assert job.exit_code == exit_code
    assert job.signal == signal
    assert job.user_name in {"someone", "alice"}


def test_job_just_cancelled_is_not_final_yet(rec, rsps):
    rec.serve(rsps, "job_cancelled")
    job = make_client(rec.version).get_job(rec.job_id("job_cancelled"))
    assert not job.is_terminal
    assert "COMPLETING" in (job.state, *job.state_flags)


def test_a_final_state_with_completing_is_not_final(rec):
    body = rec.body("job_completed")
    raw = body["jobs"][0]["job_state"]
    body["jobs"][0]["job_state"] = "COMPLETING" if isinstance(raw, str) else ["COMPLETED", "COMPLETING"]
    job = rec.adapter.parse_jobs(body)[0]
    assert not job.is_terminal


def test_every_job_state_a_version_declares_is_classified():
    """A state or flag we have never heard of would be read as a base state and could
    end tracking early: each version's OpenAPI enum must be known to app.states."""
    known = BASE_STATES | UNFINISHED_FLAGS | OTHER_FLAGS
    seen = set()
    for release, version in RECORDINGS:
        if not version_key(version) >= (0, 0, 40):
            continue
        enum = _job_state_enum(release, version)
        assert enum, f"{release} v{version}: no job_state enum"
        assert set(enum) <= known, f"{release} v{version}: {set(enum) - known}"
        seen |= set(enum)
    assert "EXPEDITING" in seen


@pytest.mark.parametrize("version", ["0.0.44", "0.0.45"])
def test_expediting_keeps_a_failed_job_active(version):
    """v0.0.44+: a failed job waiting for an expedited requeue will run again."""
    rec = Recorded("slurm-26.05.3", version)
    assert "EXPEDITING" in _job_state_enum(rec.release, version)
    body = rec.body("job_failed")
    body["jobs"][0]["job_state"] = ["FAILED", "EXPEDITING"]
    job = rec.adapter.parse_jobs(body)[0]
    assert (job.state, job.state_flags, job.is_terminal) == ("FAILED", ("EXPEDITING",), False)


def test_held_job_reason(rec, rsps):
    rec.serve(rsps, "job_pending")
    assert make_client(rec.version).get_job(rec.job_id("job_pending")).state_reason == "JobHeldUser"


def test_times_are_read(rec, rsps):
    rec.serve(rsps, "job_completed")
    job = make_client(rec.version).get_job(rec.job_id("job_completed"))
    raw = rec.body("job_completed")["jobs"][0]
    end = raw["end_time"]
    assert int(job.end_time.timestamp()) == (end if isinstance(end, int) else end["number"])
    assert job.end_time >= job.start_time >= job.submit_time
    assert job.elapsed == int((job.end_time - job.start_time).total_seconds())


def test_output_paths_are_expanded(rec):
    """stdout/stderr as the files on disk: Slurm's own expansion where it gives one
    (v0.0.43+), ours of %j/%u/%x otherwise; an empty stderr (Slurm 25.11+) means
    "with stdout"."""
    for job_raw, job in zip(rec.body("jobs")["jobs"], rec.adapter.parse_jobs(rec.body("jobs"))):
        for path in (job.standard_output, job.standard_error):
            assert path is None or not re.search(r"%[jJux]", path), path
        if job_raw.get("stdout_expanded"):
            assert job.standard_output == job_raw["stdout_expanded"]
        if job_raw.get("standard_error") == "" and job.standard_output:
            assert job.standard_error == job.standard_output
        if "%j" in (job_raw.get("standard_output") or ""):
            assert str(job.job_id) in job.standard_output


def test_an_empty_stderr_means_with_stdout_on_26_05():
    rec = Recorded("slurm-26.05.3", "0.0.45")
    raw = rec.body("job_completed")["jobs"][0]
    assert raw["standard_error"] == "" and raw["stdout_expanded"]
    job = rec.adapter.parse_jobs(rec.body("job_completed"))[0]
    assert job.standard_error == job.standard_output == raw["stdout_expanded"]


def test_unknown_job_is_not_found(rec, rsps):
    rec.serve(rsps, "job_not_found")
    with pytest.raises(SlurmJobNotFound):
        make_client(rec.version).get_job(999999)


def test_bad_token_on_a_job_get(rec, rsps):
    """22.05 answers HTTP 500 with an unspecified error; v0.0.40+ 511 with error 1007."""
    entry = rec.serve(rsps, "job_bad_token")
    with pytest.raises(SlurmError) as info:
        make_client(rec.version).get_job(rec.job_id("job_bad_token"))
    assert not isinstance(info.value, SlurmJobNotFound)
    if rec.modern:
        assert entry["status"] == 511
        assert isinstance(info.value, SlurmAuthError)
        assert "Authentication to slurmrestd failed" in info.value.message
    else:
        assert entry["status"] == 500
        assert "invalid or expired token" in info.value.message


def test_a_job_is_read_as_its_owner(rec, rsps):
    rec.serve(rsps, "job_completed_as_user")
    job = make_client(rec.version).get_job(rec.job_id("job_completed_as_user"), user="someone")
    assert rsps.calls[0].request.headers["X-SLURM-USER-NAME"] == "someone"
    assert job.job_id == rec.job_id("job_completed_as_user")


# -- cancel ------------------------------------------------------------------------------
def test_cancel_sends_a_delete_as_the_user(rec, rsps):
    rec.serve(rsps, "cancel")
    make_client(rec.version).cancel(rec.job_id("cancel"), user="someone")
    request = rsps.calls[0].request
    assert request.method == "DELETE" and request.headers["X-SLURM-USER-NAME"] == "someone"
    assert request.url.rstrip("/").endswith(f"/job/{rec.job_id('cancel')}")


def test_cancel_unknown_job(rec, rsps):
    rec.serve(rsps, "cancel_not_found")
    client = make_client(rec.version)
    if rec.version in ("0.0.40", "0.0.41"):
        client.cancel(999999)      # these versions say nothing at all
    else:                          # 22.05: error 2017; v0.0.42+: status[] with 2017
        with pytest.raises(SlurmJobNotFound):
            client.cancel(999999)


def test_cancel_finished_job_is_said_in_status_from_v0_0_42(rec, rsps):
    if version_key(rec.version) < (0, 0, 42):
        pytest.skip("v0.0.42 is the first to list per-job results in status[]")
    rec.serve(rsps, "cancel_again")
    with pytest.raises(SlurmJobFinished) as info:
        make_client(rec.version).cancel(rec.job_id("cancel_again"))
    assert info.value.errors["slurm_errors"][0]["code"] == 2021


# -- the job list, "no change", /jobs/state --------------------------------------------
def test_jobs_list(rec, rsps):
    rec.serve(rsps, "jobs")
    jobs = make_client(rec.version).get_jobs()
    raw = rec.body("jobs")["jobs"]
    assert [j.job_id for j in jobs] == [r["job_id"] for r in raw] and len(jobs) >= 5
    assert {j.state for j in jobs} <= BASE_STATES
    assert {"COMPLETED", "FAILED"} <= {j.state for j in jobs}


def test_no_change_since_is_not_an_empty_cluster(rec, rsps):
    """v0.0.38: HTTP 304 with no body; v0.0.40+ (recorded on 26.05): HTTP 200 with
    ``jobs: []``, ``last_update`` 0 and a warning. Either way: nothing changed, and the
    next question asks from the same time."""
    if "jobs_since_unchanged" not in rec.index:
        pytest.skip(f"{rec} has no recording of an unchanged job list (24.11 captures)")
    entry = rec.serve(rsps, "jobs_since_unchanged")
    asked = int(entry["path"].split("update_time=")[1])
    answer = make_client(rec.version).get_jobs_since(asked)
    assert answer.unchanged and answer.jobs is None
    assert answer.update_time == asked
    assert entry["status"] == (200 if rec.modern else 304)
    assert rsps.calls[0].request.params["update_time"] == str(asked)


def test_a_change_since_lists_every_job_and_the_time_to_ask_next(rec, rsps):
    kind = "jobs_since_past" if "jobs_since_past" in rec.index else "jobs"
    rec.serve(rsps, kind)
    answer = make_client(rec.version).get_jobs_since(1)
    assert not answer.unchanged and len(answer.jobs) == len(rec.body(kind)["jobs"])
    last_update = rec.body(kind).get("last_update")
    if rec.modern:     # slurmctld's own last_update
        assert answer.update_time == last_update["number"] > 0
    else:              # 22.05 gives none: the newest time that has happened, less 1 s
        newest = max(max(j["submit_time"], j["start_time"] if j["job_state"] != "PENDING" else 0)
                     for j in rec.body(kind)["jobs"])
        assert newest - 1 <= answer.update_time <= max(j["end_time"] for j in rec.body(kind)["jobs"])


def test_job_states_of_just_our_jobs(rec, rsps):
    if not rec.modern:
        assert not rec.adapter.has_jobs_state
        with pytest.raises(SlurmError):
            make_client(rec.version).get_job_states([1])
        return
    body = rec.body("jobs_state")
    states = rec.adapter.parse_jobs_state(body)
    assert len(states) == len(body["jobs"])
    assert all(isinstance(k, int) for k in states)           # job_id was a string
    first = body["jobs"][0]
    assert states[int(first["job_id"])][0] == first["state"][0]
    # Read as the poller reads it (decode_jobs_state), the same states.
    raw = (rec.dir / rec.index["jobs_state"]["file"]).read_bytes()
    assert rec.adapter.parse_jobs_state(decode_jobs_state(raw)) == states
    # Batched: 5 ids in batches of 2 -> 3 requests, each naming its ids.
    client = make_client(rec.version)
    client.adapter.jobs_state_batch = 2
    ids = [int(j["job_id"]) for j in body["jobs"][:5]]
    seen = []

    def answer(request):
        asked = request.params["job_id"].split(",")
        seen.append(asked)
        picked = [j for j in body["jobs"] if j["job_id"] in asked]
        return 200, {"Content-Type": "application/json"}, json.dumps({**body, "jobs": picked})

    rsps.add_callback("GET", BASE + f"/slurm/v{rec.version}/jobs/state", callback=answer)
    got = client.get_job_states(ids)
    assert [len(s) for s in seen] == [2, 2, 1]
    assert set(got) == set(ids)


def test_job_states_of_another_shape_are_read_the_generic_way(rsps):
    """A /jobs/state answer whose job ids are not what decode_jobs_state expects is
    still read, by the generic decoding."""
    version = "0.0.42"
    body = {"jobs": [{"job_id": {"set": True, "number": 7}, "state": "RUNNING", "extra": [1]},
                     {"job_id": "x", "state": ["PENDING"]}]}
    with pytest.raises(msgspec.ValidationError):
        decode_jobs_state(json.dumps(body).encode())
    rsps.add("GET", BASE + f"/slurm/v{version}/jobs/state", json=body)
    assert make_client(version).get_job_states([7]) == {7: ("RUNNING", ())}


# -- slurmdb -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,state,exit_code,signal", [
    ("db_job_completed", "COMPLETED", 0, None),
    ("db_job_failed", "FAILED", 3, None),
    ("db_job_cancelled", "CANCELLED", None, 15),
    ("db_job_timeout", "TIMEOUT", None, 15),
])
def test_slurmdb_records(rec, rsps, kind, state, exit_code, signal):
    if kind not in rec.index:
        pytest.skip(f"{rec}: no slurmdbd on the recording cluster")
    entry = rec.serve(rsps, kind)
    assert entry["path"].startswith(f"/slurmdb/v{rec.version}/job/")
    job = make_client(rec.version).get_db_job(rec.job_id(kind))
    assert (job.state, job.exit_code, job.signal, job.is_terminal) == (state, exit_code, signal, True)


def test_slurmdb_unknown_job(rec, rsps):
    if "db_job_not_found" not in rec.index:
        pytest.skip(f"{rec}: no slurmdbd on the recording cluster")
    rec.serve(rsps, "db_job_not_found")
    with pytest.raises(SlurmJobNotFound):
        make_client(rec.version).get_db_job(rec.job_id("db_job_not_found"))


# -- ping, diag, nodes, partitions ------------------------------------------------------
def test_ping(rec, rsps):
    rec.serve(rsps, "ping")
    pings = make_client(rec.version).ping()
    assert pings and all(p.up and p.hostname == "vm" for p in pings)
    assert pings[0].primary is True


def test_ping_with_a_refused_token(rec, rsps):
    """v0.0.40+: slurmrestd answers 200 and says slurmctld refused it; v0.0.45 in
    ``status`` (no ``pinged`` any more). 22.05: HTTP 500."""
    entry = rec.serve(rsps, "ping_bad_token")
    if entry["status"] != 200:
        with pytest.raises(SlurmError):
            make_client(rec.version).ping()
        return
    pings = make_client(rec.version).ping()
    assert pings and not any(p.up for p in pings)
    assert all(p.status for p in pings)
    if rec.version == "0.0.45":
        assert pings[0].status == "Protocol authentication error"


def test_diag_nodes_and_partitions_on_22_05(rsps):
    rec = Recorded("slurm-22.05", "0.0.38")
    for kind in ("diag", "nodes", "partitions"):
        rec.serve(rsps, kind)
    client = make_client("0.0.38")
    diag = client.diag()
    assert diag.server_thread_count and diag.jobs_submitted is not None
    [node] = client.nodes()
    assert (node.name, node.state, node.cpus, node.partitions) == ("localhost", "IDLE", 8, ("hpcz-test",))
    [part] = client.partitions()
    assert (part.name, part.state, part.total_cpus, part.total_nodes, part.nodes) == \
        ("hpcz-test", "UP", 8, 1, "localhost")


@pytest.mark.parametrize("release,version", [r for r in RECORDINGS if r[0] != "slurm-22.05"])
def test_fields_read_exist_in_the_versions_openapi(release, version):
    """What each adapter reads from ping, diag, nodes and partitions is declared by the
    OpenAPI document of a real slurmrestd serving that version."""
    adapter = ADAPTERS[version]()
    checks = {"ping": ("pings", adapter.ping_fields), "nodes": ("nodes", adapter.node_fields),
              "partitions": ("partitions", adapter.partition_fields),
              "diag": ("statistics", adapter.diag_fields)}
    for path, (key, wanted) in checks.items():
        item = _response_item(release, f"/slurm/v{version}/{path}/", key)
        for name in wanted:
            node = item
            for part in name.split("."):
                props = node.get("properties") or {}
                assert part in props, f"{release} v{version} /{path}: no field {name}"
                node = _resolve(release, props[part])


def test_ping_shape_changes_in_v0_0_45():
    fields = {v: _response_item("slurm-26.05.3", f"/slurm/v{v}/ping/", "pings")["properties"]
              for v in ("0.0.44", "0.0.45")}
    assert {"pinged", "mode"} <= set(fields["0.0.44"])
    assert not {"pinged", "mode"} & set(fields["0.0.45"]) and "status" in fields["0.0.45"]


def test_nodes_and_partitions_in_the_modern_shape():
    """v0.0.40+ shapes (lists for states, nested partition fields), built from the
    22.05 answer moved into the shape v0.0.45's OpenAPI document declares."""
    adapter = ADAPTERS["0.0.45"]()
    [node] = adapter.parse_nodes({"nodes": [{
        "name": "n1", "state": ["IDLE", "DRAIN"], "cpus": 16, "alloc_cpus": 0,
        "partitions": ["batch"], "real_memory": 64000, "alloc_memory": 0}]})
    assert (node.state, node.flags, node.partitions) == ("IDLE", ("DRAIN",), ("batch",))
    assert "DRAIN" in node.states
    [part] = adapter.parse_partitions({"partitions": [{
        "name": "batch", "partition": {"state": ["UP"]},
        "nodes": {"total": 4, "configured": "n[1-4]"}, "cpus": {"total": 64}}]})
    assert (part.state, part.total_nodes, part.total_cpus, part.nodes) == ("UP", 4, 64, "n[1-4]")


# -- version choice -------------------------------------------------------------------------
@pytest.mark.parametrize("release,expected", [
    ("slurm-22.05", "0.0.38"),
    ("slurm-24.11.7", "0.0.42"),
    ("slurm-26.05.3", "0.0.45"),
])
def test_auto_picks_the_highest_version_served_that_we_know(rsps, release, expected):
    rsps.add("GET", BASE + "/openapi/v3", body=_openapi_bytes(release),
             content_type="application/json")
    assert make_client("auto").api_version == expected


def test_auto_names_what_the_cluster_serves_when_nothing_matches(rsps):
    rsps.add("GET", BASE + "/openapi/v3", json={"paths": {"/slurm/v0.0.99/ping/": {},
                                                         "/slurm/v0.0.98/jobs/": {}}})
    with pytest.raises(SlurmRejected) as info:
        make_client("auto").api_version
    assert "serves API versions 0.0.98, 0.0.99" in info.value.message
    assert "0.0.45" in info.value.message


def test_a_version_the_cluster_does_not_serve_names_what_it_serves(rsps):
    """SLURM_API_VERSION=0.0.45 against Slurm 22.05: slurmrestd's plain-text 404
    (as the dev cluster answers an unknown path) becomes a message naming v0.0.36-38."""
    rsps.add("GET", BASE + "/slurm/v0.0.45/ping", status=404, content_type="text/plain",
             body="Unable find requested URL. Please view /openapi/v3 for API reference.")
    rsps.add("GET", BASE + "/openapi/v3", body=_openapi_bytes("slurm-22.05"),
             content_type="application/json")
    with pytest.raises(SlurmVersionUnserved) as info:
        make_client("0.0.45").ping()
    assert "does not serve API v0.0.45" in info.value.message
    assert "it serves 0.0.36, 0.0.37, 0.0.38" in info.value.message


def test_unsupported_version_is_a_config_error():
    with pytest.raises(ConfigError, match="0.0.99"):
        make_client("0.0.99")


@pytest.mark.parametrize("version", sorted(ADAPTERS, key=version_key))
def test_every_version_can_be_configured(version):
    assert make_client(version).api_version == version == ADAPTERS[version].version


# -- auth ---------------------------------------------------------------------------------
def test_token_mode_sends_the_service_token_acting_as_the_user(rsps):
    rec = Recorded("slurm-22.05", "0.0.38")
    rec.serve(rsps, "submit")
    auth = SlurmAuth("token", "slurm", token="service-token-123")
    SlurmClient(Transport(SERVER[0], auth), "0.0.38").submit(build_submission(_plan()), user="someone")
    headers = rsps.calls[0].request.headers
    assert headers["X-SLURM-USER-NAME"] == "someone"
    assert headers["X-SLURM-USER-TOKEN"] == "service-token-123"


def test_token_file_is_reread_when_it_changes(tmp_path, rsps):
    token_file = tmp_path / "token"
    token_file.write_text("SLURM_JWT=first\n")
    auth = SlurmAuth("token", "slurm", token_file=str(token_file))
    transport = Transport(BASE, auth)
    assert transport.tokens.headers(None)["X-SLURM-USER-TOKEN"] == "first"
    token_file.write_text("second\n")
    import os
    os.utime(token_file, (1, 1))
    assert transport.tokens.headers("u")["X-SLURM-USER-TOKEN"] == "second"


def test_bad_token_on_22_05_submit_says_authentication_failed(rsps):
    rec = Recorded("slurm-22.05", "0.0.38")
    rec.serve(rsps, "submit_bad_token")
    with pytest.raises(SlurmAuthError) as info:
        make_client("0.0.38").submit(build_submission(_plan()), user="someone")
    assert "Authentication to slurmrestd failed" in info.value.message
    assert "Zero Bytes" not in info.value.message


def test_401_is_an_auth_error(rec, rsps):
    if "ping_no_auth" not in rec.index:
        pytest.skip("recorded on 24.11 and 26.05 only")
    rec.serve(rsps, "ping_no_auth")
    with pytest.raises(SlurmAuthError):
        make_client(rec.version).ping()


def test_no_secret_in_repr():
    auth = SlurmAuth("key", "slurm", key=KEY)
    assert base64.b64encode(KEY).decode() not in repr(auth) and "kkkk" not in repr(auth)
    assert re.search("token=", repr(SlurmAuth("token", "s", token="abc"))) is None


# -- helpers --------------------------------------------------------------------------------
def _plan():
    return resolve_task(SubmitSchema().load({"task": copy.deepcopy(HELLO_TASK)})["task"])


@lru_cache(maxsize=None)
def _openapi_bytes(release: str) -> bytes:
    name = "openapi-v3-paths.json" if release == "slurm-22.05" else "openapi-v3.json"
    return (FIXTURES / release / name).read_bytes()


@lru_cache(maxsize=None)
def _openapi(release: str) -> dict:
    return json.loads(_openapi_bytes(release))


def _resolve(release: str, schema: dict) -> dict:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = _openapi(release)["components"]["schemas"][name]
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return _resolve(release, schema["allOf"][0])
    return schema


def _response_item(release: str, path: str, key: str) -> dict:
    """The schema of one element of ``key`` in the 200 answer to GET ``path``."""
    spec = _openapi(release)["paths"][path]["get"]["responses"]["200"]
    schema = _resolve(release, spec["content"]["application/json"]["schema"])
    field = _resolve(release, schema["properties"][key])
    return _resolve(release, field["items"]) if field.get("type") == "array" else field


def _job_state_enum(release: str, version: str) -> list[str]:
    item = _response_item(release, f"/slurm/v{version}/jobs/", "jobs")
    state = _resolve(release, item["properties"]["job_state"])
    return (_resolve(release, state.get("items") or {})).get("enum") or []



@pytest.mark.parametrize("rec", [Recorded(*r) for r in RECORDINGS
                                 if (FIXTURES / r[0] / f"v{r[1]}" / "jobs.json").exists()],
                         ids=repr)
def test_a_job_list_decoded_job_by_job_reads_as_json_loads_does(rec):
    """The poller's job lists are decoded with msgspec, each job kept as raw JSON until
    wanted: every recorded list reads the same as with json.loads, and ``keep`` reads
    only the jobs it keeps, seeing each job's id and state."""
    from app.slurm.versions.base import decode_job_list
    data = (rec.dir / "jobs.json").read_bytes()
    plain, lazy = json.loads(data), decode_job_list(data)
    assert rec.adapter.parse_jobs(lazy) == rec.adapter.parse_jobs(plain)
    assert rec.adapter.warnings(lazy) == rec.adapter.warnings(plain)
    assert rec.adapter.last_update(lazy) == rec.adapter.last_update(plain)
    seen = []

    def keep(job_id, state, flags):
        seen.append((job_id, state, flags))
        return state == "RUNNING"

    kept = rec.adapter.parse_jobs(lazy, keep)
    everything = rec.adapter.parse_jobs(plain)
    assert seen == [(j.job_id, j.state, j.state_flags) for j in everything]
    assert kept == [j for j in everything if j.state == "RUNNING"]


def _recorded_job_answers():
    """Every recorded answer that lists jobs (``GET /jobs``, ``GET /job/{id}``)."""
    for release, version in RECORDINGS:
        rec = Recorded(release, version)
        for kind, entry in rec.index.items():
            if entry["method"] != "GET" or "/slurmdb/" in entry["path"]:
                continue
            if "/jobs/state" in entry["path"] or not ("/job/" in entry["path"]
                                                      or entry["path"].rstrip("/").endswith("/jobs")):
                continue
            data = (rec.dir / entry["file"]).read_bytes()
            try:
                body = json.loads(data)
            except ValueError:
                continue
            if isinstance(body, dict) and body.get("jobs"):
                yield pytest.param(rec, data, id=f"{rec!r}:{kind}")


@pytest.mark.parametrize("rec,data", list(_recorded_job_answers()))
def test_every_recorded_job_reads_the_same_from_its_typed_fields(rec, data):
    """Jobs are decoded straight into ``JobFields`` (the fields we use, the rest
    skipped): every recorded job, of every version, reads as from ``json.loads``."""
    from app.slurm.versions.base import JobFields, decode_job_list
    typed = decode_job_list(data)
    assert all(type(j) is JobFields for j in typed["jobs"])
    assert rec.adapter.parse_jobs(typed) == rec.adapter.parse_jobs(json.loads(data))


@pytest.mark.parametrize("rec,data", list(_recorded_job_answers()))
def test_every_recorded_job_reads_as_the_dataclass_builds_it(rec, data):
    """``parse_job`` makes its ``JobInfo`` without the dataclass's ``__init__``: each
    has exactly the dataclass's fields, and equals, hashes, copies and converts like
    the job ``JobInfo(...)`` makes of the same values."""
    import dataclasses
    from app.slurm.versions import JobInfo
    from app.slurm.versions.base import decode_job_list
    for job in rec.adapter.parse_jobs(decode_job_list(data)):
        assert set(vars(job)) == set(JobInfo.__dataclass_fields__)
        built = JobInfo(**vars(job))
        assert job == built and hash(job) == hash(built)
        assert job.to_dict() == built.to_dict()
        assert dataclasses.replace(job, state="X") == dataclasses.replace(built, state="X")
        with pytest.raises(dataclasses.FrozenInstanceError):
            job.state = "X"


@pytest.mark.parametrize("change", [
    ("job_id", lambda v: str(v if isinstance(v, int) else v["number"])),   # a digit string
    ("time_limit", lambda v: 5.0),                                          # a float
    ("exit_code", lambda v: True),                                          # a bool
    ("job_state", lambda v: {"current": v}),                                # an object
])
def test_a_job_of_unexpected_types_is_read_the_generic_way(change):
    """A job whose types differ from ``JobFields`` is read from undecoded JSON as
    ``json.loads`` reads it, tolerant as ever (numbers as strings, floats...)."""
    from app.slurm.versions.base import decode_job_list
    import msgspec
    key, how = change
    for release, version in RECORDINGS:
        rec = Recorded(release, version)
        body = rec.body("job_completed")
        body["jobs"][0][key] = how(body["jobs"][0][key])
        data = json.dumps(body).encode()
        lazy = decode_job_list(data)
        assert isinstance(lazy["jobs"][0], msgspec.Raw)
        assert rec.adapter.parse_jobs(lazy) == rec.adapter.parse_jobs(json.loads(data))
        assert rec.adapter.parse_jobs(lazy, lambda *_: True) == rec.adapter.parse_jobs(lazy)
