"""The app's own files are the app user's alone: folders 0700, database files 0600."""

import os
import stat

import pytest

from interview import create_app
from interview.store.extensions import db
from interview.store.models import User
from tests.conftest import make_config


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def loose_umask():
    """Start from the common 022 umask, as a shell or service manager would leave it."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_fresh_instance_folder_and_its_databases_are_private(tmp_path, loose_umask):
    instance = tmp_path / "instance"
    config = make_config(instance, DOCUMENT_CACHE_DIR=str(instance / "documents"))
    app = create_app(config, instance_path=str(instance))
    assert _mode(instance) == 0o700
    with app.app_context():
        db.create_all()
        db.session.add(User(username="someone", role="peer", password_hash="x"))
        db.session.commit()
        for engine in db.engines.values():
            engine.dispose()
    if os.environ.get("DATABASE_URL"):
        pytest.skip("on PostgreSQL the store keeps no files here")
    for name in ("casestore.db", "identity.db"):
        assert _mode(instance / name) == 0o600, name
    leftovers = [p for p in instance.iterdir() if p.name.endswith(("-wal", "-shm"))]
    assert all(_mode(p) == 0o600 for p in leftovers), leftovers


def test_a_loose_instance_folder_and_database_are_tightened_at_start(tmp_path, loose_umask):
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o755)
    os.chmod(instance, 0o755)
    if not os.environ.get("DATABASE_URL"):
        for name in ("casestore.db", "identity.db"):
            (instance / name).touch()
            os.chmod(instance / name, 0o644)
    create_app(make_config(instance), instance_path=str(instance))
    assert _mode(instance) == 0o700
    if not os.environ.get("DATABASE_URL"):
        assert _mode(instance / "casestore.db") == 0o600
        assert _mode(instance / "identity.db") == 0o600
