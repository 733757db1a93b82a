"""`flask backup` and `flask restore`: the commands around take_backup and restore_backup."""

import sqlite3
from pathlib import Path

import click
from flask import Flask, current_app

from interview.store.extensions import db
from interview.trust import audit
from interview.trust.backup import MANIFEST, BackupError, take_backup
from interview.trust.restore import restore_backup


def _short(path: Path) -> str:
    return f"{path.name:<16} {path.stat().st_size:>12,} bytes"


@click.command("backup")
@click.argument("dest_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--keys-to",
    type=click.Path(file_okay=False, path_type=Path),
    help="Copy the key files (0600) into this folder; never one inside DEST_DIR.",
)
def backup_command(dest_dir: Path, keys_to: Path | None) -> None:
    """Back up the case store and the identity key store (online) into DEST_DIR."""
    app = current_app._get_current_object()
    try:
        result = take_backup(app, dest_dir, keys_to)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    except (sqlite3.Error, OSError) as exc:
        raise click.ClickException(f"the backup failed: {exc}") from exc
    for line in result.instructions:
        click.echo(line)
    if result.folder is not None:
        click.echo(f"Backup written to {result.folder}:")
        for name, entry in result.manifest["stores"].items():
            rows = sum(entry["tables"].values())
            click.echo(
                f"  {_short(result.folder / entry['file'])}  sha256 {entry['sha256'][:16]}…  "
                f"{len(entry['tables'])} tables, {rows} rows ({name})"
            )
        recordings = result.manifest.get("recordings")
        if recordings:
            click.echo(
                f"  {recordings['folder'] + '/':<16} {recordings['bytes']:>12,} bytes  "
                f"{recordings['files']} encrypted recording chunk files"
            )
        click.echo(f"  {_short(result.folder / MANIFEST)}")
        audit.record(
            "backup_taken", backup=result.folder.name, keys_copied=result.keys_folder is not None
        )
        db.session.commit()
    if result.keys_folder is not None:
        click.echo(f"Key files written to {result.keys_folder} (mode 0600):")
        for path in result.key_files:
            click.echo(f"  {path.relative_to(result.keys_folder)}")
        click.echo("Keep that folder on other storage than the backup; never send them together.")
    if result.uncopied_keys:
        click.echo("Key files NOT copied (the key and the data must never travel together):")
        for source in result.uncopied_keys:
            for path in source.files():
                click.echo(f"  {source.setting}: {path}")
        click.echo(
            "Without them the backup's identity data and sealed text cannot be read: copy them "
            "to a separate, protected place, or run again with --keys-to DIR."
        )
    for source in result.env_keys:
        click.echo(
            f"{source.env_setting} comes from the environment: keep it in your secret store; "
            "nothing was copied."
        )


@click.command("restore")
@click.argument("backup_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite stores that hold data.")
def restore_command(backup_dir: Path, force: bool) -> None:
    """Restore both stores from a backup folder made by `flask backup`, after checking it."""
    app = current_app._get_current_object()
    try:
        result = restore_backup(app, backup_dir, force)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    except (sqlite3.Error, OSError) as exc:
        raise click.ClickException(f"the restore failed: {exc}") from exc
    for line in result.instructions:
        click.echo(line)
    for store, entry in result.restored:
        rows = sum(entry["tables"].values())
        click.echo(f"Restored {store.name} into {store.path} ({rows} rows, sha256 verified)")
    for line in result.notes:
        click.echo(f"  {line}")
    for warning in result.warnings:
        click.echo(f"WARNING: {warning}", err=True)
    if result.restored and not result.warnings:
        click.echo("The keys in place open the restored data.")


def init_app(app: Flask) -> None:
    """Register `flask backup` and `flask restore`."""
    app.cli.add_command(backup_command)
    app.cli.add_command(restore_command)
