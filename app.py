"""WSGI entry point."""

from interview import create_app

app = create_app()
