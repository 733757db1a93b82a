"""The coordinator's alerts: overdue, distress, follow-up, debrief talk, lost work, conflicts,
tablets; and the interviews under way with their last check-in."""

from datetime import timedelta

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from interview.desk import alerts
from interview.store.extensions import db
from interview.store.models import AlertAck, User, utcnow
from interview.trust import audit
from interview.trust.access import cases_coordinated_by, roles_required

bp = Blueprint("alerts", __name__, url_prefix="/desk/alerts")

COORDINATING = ("coordinator", "admin")


def _scope() -> tuple[set[int], dict[int, str]]:
    """The cases whose alerts the current user sees, and their codes."""
    codes = {c.id: c.code for c in cases_coordinated_by(current_user)}
    return set(codes), codes


def open_alerts(include_acknowledged: bool = False) -> list[alerts.Alert]:
    """The alerts of the current user's cases, as of now."""
    case_ids, codes = _scope()
    config = current_app.config
    return alerts.collect(
        db.session,
        case_ids,
        codes,
        utcnow(),
        timedelta(minutes=config["OVERDUE_GRACE_MINUTES"]),
        timedelta(hours=config["STALE_TABLET_HOURS"]),
        include_acknowledged=include_acknowledged,
    )


@roles_required(*COORDINATING)
def index():
    """List the open alerts, safety first; with ?all=1 the acknowledged ones too."""
    show_all = request.args.get("all") == "1"
    items = open_alerts(include_acknowledged=show_all)
    scope = _scope()
    acks = {}
    if show_all:
        rows = db.session.execute(
            select(AlertAck, User.username)
            .outerjoin(User, User.id == AlertAck.acknowledged_by_id)
            .where(AlertAck.key.in_({a.key for a in items} or {""}))
        ).all()
        acks = {(a.kind, a.key): (a, name) for a, name in rows}
    return render_template(
        "desk/alerts.html",
        alerts=items,
        acks=acks,
        show_all=show_all,
        grace=current_app.config["OVERDUE_GRACE_MINUTES"],
        stale_hours=current_app.config["STALE_TABLET_HOURS"],
        identifier_flags=alerts.identifier_flags(db.session, *scope),
        under_way=alerts.under_way(db.session, *scope),
    )


@roles_required(*COORDINATING)
def acknowledge():
    """Mark one open alert as seen; it is recorded in the audit log."""
    kind = request.form.get("kind", "")
    key = request.form.get("key", "")
    if kind not in alerts.KINDS or not key or len(key) > 120:
        abort(400, _("This alert is not one we know."))
    alert = next((a for a in open_alerts() if a.kind == kind and a.key == key), None)
    if alert is None:
        # already acknowledged, settled, or in a case this coordinator does not see
        abort(404, _("This alert is no longer open."))
    if alerts.acknowledge(db.session, alert, current_user.id):
        audit.record("alert_acknowledged", "alert", None, kind=kind, key=key)
    db.session.commit()
    flash(_("The alert is marked as seen."), "success")
    return redirect(url_for("alerts.index"))


bp.add_url_rule("/", view_func=index)
bp.add_url_rule("/ack", view_func=acknowledge, methods=["POST"])
