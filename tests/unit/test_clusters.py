"""Several clusters: tasks, lookups, cancels, operator routes and the poller keep
them apart, even when their job ids collide."""
from __future__ import annotations

import json

import pytest

from app import create_app
from app.errors import ConfigError
from app.slurm.clusters import Clusters, cluster_configs
from app.config import load_config
from tests.conftest import FakeSlurmClient, authorized, hello_task, make_job
from tests.helpers import Clock, PollSlurm, RecordingNotifier, add_task


@pytest.fixture
def two(store, keys):
    hpc, gpu = FakeSlurmClient(), FakeSlurmClient()      # both hand out job id 1001 first
    app = create_app({}, store=store, slurm=Clusters({"hpc": hpc, "gpu": gpu}),
                     keys=keys[0], environ={})
    return authorized(app, keys[1]["admin"]), hpc, gpu


def test_a_task_goes_to_its_cluster_and_lookups_keep_them_apart(two, store):
    client, hpc, gpu = two
    default_task, gpu_task = hello_task(), hello_task(cluster="gpu")
    first = client.post("/submit", json={"task": default_task}).get_json()
    second = client.post("/submit", json={"task": gpu_task}).get_json()
    assert (first["cluster"], second["cluster"]) == ("hpc", "gpu")
    assert first["slurm_job_id"] == second["slurm_job_id"] == 1001
    assert len(hpc.submitted) == len(gpu.submitted) == 1
    assert store.get(gpu_task["uuid"])["task"]["cluster"] == "gpu"
    by_default = client.get("/monitor/slurm_job_id/1001").get_json()
    by_gpu = client.get("/monitor/slurm_job_id/1001?cluster=gpu").get_json()
    assert by_default["monitor"]["task"]["uuid"] == default_task["uuid"]
    assert by_gpu["monitor"]["task"]["uuid"] == gpu_task["uuid"]
    assert client.get("/monitor/slurm_job_id/1001?cluster=nope").status_code == 404
    resp = client.delete("/monitor/slurm_job_id/1001?cluster=gpu")
    assert resp.status_code == 202 and gpu.cancelled == [(1001, "someone")] and hpc.cancelled == []


def test_unknown_cluster_in_a_task_is_400(two):
    client, hpc, gpu = two
    resp = client.post("/submit", json={"task": hello_task(cluster="moon")})
    assert resp.status_code == 400 and "task.cluster" in resp.get_json()["errors"]
    assert hpc.submitted == gpu.submitted == []


def test_operator_routes_take_a_cluster(two):
    client, hpc, gpu = two
    gpu.raw = lambda what, job_id=None: {"pings": [{"hostname": "gpu-ctl", "ping": "UP"}]}
    body = client.get("/slurm/ping?cluster=gpu").get_json()
    assert body["cluster"] == "gpu" and body["response"]["pings"][0]["hostname"] == "gpu-ctl"
    assert body["api_version"] == gpu.api_version
    assert client.get("/slurm/ping?cluster=nope").status_code == 404
    assert client.get("/cluster?cluster=nope").status_code == 404


def test_the_poller_asks_each_cluster_once_and_one_outage_stays_local(store):
    from app.notify.dispatcher import Dispatcher
    from app.poller import Poller
    clock, email = Clock(), RecordingNotifier("email")
    hpc, gpu = PollSlurm(), PollSlurm()
    on_hpc = add_task(store, 5)                           # no cluster: the default (hpc)
    on_gpu = add_task(store, 5, cluster="gpu")             # the same job id elsewhere
    hpc.jobs[5] = make_job(5, "RUNNING")
    gpu.jobs[5] = make_job(5, "COMPLETED")
    poller = Poller(store, Clusters({"hpc": hpc, "gpu": gpu}),
                    Dispatcher(store, {"email": email}, clock=clock), clock=clock)
    poller.run_once()
    assert (hpc.requests, gpu.requests) == (1, 1)
    assert store.get(on_hpc)["slurm_job_state"] == "RUNNING"
    assert store.get(on_gpu)["slurm_job_state"] == "COMPLETED"
    assert [e["task"]["uuid"] for e, *_ in email.sent] == [on_gpu]
    hpc.down = True
    hpc.jobs[5] = make_job(5, "COMPLETED")
    gpu.jobs[6] = make_job(6, "COMPLETED")
    third = add_task(store, 6, cluster="gpu")
    counts = poller.run_once()
    assert counts["errors"] == 1 and store.get(third)["slurm_job_state"] == "COMPLETED"
    # No backoff: the next poll is one interval later, so hpc is caught up within one
    # interval of coming back.
    assert store.get(on_hpc)["slurm_job_state"] == "RUNNING" and poller.next_wait() == 10
    hpc.down = False
    poller.run_once()
    assert store.get(on_hpc)["slurm_job_state"] == "COMPLETED"


def test_clusters_file(tmp_path):
    path = tmp_path / "clusters.json"
    path.write_text(json.dumps({"clusters": [
        {"name": "hpc", "base_url": "http://hpc:6820", "token": "t"},
        {"name": "gpu", "base_url": "http://gpu:6820", "jwt_key_file": "/k", "api_version": "0.0.42"}]}))
    configs = cluster_configs(load_config({}, {"SLURM_CLUSTERS_FILE": str(path)}))
    assert list(configs) == ["hpc", "gpu"]
    assert configs["gpu"]["SLURM_API_VERSION"] == "0.0.42" and configs["gpu"]["SLURM_USER_TOKEN"] == ""
    assert configs["hpc"]["SLURM_USER_TOKEN"] == "t" and configs["hpc"]["SLURM_API_VERSION"] == "auto"
    for bad in ({"clusters": [{"base_url": "x"}]}, {"clusters": [{"name": "a"}]},
                {"clusters": [{"name": "a", "base_url": "x", "colour": 1}]},
                {"clusters": [{"name": "a", "base_url": "x"}, {"name": "a", "base_url": "y"}]}):
        path.write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match="SLURM_CLUSTERS_FILE"):
            cluster_configs(load_config({}, {"SLURM_CLUSTERS_FILE": str(path)}))
