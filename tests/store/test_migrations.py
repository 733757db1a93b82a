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
from sqlalchemy import inspect, select, text

from interview import create_app
from interview.config import ROOT
from interview.store.extensions import db
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
        from interview.store.models import IdentityEntry, Participant

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


def test_the_sealing_migration_seals_existing_words_and_the_downgrade_opens_them(
    tmp_path, keep_logging
):
    application = create_app(
        make_config(
            tmp_path,
            SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'old-casestore.db'}",
            SQLALCHEMY_BINDS={"identity": f"sqlite:///{tmp_path / 'old-identity.db'}"},
        )
    )
    words = "Ord skrevet før forseglingen – æøå"
    with application.app_context():
        upgrade(directory=MIGRATIONS, revision="84141d2128d1")
        conn = db.session
        conn.execute(
            text("INSERT INTO \"case\" (id, code, name_nb, name_en) VALUES (1, 'A', 'A', 'A')")
        )
        conn.execute(
            text(
                "INSERT INTO guide_version (id, key, version, published, checksum, content,"
                " loaded_at) VALUES (1, 'g', 1, '2026-11-01', 'x', '{}', '2026-11-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO participant (id, code, case_id, preferred_language, status,"
                " created_at) VALUES ('p1', 'A-AAAA', 1, 'nb', 'consented', '2026-11-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO interview (id, participant_id, guide_version_id, language, status,"
                " place_kind, planned_at, current_section, rev, created_at, updated_at)"
                " VALUES ('i1', 'p1', 1, 'nb', 'in_progress', 'home', '2026-11-01',"
                " 0, 1, '2026-11-01', '2026-11-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO note (id, interview_id, question_key, text, possible_quote,"
                " conflict, field_revs, rev, created_at, updated_at) VALUES ('n1', 'i1',"
                " 'context.services', :w, 0, :c, '{}', 1, '2026-11-01', '2026-11-01')"
            ),
            {"w": words, "c": '{"text": "Den andre"}'},
        )
        conn.execute(
            text(
                "INSERT INTO note (id, interview_id, question_key, text, possible_quote,"
                " field_revs, rev, created_at, updated_at) VALUES ('n2', 'i1',"
                " 'context.services', 'Ring henne på 912 34 567', 0, '{}', 1, '2026-11-01',"
                " '2026-11-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO interview_event (id, interview_id, kind, data, recorded_at, rev)"
                " VALUES ('e1', 'i1', 'stop', :d, '2026-11-01', 1)"
            ),
            {"d": '{"reason": "other", "comment": "Sliten og lei seg"}'},
        )
        conn.commit()
        upgrade(directory=MIGRATIONS)
        raw = conn.execute(text("SELECT text_enc, conflict_enc FROM note WHERE id = 'n1'")).one()
        assert words.encode() not in bytes(raw[0])
        assert b"Den andre" not in bytes(raw[1])
        from interview.store.models import Note

        note = conn.get(Note, "n1")
        assert note.text == words
        assert note.identifier_kinds is None
        # the guard's findings are worked out once for notes written before they were kept
        assert conn.get(Note, "n2").identifier_kinds == "phone"
        assert note.conflict == {"text": "Den andre"}
        from interview.store.models import InterviewEvent

        event = conn.get(InterviewEvent, "e1")
        assert event.data == {"reason": "other"}
        assert event.comment == "Sliten og lei seg"
        raw_event = conn.execute(text("SELECT data, comment_enc FROM interview_event")).one()
        assert "Sliten" not in str(raw_event[0])
        assert b"Sliten" not in bytes(raw_event[1])
        conn.commit()
        downgrade(directory=MIGRATIONS, revision="84141d2128d1")
        back = conn.execute(text("SELECT text, conflict FROM note WHERE id = 'n1'")).one()
        assert back[0] == words
        assert "Den andre" in back[1]
        assert (
            "Sliten og lei seg" in conn.execute(text("SELECT data FROM interview_event")).scalar()
        )
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()
