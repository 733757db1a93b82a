"""Command-line tools: users, guide loading and demo data."""

import re
import sys

import click
from flask import Flask
from flask_babel import force_locale
from sqlalchemy import func, select

from devdata import scale
from devdata.demo import seed_cases, seed_participants, seed_users
from interview.store.content import ContentError, load_all
from interview.store.extensions import db
from interview.store.models import ROLES, Case, User
from interview.trust import audit, backup_cli, keys, lifecycle_cli
from interview.trust.passwords import hash_password, password_problem
from interview.web.i18n import terminal_language as _terminal_language


@click.command("create-user")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--case", "cases", multiple=True, help="Case code; repeat for several.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_user(username: str, role: str, cases: tuple[str, ...], password_stdin: bool) -> None:
    """Create a user (or update role, cases and password of an existing one)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    username = username.strip().lower()
    if not re.fullmatch(r"[a-z0-9._-]{2,80}", username):
        raise click.ClickException(
            "A username is 2 to 80 letters a-z, digits, dots, dashes or underscores."
        )
    with force_locale(_terminal_language()):
        problem = password_problem(password, username, role)
    if problem:
        raise click.ClickException(problem)
    found = []
    for code in cases:
        case = db.session.execute(select(Case).where(Case.code == code)).scalar_one_or_none()
        if case is None:
            raise click.ClickException(f"No case with code {code}.")
        found.append(case)
    # usernames are matched without regard to case, as the login does
    user = db.session.execute(
        select(User).where(func.lower(User.username) == username)
    ).scalar_one_or_none()
    created = user is None
    if created:
        user = User(username=username)
        db.session.add(user)
    else:
        user.session_version += 1
    user.role = role
    user.cases = found
    user.password_hash = hash_password(password)
    db.session.flush()
    audit.record("user_created" if created else "user_updated", "user", user.id, role=role)
    db.session.commit()
    click.echo(f"{'Created' if created else 'Updated'} {role} {username}.")


@click.group("guides")
def guides() -> None:
    """Interview guide and consent-form versions."""


@guides.command("load")
def guides_load() -> None:
    """Load guide, consent-form versions and codebook themes (idempotent)."""
    try:
        report = load_all(db.session)
    except ContentError as exc:
        raise click.ClickException(str(exc)) from exc
    for name in report.added:
        click.echo(f"loaded {name}")
    for name in report.unchanged:
        click.echo(f"unchanged {name}")
    if report.themes_added:
        click.echo(f"added {report.themes_added} codebook themes")


@click.command("deactivate-user")
@click.argument("username")
@click.option("--reactivate", is_flag=True, help="Let the user log in again.")
def deactivate_user(username: str, reactivate: bool) -> None:
    """Stop a user from logging in, and end every session they have (or let them back in)."""
    user = db.session.execute(
        select(User).where(func.lower(User.username) == username.strip().lower())
    ).scalar_one_or_none()
    if user is None:
        raise click.ClickException(f"No user {username}.")
    user.active = reactivate
    # every cookie issued so far names the old version, so every session ends now
    user.session_version += 1
    audit.record("user_reactivated" if reactivate else "user_deactivated", "user", user.id)
    db.session.commit()
    click.echo(f"{'Reactivated' if reactivate else 'Deactivated'} {user.username}.")


@click.command("seed-demo")
@click.option("--reset-passwords", is_flag=True, help="Give the demo users new passwords.")
def seed_demo(reset_passwords: bool) -> None:
    """Create demo cases A, B and C, demo users and fictional participants (idempotent)."""
    try:
        load_all(db.session)
    except ContentError as exc:
        raise click.ClickException(str(exc)) from exc
    seed_cases()
    passwords = seed_users(reset_passwords)
    made = seed_participants()
    db.session.commit()
    if made:
        click.echo(f"Created {made} fictional participants with planned interviews.")
    if passwords:
        click.echo("")
        click.echo("Demo users (these passwords are shown only now; keep them):")
        for username, password in passwords.items():
            click.echo(f"  {username:<12} {password}")
        click.echo("")
    else:
        click.echo("Demo data is in place. New passwords: flask seed-demo --reset-passwords")


@click.command("init-db")
def init_db() -> None:
    """Create every table directly (tests, throwaway stores; else `flask db upgrade`)."""
    db.create_all()
    click.echo("Created the tables.")


def init_app(app: Flask) -> None:
    """Register the commands with the app."""
    app.cli.add_command(create_user)
    app.cli.add_command(deactivate_user)
    app.cli.add_command(guides)
    app.cli.add_command(seed_demo)
    app.cli.add_command(init_db)
    backup_cli.init_app(app)
    lifecycle_cli.init_app(app)
    app.cli.add_command(keys.keys)
    app.cli.add_command(scale.seed_scale_command)
