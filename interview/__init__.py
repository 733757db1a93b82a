"""FACT Interview Companion: the application factory."""

import os
import secrets
import stat
from pathlib import Path

from flask import Flask

from interview.config import ROOT, load_config


def _secret_key(instance_path: str) -> str:
    """Return a persistent secret key from a 0600 file in the instance folder."""
    path = Path(instance_path) / "secret.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def _make_private(app: Flask) -> None:
    """Take group and world access from the instance folder and the SQLite files in use."""
    paths = [Path(app.instance_path)]
    uris = [app.config["SQLALCHEMY_DATABASE_URI"], *app.config["SQLALCHEMY_BINDS"].values()]
    for uri in uris:
        if isinstance(uri, str) and uri.startswith("sqlite:///"):
            store = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
            paths += [store, store.with_name(store.name + "-wal")]
            paths.append(store.with_name(store.name + "-shm"))
    for path in paths:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                os.chmod(path, mode & 0o700)
        except OSError:
            # missing (made later, under the umask) or not ours to change: nothing to do
            continue


def create_app(test_config: dict | None = None, instance_path: str | None = None) -> Flask:
    """Create and configure the app; `test_config` overrides the environment-based settings."""
    app = Flask(
        __name__,
        instance_path=instance_path,
        instance_relative_config=True,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    # Everything the app writes is for the app user alone: the SQLite stores with their -wal
    # and -shm files, key files, rendered PDFs and backups. SQLite makes its files 0644 under
    # the usual umask 022; this one place makes every new file 0600 and folder 0700. Nothing
    # the app writes is read by another user (it serves its own PDFs).
    os.umask(0o077)
    os.makedirs(app.instance_path, mode=0o700, exist_ok=True)
    app.config.from_mapping(load_config(app.instance_path))
    if test_config:
        app.config.from_mapping(test_config)
    # an instance folder or store made before the umask above (or copied in) is made private
    _make_private(app)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(app.instance_path)

    from interview import cli
    from interview.desk import listen_views
    from interview.desk import views as desk
    from interview.documents import consent_record
    from interview.documents import render as documents
    from interview.documents import views as document_views
    from interview.field import tablet
    from interview.field import views as interviews
    from interview.field.pages import page_load
    from interview.participants import views as coordinator
    from interview.store import crypto, database, kept
    from interview.store.extensions import csrf, limiter, migrate
    from interview.sync import log as sync_log
    from interview.sync import views as api
    from interview.trust import policy, study_end, study_key
    from interview.trust import views as auth
    from interview.web import compression, errors, i18n, labels, security
    from interview.web import views as main

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
    consent_record.init_app(app)
    kept.init_app(app)
    app.add_template_global(page_load)
    app.add_template_global(study_end.desk_reminder, "study_end_reminder")
    app.add_template_global(desk.open_alert_count)
    cli.init_app(app)
    sync_log.init_update_log()

    app.register_blueprint(main.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(coordinator.bp)
    app.register_blueprint(desk.bp)
    app.register_blueprint(interviews.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(desk.alerts_bp)
    app.register_blueprint(desk.codebook_bp)
    app.register_blueprint(desk.exports_bp)
    app.register_blueprint(document_views.bp)
    app.register_blueprint(desk.rescue_bp)
    app.register_blueprint(desk.audit_bp)
    app.register_blueprint(listen_views.bp)
    return app
