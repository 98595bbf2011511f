"""The deployment files, checked without a Docker engine: hadolint on the Dockerfile,
the compose file against the compose specification, supervisord's programs; and the
operator endpoints /readyz and the JSON log format."""
from __future__ import annotations

import configparser
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app.config import SETTINGS
from app.logs import TEXT_FORMAT, JsonFormatter, TextFormatter
from app.store import utcnow
from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert path, f"{name} is not installed (requirements-dev.txt)"
    return path


def test_dockerfile_lints_clean():
    result = subprocess.run([tool("hadolint"), str(ROOT / "docker" / "Dockerfile")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_shape():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    # build (Python packages), web (Swagger UI from npm), and the final image
    assert len(bases) == 3 and all(":" in b and not b.endswith(":latest") for b in bases)
    assert re.search(r"^USER [1-9]\d+$", text, re.M)               # numeric, not root
    assert "HEALTHCHECK" in text and "/healthz" in text
    final = text.split("FROM ")[-1]
    assert "apt-get" not in final and "gcc" not in final              # no build tools
    assert "COPY --from=build" in final and "COPY --from=web" in final
    for secret in ("TOKEN", "PASSWORD", "SECRET", "jwt"):
        assert secret not in final, f"{secret} baked into the image"


def test_compose_file_follows_the_compose_specification(tmp_path):
    compose = ROOT / "docker-compose-slurm-proxy.yml"
    check = [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec"]
    result = subprocess.run([*check, str(compose)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.yml"                   # the check does catch mistakes
    broken.write_text(compose.read_text().replace("depends_on:", "depends_onn:"))
    assert subprocess.run([*check, str(broken)], capture_output=True).returncode != 0


def test_compose_services():
    spec = yaml.safe_load((ROOT / "docker-compose-slurm-proxy.yml").read_text())
    mongo, proxy = spec["services"]["mongodb"], spec["services"]["slurm-proxy"]
    image, tag = mongo["image"].split(":")
    assert image == "mongo" and re.fullmatch(r"\d+\.\d+\.\d+", tag)
    assert "healthcheck" in mongo and "MONGO_INITDB_ROOT_PASSWORD" in mongo["environment"]
    assert any(v.endswith(":/data/db") for v in mongo["volumes"])
    assert proxy["env_file"] == ".env"
    assert proxy["depends_on"]["mongodb"]["condition"] == "service_healthy"
    assert any(str(p).endswith(":5001") for p in proxy["ports"])
    assert any(v.endswith(":/var/log/slurm-proxy") for v in proxy["volumes"])
    assert proxy["secrets"] and spec["secrets"]
    assert "authSource=admin" in proxy["environment"]["MONGODB_URI"]


def _size(text: str) -> int:
    units = {"KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}
    for unit, factor in units.items():
        if text.upper().endswith(unit):
            return int(text[:-len(unit)]) * factor
    return int(text)


def test_supervisord_runs_both_programs_bounds_their_logs_and_stops_them_gracefully():
    """The promises an operator relies on, whatever the literal values: the web
    server and the poller each restart when they die; their logs cannot fill the disk;
    and on stop, supervisord waits longer than gunicorn's graceful timeout, so requests
    in flight finish instead of being killed."""
    config = configparser.RawConfigParser()
    config.read(ROOT / "docker" / "supervisord.conf")
    programs = {s.split(":", 1)[1]: config[s] for s in config.sections() if s.startswith("program:")}
    assert set(programs) == {"web", "poller"}
    web = programs["web"]["command"].split()
    assert web[0] == "gunicorn" and web[-1] == "wsgi:app" and (ROOT / "wsgi.py").exists()
    assert (ROOT / web[web.index("-c") + 1]).exists()
    module = programs["poller"]["command"].split()[-1]
    assert programs["poller"]["command"].split()[:2] == ["python", "-m"]
    assert importlib.util.find_spec(module) is not None
    # gunicorn's config is read in a process of its own, as gunicorn does (it may
    # monkey-patch for gevent when imported).
    graceful = int(subprocess.run(
        [sys.executable, "-c", "import runpy, sys; print(runpy.run_path(sys.argv[1])"
         "['graceful_timeout'])", str(ROOT / "docker" / "gunicorn.conf.py")],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()[-1])
    total = 0
    for name, program in programs.items():
        assert program.getboolean("autorestart"), name
        assert program["stopsignal"] in ("TERM", "INT"), name
        assert int(program["stopwaitsecs"]) > graceful, name
        # The poller's dispatcher lets sends in flight finish and record their outcome
        # (NOTIFICATIONS_TIMEOUT + 5 s) before it exits.
        if name == "poller":
            assert int(program["stopwaitsecs"]) > SETTINGS["NOTIFICATIONS_TIMEOUT"].default + 5, name
        for stream in ("stdout", "stderr"):
            backups = int(program[f"{stream}_logfile_backups"])
            assert 1 <= backups <= 20, name
            total += _size(program[f"{stream}_logfile_maxbytes"]) * (backups + 1)
    assert 0 < total <= 2 * 1024 ** 3, "the programs' logs may grow past 2 GB"


def test_readyz_says_which_part_is_not_ready(app, store, fake_slurm):
    anonymous = app.test_client()                     # public, like /healthz
    resp = anonymous.get("/readyz")
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["checks"]["poller"] == {"ok": False, "error": "no_heartbeat",
                                        "leaders": {"default": None}}
    assert body["checks"]["mongodb"]["ok"] and body["checks"]["slurmrestd"]["ok"]
    store.beat("poller", utcnow(), {"interval": 10})
    assert anonymous.get("/readyz").status_code == 200

    from app.errors import SlurmUnavailable

    def down():
        raise SlurmUnavailable("slurmrestd at http://10.0.0.5:6820 is not reachable")

    fake_slurm.ping = down
    resp = anonymous.get("/readyz")
    assert resp.status_code == 503
    slurmrestd = resp.get_json()["checks"]["slurmrestd"]
    assert (slurmrestd["ok"], slurmrestd["error"]) == (False, "slurm_unavailable")
    assert slurmrestd["clusters"] == {"default": {"ok": False, "error": "slurm_unavailable"}}
    assert "10.0.0.5" not in resp.get_data(as_text=True)      # no addresses in public answers


def test_readyz_and_metrics_say_which_poller_leads(app, store, client):
    from app.poller import Poller
    from tests.helpers import PollSlurm

    poller = Poller(store, PollSlurm(), None, holder="host-a:4242:abcdef")
    poller.run_once()
    poller.run_once()
    body = app.test_client().get("/readyz").get_json()
    assert body["checks"]["poller"]["leaders"] == {"default": "host-a:4242:abcdef"}
    assert body["checks"]["poller"]["ok"]
    text = client.get("/metrics").get_data(as_text=True)
    assert 'slurm_proxy_poller_leader{cluster="default",holder="host-a:4242:abcdef"} 1.0' in text
    poller.release()                                   # a clean stop gives the lease up
    assert app.test_client().get("/readyz").get_json()["checks"]["poller"]["leaders"] == \
        {"default": None}


def test_json_log_lines_carry_the_task(caplog):
    record = logging.LogRecord("app.poller", logging.INFO, __file__, 1,
                               "state task_uuid=%s slurm_job_id=%s %s -> %s",
                               ("123e4567-e89b-12d3-a456-426614174000", 42, "RUNNING", "COMPLETED"),
                               None)
    line = json.loads(JsonFormatter().format(record))
    assert line["task_uuid"] == "123e4567-e89b-12d3-a456-426614174000"
    assert line["slurm_job_id"] == 42 and line["level"] == "INFO"
    assert line["message"].endswith("RUNNING -> COMPLETED") and line["time"].endswith("Z")


def test_log_lines_say_each_records_own_time():
    """The formatters make a second's text once and reuse it: each line still carries
    its own record's time, as logging and datetime write it, across seconds, days and
    back again."""
    from datetime import datetime, timezone

    text, as_json = TextFormatter(), JsonFormatter()
    standard = logging.Formatter(TEXT_FORMAT)
    for created in (1764730811.042, 1764730811.999, 1764730812.0005, 1764730811.5,
                    1764806399.25, 1764806400.75, 1764730811.042):
        record = logging.LogRecord("app.poller", logging.INFO, __file__, 1, "m", (), None)
        record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
        assert text.format(record) == standard.format(record)
        assert json.loads(as_json.format(record))["time"] == datetime.fromtimestamp(
            created, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.parametrize("name", ["Dockerfile", "supervisord.conf", "gunicorn.conf.py", "entrypoint.sh"])
def test_docker_files_exist(name):
    assert (ROOT / "docker" / name).exists()


def test_a_worker_sets_what_it_has_built_aside_from_the_garbage_collector():
    """gunicorn's post_worker_init freezes the objects a worker has built (gc.freeze),
    read in a process of its own as gunicorn reads its config."""
    code = ("import gc, runpy, sys, types; conf = runpy.run_path(sys.argv[1]); "
            "assert gc.get_freeze_count() == 0; "
            "conf['post_worker_init'](types.SimpleNamespace(wsgi=None)); "
            "print(gc.get_freeze_count())")
    env = {**os.environ, "MONGODB_URI": "mongodb://unused.invalid:27017"}   # no poller here
    frozen = int(subprocess.run([sys.executable, "-c", code, str(ROOT / "docker" / "gunicorn.conf.py")],
                                cwd=ROOT, env=env, capture_output=True, text=True,
                                check=True).stdout.split()[-1])
    assert frozen > 10_000
