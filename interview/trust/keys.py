"""Key rotation: `flask keys rotate` re-seals everything with a new key; `flask keys status`.

A rotation adds a new key to the ring file (so every process opens old and new values and
seals new ones with the new key), re-seals every value in batches, checks that no value
still names an old key, and only then writes the ring with the new key alone. A rotation
cut short leaves both keys in the file; running the command again finishes it.
"""

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import click
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app
from sqlalchemy import select

from interview.store.crypto import (
    KeyRing,
    RingSource,
    load_ring,
    open_sealed,
    seal,
    sealed_with,
    write_ring,
)
from interview.store.database import scrub_sqlite_files
from interview.store.extensions import db
from interview.store.models import (
    ConsentRecord,
    ConsentSignature,
    Debrief,
    IdentityEntry,
    InterviewEvent,
    Note,
    SyncChange,
)
from interview.trust import audit
from interview.trust.study_key import StudyKeyError

BATCH = 500


@dataclass(frozen=True)
class SealedColumn:
    """A column of sealed values and how its associated data is named."""

    model: type
    key: str  # the primary key attribute
    column: str  # the sealed column
    field: str  # the name in the associated data

    def context(self, pk) -> str:
        """Return the associated data of one row's value."""
        return f"{self.model.__table__.name}.{self.field}.{pk}"


RINGS = {
    "research": [
        SealedColumn(Note, "id", "text_enc", "text"),
        SealedColumn(Note, "id", "conflict_enc", "conflict"),
        SealedColumn(Debrief, "id", "reflection_enc", "reflection"),
        SealedColumn(Debrief, "id", "conflict_enc", "conflict"),
        SealedColumn(SyncChange, "change_id", "payload_enc", "payload"),
        SealedColumn(InterviewEvent, "id", "comment_enc", "comment"),
    ],
    "identity": [
        SealedColumn(IdentityEntry, "id", "name_enc", "name"),
        SealedColumn(IdentityEntry, "id", "contact_enc", "contact"),
        SealedColumn(ConsentSignature, "id", "printed_name_enc", "printed_name"),
        SealedColumn(ConsentSignature, "id", "signature_enc", "signature"),
        SealedColumn(ConsentRecord, "consent_id", "pdf_enc", "pdf"),
    ],
}
CONFIG = {"research": "RESEARCH_KEY", "identity": "IDENTITY_KEY"}


def _ring_source(name: str) -> RingSource:
    return current_app.extensions[f"{name}_key"]


def _values(col: SealedColumn) -> Iterator[tuple[str, bytes]]:
    pk = getattr(col.model, col.key)
    column = getattr(col.model, col.column)
    last = None
    while True:
        stmt = select(pk, column).where(column.is_not(None)).order_by(pk).limit(BATCH)
        if last is not None:
            stmt = stmt.where(pk > last)
        rows = db.session.execute(stmt).all()
        if not rows:
            return
        yield from ((r[0], bytes(r[1])) for r in rows)
        last = rows[-1][0]


def key_use(name: str) -> Counter:
    """Count the sealed values of a ring by the id of the key that sealed them."""
    counts: Counter = Counter()
    for col in RINGS[name]:
        for _pk, blob in _values(col):
            counts[sealed_with(blob)] += 1
    return counts


def reseal(name: str, ring: KeyRing, only_old: bool = False) -> int:
    """Seal every value of a ring again with its active key; return how many were sealed."""
    active = ring.ids()[-1]
    count = 0
    for col in RINGS[name]:
        table = col.model.__table__
        pk = table.c[col.key]
        for key, blob in list(_values(col)):
            if only_old and sealed_with(blob) == active:
                continue
            ctx = col.context(key)
            fresh = seal(ring, open_sealed(ring, blob, ctx), ctx)
            db.session.execute(table.update().where(pk == key).values({col.column: fresh}))
            count += 1
            if count % BATCH == 0:
                db.session.commit()
        db.session.commit()
    return count


def rotate(name: str) -> dict:
    """Rotate one ring: add a key (unless finishing a rotation), re-seal, drop the old keys."""
    source = _ring_source(name)
    ring = source.get()
    if ring.path is None:
        raise click.ClickException(
            f"The {name} key comes from {CONFIG[name]} in the environment: put the keys in "
            f"{CONFIG[name]}_FILE to rotate them."
        )
    resumed = len(ring.keys) > 1
    if not resumed:
        write_ring(ring.path, [*ring.keys, AESGCM.generate_key(bit_length=256)])
    ring = load_ring(None, ring.path)
    resealed = reseal(name, ring)
    # a process that sealed with the old key while this ran: catch it before the key goes
    for _ in range(3):
        left = {k: n for k, n in key_use(name).items() if k != ring.ids()[-1]}
        if not left:
            break
        resealed += reseal(name, load_ring(None, ring.path), only_old=True)
    else:
        raise click.ClickException("values sealed with an old key remain; run the command again")
    write_ring(ring.path, [ring.active])
    source.get()
    report = {"ring": name, "key_id": ring.ids()[-1], "resealed": resealed, "resumed": resumed}
    audit.record("keys_rotated", "key_ring", name, **report)
    db.session.commit()
    # values sealed with the dropped key stay in the WAL's old pages until a checkpoint
    scrub_sqlite_files((None,) if name == "research" else ("identity",))
    return report


@click.group("keys")
def keys() -> None:
    """Manage the encryption keys of research and identity data."""


@keys.command("rotate")
@click.option(
    "--ring",
    type=click.Choice(["all", "research", "identity"]),
    default="all",
    show_default=True,
    help="Which key ring to rotate.",
)
def rotate_command(ring: str) -> None:
    """Rotate keys: a new key, every value sealed again, the old key gone."""
    for name in ("research", "identity") if ring == "all" else (ring,):
        report = rotate(name)
        click.echo(
            f"{name}: key {report['key_id']} now seals; {report['resealed']} values sealed again"
            + (" (an interrupted rotation finished)" if report["resumed"] else "")
        )


@keys.command("status")
def status_command() -> None:
    """Show each ring's keys and how many values each key sealed, and the study key pair."""
    for name in ("research", "identity"):
        ring = _ring_source(name).get()
        use = key_use(name)
        where = ring.path or f"{CONFIG[name]} (environment)"
        click.echo(f"{name}: {len(ring.keys)} key(s) in {where}")
        for kid in ring.ids():
            marker = " (seals new values)" if kid == ring.ids()[-1] else ""
            click.echo(f"  {kid}: {use.get(kid, 0)} values{marker}")
        unknown = {k: n for k, n in use.items() if k not in ring.ids()}
        for kid, n in unknown.items():
            click.echo(f"  {kid}: {n} values sealed with a key that is NOT in the ring")
    _study_key_status()


def _study_key_status() -> None:
    """Say whether the study key pair is in place, its id, and what it opens."""
    source = current_app.extensions["study_key"]
    try:
        key = source.get()
    except StudyKeyError as exc:
        click.echo(f"study: NO usable study key ({exc}): tablets cannot seal signatures")
        return
    click.echo(f"study: RSA-{key.private_key.key_size} key pair in {source.path}")
    click.echo(
        f"  {key.kid}: opens what tablets sealed to it (signatures, printed names, rescue "
        "copies); tablets hold only its public half"
    )
