"""The service under gunicorn, as the image runs it, for the benchmarks."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_gunicorn(env: dict[str, str], port: int, *options: str) -> subprocess.Popen:
    """gunicorn with docker/gunicorn.conf.py (plus ``options``), once /healthz answers."""
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "docker/gunicorn.conf.py",
                             *options, "wsgi:app"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except requests.RequestException:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the service did not start")
