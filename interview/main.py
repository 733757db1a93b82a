"""The start page and health check."""

from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, url_for
from flask_login import current_user, login_required
from sqlalchemy import text

from .extensions import db

bp = Blueprint("main", __name__)


@login_required
def home():
    """Send each role to where their work starts."""
    if current_user.role == "peer":
        return redirect(url_for("interviews.mine"))
    return redirect(url_for("coordinator.participants"))


def healthz():
    """Answer 200 when the case store answers."""
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:
        db.session.rollback()
        return jsonify({"status": "unavailable"}), 503
    return jsonify({"status": "ok"})


def service_worker():
    """Serve the service worker from the site root so it may control every page."""
    path = Path(current_app.static_folder) / "js" / "sw.js"
    return Response(path.read_text(encoding="utf-8"), mimetype="text/javascript")


def offline_page():
    """The page the tablet shows for an address it has not kept, when there is no network."""
    return render_template("offline.html")


bp.add_url_rule("/", view_func=home)
bp.add_url_rule("/offline", view_func=offline_page)
bp.add_url_rule("/sw.js", view_func=service_worker)
bp.add_url_rule("/healthz", view_func=healthz)
