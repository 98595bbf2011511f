"""gunicorn settings, read from the environment (see .env.example)."""
import multiprocessing
import os

bind = f"{os.environ.get('SLURM_PROXY_HOST', '127.0.0.1')}:{os.environ.get('SLURM_PROXY_PORT', '5001')}"
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
if os.environ.get("MONGODB_URI"):
    workers = int(os.environ.get("GUNICORN_WORKERS", str(min(4, multiprocessing.cpu_count() * 2))))
else:
    # The embedded in-memory store lives in one process: more workers would each
    # have their own, and a task submitted to one would be unknown to the others.
    workers = 1
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("SLURM_PROXY_LOG_LEVEL", "info").lower()
# One format for gunicorn's lines and the service's (SLURM_PROXY_LOG_FORMAT=json).
from app.logs import gunicorn_logconfig  # noqa: E402

logconfig_dict = gunicorn_logconfig()


def post_worker_init(worker):
    """With the embedded store the poller must live in the web worker, the only
    process that can see the records (development; production runs the poller as
    its own supervisord program against MongoDB)."""
    if not os.environ.get("MONGODB_URI"):
        from app.poller import start_in_thread

        start_in_thread(worker.wsgi)


def child_exit(server, worker):
    """Drop a dead worker's live metrics (prometheus_client multiprocess mode)."""
    from app.metrics import mark_process_dead

    mark_process_dead(worker.pid)
