"""The desk's figures kept per worker: fresh for a while, recounted when the store changed."""

import re

from sqlalchemy import select

from interview.participants.registry import register
from interview.store.extensions import db
from interview.store.models import Case, Theme

TOTAL = re.compile(r'<tfoot><tr><th scope="row">[^<]+</th><td class="num">(\d+)</td>')


def _participants_total(html: str) -> int:
    return int(TOTAL.search(html).group(1))


def _add_participant(app, case_code: str = "A") -> None:
    with app.app_context():
        case = db.session.scalars(select(Case).where(Case.code == case_code)).one()
        register(case, "nb", [], None)
        db.session.commit()


def _kept(app):
    return app.extensions["kept_figures"]


def test_progress_is_kept_while_fresh_even_if_the_store_changes(app, world, client, auth):
    app.config.update(FIGURES_FRESH_SECONDS=30, FIGURES_UNCHANGED_SECONDS=300)
    auth.login("coord_a")
    first = client.get("/desk/").get_data(as_text=True)
    assert _participants_total(first) == 2
    _add_participant(app)
    second = client.get("/desk/").get_data(as_text=True)
    # counted once: the same figures and the same "counted at" time, within the fresh window
    assert _participants_total(second) == 2
    assert re.search(r"progress-when\">\s*([^<]+)", first).group(1) == re.search(
        r"progress-when\">\s*([^<]+)", second
    ).group(1)
    assert (_kept(app).misses, _kept(app).hits) == (1, 1)


def test_progress_is_recounted_once_the_store_changed(app, world, client, auth):
    app.config.update(FIGURES_FRESH_SECONDS=0, FIGURES_UNCHANGED_SECONDS=300)
    auth.login("coord_a")
    assert _participants_total(client.get("/desk/").get_data(as_text=True)) == 2
    assert _participants_total(client.get("/desk/").get_data(as_text=True)) == 2
    assert (_kept(app).misses, _kept(app).hits) == (1, 1)  # nothing changed: kept
    _add_participant(app)
    assert _participants_total(client.get("/desk/").get_data(as_text=True)) == 3
    assert _kept(app).misses == 2


def test_each_language_and_each_coordinator_has_its_own_figures(app, world, client, auth):
    app.config.update(FIGURES_FRESH_SECONDS=30, FIGURES_UNCHANGED_SECONDS=300)
    auth.login("coord_a")
    nb = client.get("/desk/?lang=nb").get_data(as_text=True)
    en = client.get("/desk/?lang=en").get_data(as_text=True)
    assert "Participants by status" in en and "Participants by status" not in nb
    auth.logout()
    auth.login("coord_b")
    b = client.get("/desk/?lang=en").get_data(as_text=True)
    # coordinator B sees team B's one participant, never A's kept figures
    assert _participants_total(b) == 1
    assert _kept(app).misses == 3


def test_theme_matrix_is_recounted_after_an_audited_change(app, world, client, auth):
    app.config.update(FIGURES_FRESH_SECONDS=0, FIGURES_UNCHANGED_SECONDS=300)
    auth.login("coord_a")
    with app.app_context():
        theme = db.session.scalars(select(Theme).order_by(Theme.key)).first()
        theme_id, old_name = theme.id, theme.name_nb
    page = client.get("/desk/themes/matrix?lang=nb").get_data(as_text=True)
    assert old_name in page
    assert "Telt " in page  # "Counted …": when the kept figures were made
    client.get("/desk/themes/matrix?lang=nb")
    assert _kept(app).hits == 1
    # a rename changes no synced record but is audited: the next view counts again
    answer = client.post(
        f"/desk/themes/{theme_id}",
        data={f"t{theme_id}-name_nb": "Et nytt navn", f"t{theme_id}-name_en": "A new name"},
    )
    assert answer.status_code in (302, 303)
    page = client.get("/desk/themes/matrix?lang=nb").get_data(as_text=True)
    assert "Et nytt navn" in page
    assert _kept(app).misses == 2


def test_zero_seconds_counts_on_every_view(app, world, client, auth):
    auth.login("coord_a")
    assert _participants_total(client.get("/desk/").get_data(as_text=True)) == 2
    _add_participant(app)
    assert _participants_total(client.get("/desk/").get_data(as_text=True)) == 3
    assert _kept(app).hits == 0
