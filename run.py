"""Development server: ``python run.py`` serves on SLURM_PROXY_HOST:SLURM_PROXY_PORT,
with the poller in a thread (SLURM_PROXY_DEV_POLLER=0 to leave it out).

For production use gunicorn (``gunicorn -c docker/gunicorn.conf.py wsgi:app``).
"""
from dotenv import load_dotenv

from app import create_app
from app.logs import setup_logging


def main() -> None:
    load_dotenv()
    app = create_app()
    config = app.extensions["slurm_proxy"].config
    setup_logging(config)
    if config["SLURM_PROXY_DEV_POLLER"]:
        # Development only: the poller in a thread, sharing this process's store.
        from app.poller import start_in_thread

        start_in_thread(app)
    app.run(host=config["SLURM_PROXY_HOST"], port=config["SLURM_PROXY_PORT"],
            threaded=True, debug=config["FLASK_DEBUG"], use_reloader=False)


if __name__ == "__main__":
    main()
