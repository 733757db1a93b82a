"""FACT Interview Companion: the application factory."""

import os
import secrets
from pathlib import Path

from flask import Flask

from .config import ROOT, load_config


def _secret_key(instance_path: str) -> str:
    """Return a persistent secret key from a 0600 file in the instance folder."""
    path = Path(instance_path) / "secret.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def create_app(test_config: dict | None = None) -> Flask:
    """Create and configure the app; `test_config` overrides the environment-based settings."""
    app = Flask(
        __name__,
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.from_mapping(load_config(app.instance_path))
    if test_config:
        app.config.from_mapping(test_config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(app.instance_path)

    from . import (
        alert_views,
        api,
        auth,
        cli,
        codebook_views,
        compression,
        coordinator,
        crypto,
        database,
        desk,
        document_views,
        documents,
        errors,
        export_views,
        i18n,
        interviews,
        kept,
        kept_pages,
        labels,
        main,
        policy,
        rescue_views,
        security,
        study_key,
        sync,
        tablet,
    )
    from .extensions import csrf, limiter, migrate

    database.init_app(app)
    migrate.init_app(app, database.db, directory=str(ROOT / "migrations"))
    csrf.init_app(app)
    limiter.init_app(app)
    crypto.init_app(app)
    study_key.init_app(app)
    i18n.init_app(app)
    auth.init_app(app)
    compression.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    policy.init_app(app)
    labels.init_app(app)
    tablet.init_app(app)
    documents.init_app(app)
    kept.init_app(app)
    kept_pages.init_app(app)
    cli.init_app(app)
    sync.init_update_log()

    app.register_blueprint(main.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(coordinator.bp)
    app.register_blueprint(desk.bp)
    app.register_blueprint(interviews.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(alert_views.bp)
    app.register_blueprint(codebook_views.bp)
    app.register_blueprint(export_views.bp)
    app.register_blueprint(document_views.bp)
    app.register_blueprint(rescue_views.bp)
    return app
