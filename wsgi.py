"""The gunicorn target: ``gunicorn wsgi:app``."""
from dotenv import load_dotenv

from app import create_app
from app.logs import setup_logging

load_dotenv()
setup_logging()
app = create_app()
