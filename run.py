"""Development server: ``python run.py`` serves on SLURM_PROXY_HOST:SLURM_PROXY_PORT.

For production use gunicorn (``gunicorn -c docker/gunicorn.conf.py wsgi:app``).
"""
import os

from dotenv import load_dotenv

from app import create_app
from app.logs import setup_logging


def main() -> None:
    load_dotenv()
    setup_logging()
    app = create_app()
    config = app.extensions["slurm_proxy"].config
    app.run(host=config["SLURM_PROXY_HOST"], port=config["SLURM_PROXY_PORT"],
            threaded=True, debug=os.environ.get("FLASK_DEBUG") == "1", use_reloader=False)


if __name__ == "__main__":
    main()
