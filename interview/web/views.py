"""The start page and health check."""

import json
from pathlib import Path

from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import text

from interview.store.extensions import db
from interview.web.i18n import ui_lang

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


def manifest():
    """The web app manifest, in the UI language: installed, the app opens like an app."""
    body = {
        "name": _("FACT Interview Companion"),
        "short_name": _("FACT interviews"),
        "description": _(
            "Peer co-researchers' companion for interviews with patients of FACT teams."
        ),
        "lang": ui_lang(),
        "dir": "ltr",
        "start_url": url_for("interviews.mine"),
        "scope": "/",
        "id": "/",
        "display": "standalone",
        "orientation": "any",
        "background_color": "#ffffff",
        "theme_color": "#1f5f4a",
        "icons": [
            {
                "src": url_for("static", filename=f"icons/icon-{size}.png"),
                "sizes": f"{size}x{size}",
                "type": "image/png",
                "purpose": "any",
            }
            for size in (192, 512)
        ]
        + [
            {
                "src": url_for("static", filename="icons/icon.svg"),
                "sizes": "any",
                "type": "image/svg+xml",
            }
        ],
    }
    response = current_app.response_class(
        json.dumps(body, ensure_ascii=False), mimetype="application/manifest+json"
    )
    return response


def offline_page():
    """The page the tablet shows for an address it has not kept, when there is no network."""
    return render_template("offline.html")


bp.add_url_rule("/", view_func=home)
bp.add_url_rule("/offline", view_func=offline_page)
bp.add_url_rule("/sw.js", view_func=service_worker)
bp.add_url_rule("/manifest.webmanifest", view_func=manifest)
bp.add_url_rule("/healthz", view_func=healthz)
