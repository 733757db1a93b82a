"""`flask retention run` and `flask study end`: the commands around retention and study_end.

Every line they print is in Bokmål or English after the terminal's locale.
"""

import click
from flask import Flask
from flask_babel import force_locale, format_date, ngettext
from flask_babel import gettext as _

from interview.store.database import scrub_sqlite_files
from interview.store.extensions import db
from interview.trust.retention import run_retention
from interview.trust.study_end import (
    EndPlan,
    StudyEndError,
    check_admin,
    check_date,
    end_study,
    plan_end,
    study_name,
)
from interview.web.i18n import terminal_language, today_in_oslo


@click.group("retention")
def retention() -> None:
    """Remove old sync bookkeeping and the words of deleted notes (docs/sync.md)."""


@retention.command("run")
def retention_run() -> None:
    """Apply the retention rules once and say what was removed (safe to run again)."""
    with force_locale(terminal_language()):
        try:
            report = run_retention(db.session)
        except ValueError:
            raise click.ClickException(
                _("RETENTION_SYNC_DAYS must be a whole number of days, at least 1.")
            ) from None
        db.session.commit()
        # the cleared words' old pages leave the SQLite WAL now, not at some later checkpoint
        scrub_sqlite_files((None,))
        click.echo(_("Retention: sync bookkeeping older than %(days)d days.", days=report.days))
        lines = (
            ngettext(
                "%(num)d deleted note had its words cleared",
                "%(num)d deleted notes had their words cleared",
                report.notes_cleared,
            ),
            ngettext(
                "%(num)d change waiting for a deleted note refused",
                "%(num)d changes waiting for deleted notes refused",
                report.waiting_refused,
            ),
            ngettext(
                "%(num)d answered sync change removed",
                "%(num)d answered sync changes removed",
                report.sync_changes,
            ),
            ngettext(
                "%(num)d silent tablet store removed",
                "%(num)d silent tablet stores removed",
                report.devices,
            ),
            ngettext(
                "%(num)d superseded update-log row removed",
                "%(num)d superseded update-log rows removed",
                report.update_log,
            ),
        )
        for line in lines:
            click.echo(f"  {line}")
        if not report.removed:
            click.echo(_("Nothing was left to remove."))


@click.group("study")
def study() -> None:
    """The study's end: destroy the identity key store (docs/data-protection.md §8.4)."""


@study.command("end")
@click.option("--admin", "username", help="Username of an administrator (asked when left out).")
@click.option(
    "--before-end-date",
    is_flag=True,
    help="End the study before STUDY_END_DATE. It cannot be undone.",
)
def study_end_command(username: str | None, before_end_date: bool) -> None:
    """Destroy the identity key store, paper form numbers and the identity key (irreversible)."""
    with force_locale(terminal_language()):
        _study_end(username, before_end_date)


def _fail(exc: StudyEndError) -> click.ClickException:
    return click.ClickException(exc.message())


def _study_end(username: str | None, before_end_date: bool) -> None:
    today = today_in_oslo()
    try:
        end = check_date(today, before_end_date)
    except StudyEndError as exc:
        raise _fail(exc) from None
    if today < end:
        click.echo(
            _(
                "WARNING: the study ends on %(date)s, not today. Ending it now destroys the "
                "link between participant codes and people before the date the participants "
                "were promised, and it cannot be undone.",
                date=format_date(end, "long"),
            ),
            err=True,
        )
    if not username:
        username = click.prompt(_("Username of an administrator"))
    password = click.prompt(_("Password"), hide_input=True)
    try:
        admin = check_admin(db.session, username, password)
    except StudyEndError as exc:
        raise _fail(exc) from None
    plan = plan_end(db.session)
    if not plan.work_left:
        click.echo(_("The end of the study has been carried out: nothing is left to do."))
        _environment_key(plan)
        return
    _describe(plan)
    typed = click.prompt(
        _("Type the study's name (%(name)s) to confirm", name=study_name()),
        default="",
        show_default=False,
    )
    if typed != study_name():
        raise _fail(StudyEndError("name"))
    done = end_study(db.session, admin, plan)
    click.echo(_("The end of the study is carried out and recorded in the audit log:"))
    _counts(done)
    if done.key_file is not None:
        click.echo(
            "  "
            + _(
                "the identity key file %(path)s was overwritten and removed",
                path=str(done.key_file),
            )
        )
    _environment_key(done)
    click.echo("")
    click.echo(_("Now (docs/data-protection.md, The end of the study):"))
    for step in (
        _(
            "Destroy every other copy of the identity key: the copies made with "
            "flask backup --keys-to, and any in a password manager or secret store."
        ),
        _(
            "On PostgreSQL, run VACUUM FULL on identity_entry, consent_signature and "
            "consent_record in the identity database and on consent and sync_change in the "
            "case database."
        ),
        _(
            "Start the app again: it makes a new, empty identity key. Check with "
            "flask keys status that no value is sealed with the old key."
        ),
    ):
        click.echo(f"  - {step}")


def _describe(plan: EndPlan) -> None:
    click.echo(_("Ending the study destroys, for good:"))
    _counts(plan)
    if plan.key_ids:
        click.echo(
            "  "
            + _(
                "the identity key (%(ids)s), without which no copy of the identity key "
                "store can be read",
                ids=", ".join(plan.key_ids),
            )
        )
    click.echo(_("The research data stays, under participant codes nobody can link to a person."))


def _counts(plan: EndPlan) -> None:
    entries = plan.identity_rows.get("identity_entry", 0)
    signatures = plan.identity_rows.get("consent_signature", 0)
    records = plan.identity_rows.get("consent_record", 0)
    others = sum(plan.identity_rows.values()) - entries - signatures - records
    lines = [
        ngettext(
            "%(num)d identity entry (name and contact details)",
            "%(num)d identity entries (names and contact details)",
            entries,
        ),
        ngettext(
            "%(num)d consent signature (printed name and signature image)",
            "%(num)d consent signatures (printed names and signature images)",
            signatures,
        ),
        ngettext(
            "%(num)d consent record (the signed consent as a PDF)",
            "%(num)d consent records (the signed consents as PDFs)",
            records,
        ),
        ngettext(
            "%(num)d paper form number on consents",
            "%(num)d paper form numbers on consents",
            plan.paper_numbers,
        ),
        ngettext(
            "%(num)d consent waiting in the sync log",
            "%(num)d consents waiting in the sync log",
            plan.waiting_consents,
        ),
        ngettext(
            "%(num)d audio recording (its files and rows)",
            "%(num)d audio recordings (their files and rows)",
            plan.recordings,
        ),
    ]
    if others:
        lines.append(
            ngettext(
                "%(num)d other row of the identity key store",
                "%(num)d other rows of the identity key store",
                others,
            )
        )
    for line in lines:
        click.echo(f"  {line}")


def _environment_key(plan: EndPlan) -> None:
    if plan.key_in_environment:
        click.echo(
            _(
                "The identity key comes from IDENTITY_KEY in the environment: remove it there "
                "and from the secret store it came from. The app cannot do that."
            ),
            err=True,
        )


def init_app(app: Flask) -> None:
    """Register `flask retention` and `flask study`."""
    app.cli.add_command(retention)
    app.cli.add_command(study)
