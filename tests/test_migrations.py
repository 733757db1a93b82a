"""The Alembic migrations build exactly the schema the models describe, in both stores.

These run on fresh SQLite files always: the app fixture covers PostgreSQL (via DATABASE_URL)
with create_all, and the migrations must at least agree with the models on the store that
`make run` creates.
"""

import logging

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, select

from interview import create_app
from interview.config import ROOT
from interview.extensions import db
from tests.conftest import make_config

MIGRATIONS = str(ROOT / "migrations")


@pytest.fixture
def keep_logging():
    """env.py calls logging.config.fileConfig; give the other tests their loggers back."""
    root = logging.getLogger()
    saved_root = (root.level, list(root.handlers))
    saved = {
        name: (logger.disabled, logger.level, list(logger.handlers), logger.propagate)
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    yield
    root.setLevel(saved_root[0])
    root.handlers[:] = saved_root[1]
    for name, logger in logging.root.manager.loggerDict.items():
        if not isinstance(logger, logging.Logger):
            continue
        if name in saved:
            logger.disabled, level, handlers, logger.propagate = saved[name]
            logger.setLevel(level)
            logger.handlers[:] = handlers
        else:
            logger.disabled = False


@pytest.fixture
def migrated_app(tmp_path, keep_logging):
    """An app on two fresh SQLite stores built by `flask db upgrade`."""
    application = create_app(
        make_config(
            tmp_path,
            SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'migrated-casestore.db'}",
            SQLALCHEMY_BINDS={"identity": f"sqlite:///{tmp_path / 'migrated-identity.db'}"},
        )
    )
    with application.app_context():
        upgrade(directory=MIGRATIONS)
    yield application
    with application.app_context():
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


def _differences(engine, metadata) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return compare_metadata(context, metadata)


def test_migrated_case_store_matches_the_models(migrated_app):
    with migrated_app.app_context():
        diff = _differences(db.engine, db.metadatas[None])
        tables = set(inspect(db.engine).get_table_names())
    assert diff == []
    assert set(db.metadatas[None].tables) <= tables
    assert "alembic_version" in tables


def test_migrated_identity_store_matches_the_models(migrated_app):
    with migrated_app.app_context():
        diff = _differences(db.engines["identity"], db.metadatas["identity"])
        tables = set(inspect(db.engines["identity"]).get_table_names())
    assert diff == []
    assert {"identity_entry", "consent_signature"} <= tables
    # the identity store holds no research tables
    assert not (tables - {"alembic_version"}) & set(db.metadatas[None].tables)


def test_case_store_migration_makes_no_identity_tables(migrated_app):
    with migrated_app.app_context():
        tables = set(inspect(db.engine).get_table_names())
    assert not tables & set(db.metadatas["identity"].tables)


def test_upgrade_twice_is_harmless(migrated_app):
    with migrated_app.app_context():
        upgrade(directory=MIGRATIONS)
        assert _differences(db.engine, db.metadatas[None]) == []
        assert _differences(db.engines["identity"], db.metadatas["identity"]) == []


def test_downgrade_to_base_and_up_again(migrated_app):
    with migrated_app.app_context():
        downgrade(directory=MIGRATIONS, revision="base")
        for engine in (db.engine, db.engines["identity"]):
            left = set(inspect(engine).get_table_names()) - {"alembic_version"}
            assert left == set()
        upgrade(directory=MIGRATIONS)
        assert _differences(db.engine, db.metadatas[None]) == []
        assert _differences(db.engines["identity"], db.metadatas["identity"]) == []


def test_a_migrated_store_runs_the_app(migrated_app):
    """The store `make run` creates takes the guides, the demo data and a login."""
    runner = migrated_app.test_cli_runner()
    from flask.cli import FlaskGroup

    group = FlaskGroup(create_app=lambda: migrated_app, load_dotenv=False, set_debug_flag=False)
    result = runner.invoke(cli=group, args=["seed-demo"])
    assert result.exit_code == 0, result.output
    password = next(
        line.split()[1] for line in result.output.splitlines() if line.strip().startswith("kari ")
    )
    client = migrated_app.test_client()
    response = client.post("/login", data={"username": "kari", "password": password})
    assert response.status_code == 302
    page = client.get("/interviews/")
    assert page.status_code == 200
    with migrated_app.app_context():
        from interview.models import IdentityEntry, Participant

        assert db.session.scalars(select(Participant)).first() is not None
        assert db.session.scalars(select(IdentityEntry)).first() is not None


def test_the_comparison_does_see_a_difference(migrated_app):
    """Control: a model the migrations lack, or a changed column, shows up as a difference."""
    from sqlalchemy import Column, Integer, MetaData, String, Table

    changed = MetaData()
    for table in db.metadatas[None].tables.values():
        table.to_metadata(changed)
    Table("not_migrated", changed, Column("id", Integer, primary_key=True))
    changed.tables["participant"].append_column(Column("nickname", String(40)))
    with migrated_app.app_context():
        diff = _differences(db.engine, changed)
    kinds = {(d[0], getattr(d[1], "name", None)) for d in diff if isinstance(d, tuple)}
    assert ("add_table", "not_migrated") in kinds
    assert any(
        d[0] == "add_column" and d[3].name == "nickname" for d in diff if isinstance(d, tuple)
    )
