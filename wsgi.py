"""The gunicorn target: ``gunicorn wsgi:app``."""
from dotenv import load_dotenv

from app import create_app
from app.config import load_config
from app.logs import setup_logging

load_dotenv()
setup_logging(load_config())
app = create_app()
