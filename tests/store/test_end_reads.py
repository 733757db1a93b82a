"""A request ends with COMMIT only when it wrote nothing (interview/store/database.py):
nothing half-written may ever be kept by it, on either store."""

from flask import g
from sqlalchemy import func, insert, select

from interview.store.database import end_reads
from interview.store.extensions import db
from interview.store.models import Theme


def _themes(app, key: str) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Theme).where(Theme.key == key))


def test_a_transaction_that_only_read_ends_with_commit(app, world):
    with app.app_context():
        session = db.session()
        session.execute(select(Theme)).all()
        assert end_reads(session, wrote=False, failed=False) == "commit"
        assert not session.in_transaction()


def test_a_transaction_that_wrote_or_failed_is_left_to_the_rollback(app, world):
    with app.app_context():
        session = db.session()
        session.add(Theme(key="half_written", name_nb="Halvskrevet", name_en="Half written"))
        session.flush()
        assert end_reads(session, wrote=True, failed=False) == "rollback"
        session.add(Theme(key="pending", name_nb="Ventende", name_en="Pending"))
        assert end_reads(session, wrote=False, failed=False) == "rollback"
        session.rollback()
        session.execute(select(Theme)).all()
        assert end_reads(session, wrote=False, failed=True) == "rollback"
        session.rollback()
    assert _themes(app, "half_written") == 0 and _themes(app, "pending") == 0


def test_a_request_that_wrote_without_committing_leaves_nothing(app, world):
    with app.test_request_context("/"):
        db.session.execute(insert(Theme).values(key="never_kept", name_nb="x", name_en="x"))
        if db.engine.dialect.name == "postgresql":
            # the statement marked the request as writing: it ends with the rollback
            assert g.get("store_wrote") is True
    assert _themes(app, "never_kept") == 0


def test_a_read_marks_nothing(app, world):
    with app.test_request_context("/"):
        db.session.execute(select(Theme)).all()
        assert not g.get("store_wrote")


def test_what_a_request_read_stays_readable_after_it(app, world):
    with app.app_context():
        theme = db.session.scalars(select(Theme).order_by(Theme.key)).first()
        key = theme.key
    # the context ended with COMMIT on PostgreSQL: nothing it loaded was expired by it
    assert theme.key == key
