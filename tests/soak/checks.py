"""Checks of the store after a run, read directly from the database.

`check_changes` compares the store with what the tablets made and were told: every change is
applied, or a conflict or rejection its tablet was told about (0 lost); no record or text
version is there twice (0 duplicated); every note with two versions is flagged. `check_integrity`
checks the stores themselves: SQLite's integrity_check and foreign_key_check, every foreign key
resolving (both stores, and across them), no change left claimed or waiting, every applied
change's record present at its rev, every synced record claimed and logged, and an unbroken
write-order log.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from sqlalchemy import exists, func, select
from sqlalchemy.exc import DBAPIError

from interview.store.extensions import db
from interview.store.models import (
    Consent,
    ConsentSignature,
    Debrief,
    Interview,
    InterviewEvent,
    Note,
    SyncChange,
    SyncCounter,
    UpdateLog,
)
from interview.sync.merge import CONFLICT_SEPARATOR

from .tablets import Made, Tablet

MODELS = {
    "note": Note,
    "event": InterviewEvent,
    "consent": Consent,
    "debrief": Debrief,
    "interview": Interview,
}


@dataclass
class Report:
    """Figures to print and the failures that make the run fail."""

    figures: dict[str, object] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        """Add a failure (only the first few of a kind are worth reading)."""
        if len(self.failures) < 40:
            self.failures.append(message)

    @property
    def ok(self) -> bool:
        """Tell whether nothing failed."""
        return not self.failures


def _versions(note: Note) -> list[str]:
    kept = (note.conflict or {}).get("text") if note.conflict else None
    return [note.text] + (kept.split(CONFLICT_SEPARATOR) if kept else [])


def _sync_rows() -> dict[str, tuple]:
    rows = db.session.execute(
        select(
            SyncChange.change_id,
            SyncChange.status,
            SyncChange.rev,
            SyncChange.waiting_for,
            SyncChange.entity,
            SyncChange.record_id,
            SyncChange.reason,
        )
    )
    return {r.change_id: r for r in rows}


def check_changes(app, tablets: list[Tablet]) -> Report:
    """Compare the store with every tablet's ledger: lost, duplicated, conflicts visible."""
    report = Report()
    made: list[Made] = [m for t in tablets for m in t.ledger.values()]
    with app.app_context():
        db.session.expire_all()
        rows = _sync_rows()
        notes = {n.id: n for n in db.session.scalars(select(Note))}
        present = {
            entity: set(db.session.scalars(select(model.id)))
            for entity, model in MODELS.items()
            if entity != "note"
        }
        present["note"] = set(notes)
        revs = {
            entity: dict(db.session.execute(select(model.id, model.rev)).all())
            for entity, model in MODELS.items()
        }
        flagged = {"note": {i for i, n in notes.items() if n.conflict}}
        flagged["debrief"] = set(
            db.session.scalars(select(Debrief.id).where(Debrief.conflict.is_not(None)))
        )
        lost, told_wrong, waiting_then = [], 0, 0
        statuses: Counter = Counter()
        reasons: Counter = Counter()
        for m in made:
            row = rows.get(m.change_id)
            if m.status is None:
                lost.append(f"{m.tablet} {m.entity} {m.change_id}: still in the outbox")
                continue
            if m.set_aside:
                statuses["rejected"] += 1
                reasons["built on a refused create"] += 1
                continue
            if row is None:
                lost.append(f"{m.tablet} {m.entity} {m.change_id}: told {m.status}, not in store")
                continue
            if row.status == "claimed" or row.waiting_for is not None:
                lost.append(f"{m.change_id}: left {row.status}, waiting for {row.waiting_for}")
                continue
            statuses[row.status] += 1
            if row.status == "rejected":
                reasons[row.reason or ""] += 1
            if m.status != row.status:
                told_wrong += 1
                report.fail(
                    f"{m.change_id}: tablet was told {m.status}, the store says {row.status}"
                )
            if m.status == "applied" and m.rev is None and row.rev is not None:
                waiting_then += 1
            if row.status in ("applied", "conflict"):
                if m.id not in present[m.entity]:
                    lost.append(f"{m.change_id}: {row.status}, but {m.entity} {m.id} is missing")
                elif row.rev is not None and revs[m.entity].get(m.id, 0) < row.rev:
                    lost.append(f"{m.change_id}: rev {row.rev}, the record is older")
            if row.status == "conflict" and m.id not in flagged.get(m.entity, set()):
                report.fail(f"{m.change_id}: told conflict, but {m.entity} {m.id} is not flagged")
        for message in lost[:20]:
            report.fail("lost: " + message)

        # duplicated: a record nobody made, or one text kept twice
        created = defaultdict(set)
        for m in made:
            if m.op == "create" and m.status in ("applied", "conflict"):
                created[m.entity].add(m.id)
        tablet_interviews = {m.interview_id for m in made if m.interview_id}
        extra = 0
        for entity in ("note", "event", "consent", "debrief"):
            model = MODELS[entity]
            ids = set(
                db.session.scalars(
                    select(model.id).where(model.interview_id.in_(tablet_interviews))
                )
            )
            extra += len(ids - created[entity])
            for record_id in sorted(ids - created[entity])[:5]:
                report.fail(f"duplicated: {entity} {record_id} was made by no tablet")
        twice_kept = 0
        for note in notes.values():
            versions = _versions(note)
            if len(versions) != len(set(versions)):
                twice_kept += 1
                report.fail(f"duplicated: note {note.id} keeps a version twice")
        twins = db.session.execute(
            select(func.count())
            .select_from(InterviewEvent)
            .group_by(
                InterviewEvent.interview_id,
                InterviewEvent.kind,
                InterviewEvent.recorded_at,
                InterviewEvent.recorded_by_id,
            )
            .having(func.count() > 1)
        ).all()
        for _ in twins:
            report.fail("duplicated: one event stored twice under two ids")

        words = _words(report, made, rows, notes)
        signed = set(db.session.scalars(select(ConsentSignature.consent_id)))
        named = {
            m.id
            for m in made
            if m.entity == "consent" and m.status == "applied" and m.data.get("printed_name")
        }
        for consent_id in sorted(named - signed)[:5]:
            report.fail(f"lost: consent {consent_id} has no printed name in the identity store")

    report.figures.update(
        {
            "changes made": len(made),
            "changes sent (each at least once)": sum(1 for m in made if m.sent),
            "sends incl. retries and duplicates": sum(m.sent for m in made),
            "applied": statuses["applied"],
            "  of which kept waiting, then applied": waiting_then,
            "conflict (both versions kept)": statuses["conflict"],
            "rejected (told, with reason)": statuses["rejected"],
            "lost": len(lost) + len(named - signed),
            "told wrong": told_wrong,
            "duplicated": extra + twice_kept + len(twins),
            "consents missing their identity-store half": len(named - signed),
            **words,
        }
    )
    if reasons:
        report.figures["rejection reasons"] = dict(reasons)
    return report


def _may_have_written(m: Made, row) -> bool:
    return row.status == "applied" or (row.status == "conflict" and bool(set(m.data) - {"text"}))


def _words(report: Report, made: list[Made], rows: dict, notes: dict) -> dict:
    """Check that each tablet's last text of each note is in the store or was seen and replaced.

    A text can leave the store only when a change made on a rev at or after the one it was
    written at replaced it (its writer had seen it); every other text is the note's text or one
    of its kept conflict versions, and a note with two such texts must be flagged. A change
    answered `conflict` may still have written its text when another of its fields was the one
    in conflict (the tablet sends typing and tagging in one change): only a text-only change
    answered `conflict` is known to have kept its text aside.
    """
    text_changes = defaultdict(list)  # note id -> [(made, row)]
    latest: dict[tuple[str, str], Made] = {}
    for m in made:
        if m.entity != "note" or "text" not in m.data or m.set_aside or m.status is None:
            continue
        row = rows.get(m.change_id)
        if row is None or row.status == "rejected":
            continue
        text_changes[m.id].append((m, row))
        latest[m.tablet, m.id] = m  # ledgers keep the order things were typed in
    lost_words, two_versions, unflagged = 0, 0, 0
    live: dict[str, set[str]] = defaultdict(set)
    for (_tablet, note_id), m in latest.items():
        note = notes.get(note_id)
        if note is None:
            continue
        text = m.data["text"]
        if text in _versions(note):
            live[note_id].add(text)
            continue
        row = rows[m.change_id]
        written_at = row.rev if _may_have_written(m, row) else None
        replaced = written_at is not None and any(
            _may_have_written(other, r)
            and other.base_rev is not None
            and other.base_rev >= written_at
            and other.data["text"] != text
            for other, r in text_changes[note_id]
            if other is not m
        )
        if not replaced:
            lost_words += 1
            report.fail(
                f"words lost: note {note_id}: {m.tablet}'s last text ({row.status}, "
                f"fields {sorted(m.data)}, base {m.base_rev}, rev {row.rev})"
            )
    for note_id, texts in live.items():
        if len(texts) > 1:
            two_versions += 1
            if not notes[note_id].conflict:
                unflagged += 1
                report.fail(f"conflict not visible: note {note_id} has two versions, no flag")
    return {
        "notes": len(notes),
        "notes with two versions": two_versions,
        "  of which flagged": two_versions - unflagged,
        "last texts missing (words lost)": lost_words,
    }


def check_integrity(app, kind: str) -> Report:
    """Check the stores: engine checks, foreign keys, nothing claimed, waiting or half-applied."""
    report = Report()
    with app.app_context():
        db.session.expire_all()
        if kind == "sqlite":
            results = []
            for bind, engine in db.engines.items():
                with engine.connect() as conn:
                    check = [r[0] for r in conn.exec_driver_sql("PRAGMA integrity_check")]
                    fks = list(conn.exec_driver_sql("PRAGMA foreign_key_check"))
                name = bind or "casestore"
                results.append(f"{name} {','.join(check)}")
                if check != ["ok"]:
                    report.fail(f"integrity_check {name}: {check[:5]}")
                if fks:
                    report.fail(f"foreign_key_check {name}: {len(fks)} rows, e.g. {fks[:3]}")
            report.figures["PRAGMA integrity_check"] = "; ".join(results)
        else:
            try:
                report.figures["PostgreSQL amcheck"] = _amcheck(report)
            except DBAPIError as exc:
                report.fail(f"amcheck found damage: {type(exc.orig).__name__}: {exc.orig}")
        dangling = _dangling_keys(report)
        report.figures["foreign keys not resolving"] = dangling
        half = _half_applied(report)
        report.figures.update(half)
    return report


INDEXES = """
SELECT c.oid::regclass::text FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE a.amname = 'btree' AND n.nspname = current_schema()
"""
TABLES = """
SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname = current_schema()
"""


def _amcheck(report: Report) -> str:
    """PostgreSQL's own check of its pages: every b-tree index and heap, where amcheck is there."""
    indexes = tables = 0
    for bind, engine in db.engines.items():
        with engine.connect() as conn:
            usable = conn.exec_driver_sql(
                "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'amcheck') "
                "AND has_function_privilege('bt_index_check(regclass, boolean)', 'execute') "
                "AND has_function_privilege('verify_heapam(regclass, boolean, boolean, text, "
                "bigint, bigint)', 'execute')"
            ).scalar()
            if not usable:
                return "not installed in this database (skipped)"
            for (index,) in conn.exec_driver_sql(INDEXES).all():
                # raises on a corrupt index; heapallindexed also finds heap rows it lacks
                conn.exec_driver_sql("SELECT bt_index_check(%s::regclass, true)", (index,))
                indexes += 1
            for (table,) in conn.exec_driver_sql(TABLES).all():
                bad = conn.exec_driver_sql(
                    "SELECT count(*) FROM verify_heapam(%s::regclass)", (table,)
                ).scalar()
                tables += 1
                if bad:
                    report.fail(f"verify_heapam {bind or 'casestore'} {table}: {bad} problems")
    return f"bt_index_check(heapallindexed) on {indexes} indexes, verify_heapam on {tables} tables"


def _dangling_keys(report: Report) -> int:
    total = 0
    for bind, metadata in db.metadatas.items():
        for table in metadata.sorted_tables:
            for fk in table.foreign_keys:
                child, parent = fk.parent, fk.column
                count = db.session.execute(
                    select(func.count())
                    .select_from(table)
                    .where(child.is_not(None), ~exists().where(parent == child)),
                    bind_arguments={"bind": db.engines[bind]},
                ).scalar()
                if count:
                    total += count
                    report.fail(f"{count} rows of {table.name}.{child.name} point nowhere")
    # the identity key store is a database of its own: its links are checked by hand
    consents = set(db.session.scalars(select(Consent.id)))
    signed = set(db.session.scalars(select(ConsentSignature.consent_id)))
    orphans = len(signed - consents)
    if orphans:
        total += orphans
        report.fail(f"{orphans} consent signatures belong to no consent")
    return total


def _half_applied(report: Report) -> dict:
    rows = _sync_rows()
    claimed = sum(1 for r in rows.values() if r.status == "claimed")
    waiting = sum(1 for r in rows.values() if r.waiting_for is not None)
    if claimed:
        report.fail(f"{claimed} changes left claimed (half-applied)")
    if waiting:
        report.fail(f"{waiting} changes still waiting for their record")
    missing = 0
    revs = {e: dict(db.session.execute(select(m.id, m.rev)).all()) for e, m in MODELS.items()}
    by_record = defaultdict(set)
    for r in rows.values():
        by_record[r.entity, r.record_id].add(r.status)
        if r.status in ("applied", "conflict") and r.waiting_for is None:
            have = revs[r.entity].get(r.record_id)
            if have is None or (r.rev is not None and have < r.rev):
                missing += 1
                report.fail(f"change {r.change_id} {r.status} at rev {r.rev}; record has {have}")
    unclaimed = 0
    synced = {e: set(revs[e]) for e in ("note", "event", "consent", "debrief")}
    synced["interview"] = set(
        db.session.scalars(select(Interview.id).where(Interview.created_by_id.is_not(None)))
    )
    for entity, ids in synced.items():
        for record_id in ids:
            if not by_record[entity, record_id] & {"applied", "conflict"}:
                unclaimed += 1
                report.fail(f"{entity} {record_id} is in the store without its applied change")
    logged = set(db.session.scalars(select(UpdateLog.record_id)))
    unlogged = sum(len(ids - logged) for ids in synced.values())
    if unlogged:
        report.fail(f"{unlogged} synced records have no update-log row")
    count, top = db.session.execute(select(func.count(), func.max(UpdateLog.seq))).one()
    counter = db.session.scalar(select(SyncCounter.value).where(SyncCounter.id == 1))
    gapless = count == (top or 0) == (counter or 0)
    if not gapless:
        report.fail(f"update log: {count} rows, last seq {top}, counter {counter}")
    return {
        "changes left claimed": claimed,
        "changes left waiting": waiting,
        "applied changes without their record at that rev": missing,
        "records without their applied change": unclaimed,
        "records missing from the update log": unlogged,
        "update log gapless (rows = last seq = counter)": f"{gapless} ({count}, {top}, {counter})",
    }
