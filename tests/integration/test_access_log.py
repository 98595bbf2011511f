"""gunicorn's access log (docker/gunicorn.conf.py): one line per request by default,
none at all with GUNICORN_ACCESS_LOG=off."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests

from tests.conftest import ROOT
from tests.integration.peers import free_port, healthy
from tests.integration.test_notify_e2e import until


def served_log(tmp_path, access_log: str | None) -> str:
    """gunicorn's output after three requests (one of them refused)."""
    port = free_port()
    env = {**os.environ, "SLURM_BASE_URL": f"http://127.0.0.1:{free_port()}",
           "SLURM_PROXY_PORT": str(port), "SLURM_PROXY_HOST": "127.0.0.1", "MONGODB_URI": "",
           "SLURM_PROXY_API_KEYS_FILE": str(tmp_path / "keys.json"),
           "SLURM_PROXY_SECRET_KEY": "x" * 32, "SLURM_USER_NAME": "slurm",
           "SLURM_USER_TOKEN": "not-used"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("GUNICORN_ACCESS_LOG", None)
    if access_log is not None:
        env["GUNICORN_ACCESS_LOG"] = access_log
    path = tmp_path / f"gunicorn-{access_log}.log"
    with open(path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "docker/gunicorn.conf.py",
                                 "wsgi:app"], cwd=ROOT, env=env, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:
            until(lambda: proc.poll() is not None or healthy(url), timeout=30)
            assert proc.poll() is None, path.read_text()[-2000:]
            assert requests.get(url + "/healthz?probe=2", timeout=5).status_code == 200
            assert requests.get(url + "/monitor/task_uuid/x", timeout=5).status_code == 401
        finally:
            proc.terminate()
            proc.wait(30)
    return path.read_text()


def test_each_request_is_logged_by_default(tmp_path):
    log = served_log(tmp_path, None)
    assert '"GET /healthz?probe=2 HTTP/1.1" 200' in log
    assert '"GET /monitor/task_uuid/x HTTP/1.1" 401' in log


@pytest.mark.parametrize("setting", ["off", "OFF"])
def test_no_access_line_when_switched_off(tmp_path, setting):
    log = served_log(tmp_path, setting)
    assert "Booting worker" in log                      # gunicorn's own lines stay
    assert "GET /healthz" not in log and "GET /monitor" not in log


def test_gunicorn_parses_requests_with_its_c_parser():
    """requirements.txt installs gunicorn-h1c; gunicorn (http_parser "auto") uses it
    only when it is importable and recent enough, else silently falls back."""
    from gunicorn.config import Config
    from gunicorn.http.message import _check_fast_parser

    assert _check_fast_parser(Config()) is True


def submit_exchange(status: str, sent):
    """What gunicorn hands its access logger for one POST /submit: the WSGI environ
    (quotes and a Basic credential in it), the request, the response, the time taken."""
    from datetime import timedelta
    from types import SimpleNamespace

    environ = {"REMOTE_ADDR": "192.0.2.1", "REQUEST_METHOD": "POST", "RAW_URI": '/submit?x="1"',
               "PATH_INFO": "/submit", "QUERY_STRING": 'x="1"', "SERVER_PROTOCOL": "HTTP/1.1",
               "HTTP_USER_AGENT": 'curl/8 "quoted"', "HTTP_REFERER": "http://example/",
               "HTTP_AUTHORIZATION": "Basic c29tZW9uZTpzZWNyZXQ=", "wsgi.errors": object()}
    req = SimpleNamespace(headers=[("USER-AGENT", 'curl/8 "quoted"'), ("HOST", "x")])
    resp = SimpleNamespace(status=status, sent=sent, headers=[("Content-Type", "application/json")])
    return environ, req, resp, timedelta(seconds=1, microseconds=2345)


@pytest.mark.parametrize("log_format", [
    None,                                                   # gunicorn's default
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s %(m)s %(U)s %(q)s %(H)s %(B)s %(f)s %(a)s '
    '%(T)s %(D)s %(M)s %(L)s %(p)s',
    '%(h)s %(u)s "%(r)s" %(s)s %(x)s',                      # an unknown atom: "-"
    '%(h)s %(u)s "%(r)s" %(s)s %(b)s %(m)s %(U)s %(q)s %(H)s %(B)s %(f)s %(a)s %(x)s',
    '%(h)s "%(r)s" %(s)s "%({user-agent}i)s" %({content-type}o)s %({raw_uri}e)s',
])
@pytest.mark.parametrize("sent", [123, None])
def test_access_lines_written_are_gunicorns_own(log_format, sent):
    """The line app.serving.Logger.access writes (only the atoms the format names)
    is the one gunicorn's own access() writes, quotes escaped alike."""
    import logging

    from gunicorn.config import Config
    from gunicorn.glogging import Logger as GunicornLogger

    from app.serving import Logger

    cfg = Config()
    cfg.set("accesslog", "-")
    if log_format:
        cfg.set("access_log_format", log_format)
    environ, req, resp, took = submit_exchange("201 CREATED", sent)
    lines = []

    class Capture(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    for logger_class in (Logger, GunicornLogger):
        log = logger_class(cfg)
        log.now = lambda: "[02/Dec/2026:06:00:00 +0000]"
        log.access_log.handlers = [Capture()]
        log.access(resp, req, environ, took)
    ours, theirs = lines
    assert ours == theirs
    assert "192.0.2.1" in ours and "201" in ours
