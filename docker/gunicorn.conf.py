"""gunicorn settings, read from the environment (see .env.example)."""
import os

if os.environ.get("GUNICORN_WORKER_CLASS", "gevent") != "gthread":
    # Before anything imports ssl, socket or threading (app.logs below imports the
    # app and pymongo): the gevent worker patches again in each worker, harmlessly.
    from gevent import monkey

    monkey.patch_all()

import multiprocessing  # noqa: E402
import resource  # noqa: E402

bind = f"{os.environ.get('SLURM_PROXY_HOST', '127.0.0.1')}:{os.environ.get('SLURM_PROXY_PORT', '5001')}"
# gevent (default): each request is a greenlet, so waits and event streams hold no
# thread (app/serving.py); up to GUNICORN_WORKER_CONNECTIONS at once per worker.
# gthread: GUNICORN_THREADS threads per worker, each wait holding one.
if os.environ.get("GUNICORN_WORKER_CLASS", "gevent") == "gthread":
    worker_class = "gthread"
    threads = int(os.environ.get("GUNICORN_THREADS", "8"))
else:
    worker_class = "app.serving.Worker"
    worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "2000"))
# Every waiting client is an open socket: allow more than the usual 1024 files.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
_want = 65536 if _hard == resource.RLIM_INFINITY else min(_hard, 65536)
if _soft != resource.RLIM_INFINITY and _soft < _want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_want, _hard))
if os.environ.get("MONGODB_URI"):
    workers = int(os.environ.get("GUNICORN_WORKERS", str(min(4, multiprocessing.cpu_count() * 2))))
else:
    # The embedded in-memory store lives in one process: more workers would each
    # have their own, and a task submitted to one would be unknown to the others.
    workers = 1
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
# One line per request on stdout; GUNICORN_ACCESS_LOG=off when a reverse proxy in front
# logs them already (then no line is even built: app.serving.Logger).
accesslog = None if os.environ.get("GUNICORN_ACCESS_LOG", "on").strip().lower() == "off" else "-"
logger_class = "app.serving.Logger"
errorlog = "-"
# The service's own settings, read (and checked) by app/config.py, as the app will.
from app.config import load_config  # noqa: E402
from app.logs import gunicorn_logconfig  # noqa: E402

_settings = load_config()
loglevel = _settings["SLURM_PROXY_LOG_LEVEL"].lower()
# One format for gunicorn's lines and the service's (SLURM_PROXY_LOG_FORMAT=json).
logconfig_dict = gunicorn_logconfig(_settings)


def post_worker_init(worker):
    """With the embedded store the poller must live in the web worker, the only
    process that can see the records (development; production runs the poller as
    its own supervisord program against MongoDB).

    Then everything the worker has built so far (modules, the app, its schemas) is
    set aside from the garbage collector (``gc.freeze``): it lives as long as the
    worker, and each full collection walked all of it again (about a tenth of the
    app's CPU per submit, bench/submit.py). Objects made later are collected as
    before; leftover garbage is collected first."""
    if not os.environ.get("MONGODB_URI"):
        from app.poller import start_in_thread

        start_in_thread(worker.wsgi)
    import gc

    gc.collect()
    gc.freeze()


def child_exit(server, worker):
    """Drop a dead worker's live metrics (prometheus_client multiprocess mode)."""
    from app.metrics import mark_process_dead

    mark_process_dead(worker.pid, _settings["PROMETHEUS_MULTIPROC_DIR"])


def on_starting(server):
    """Without SLURM_PROXY_SECRET_KEY, make one here so that every worker signs the web
    page's session cookies alike (they then end when gunicorn restarts; set the key to
    keep them, and the same key on every host)."""
    from dotenv import dotenv_values

    if not (os.environ.get("SLURM_PROXY_SECRET_KEY") or dotenv_values(".env").get("SLURM_PROXY_SECRET_KEY")):
        import secrets

        os.environ["SLURM_PROXY_SECRET_KEY"] = secrets.token_urlsafe(32)
