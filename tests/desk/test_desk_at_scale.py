"""The coordinator's pages at a larger size: a page at a time, and the same statements."""

import re

from devdata.scale import seed_scale
from interview.store.extensions import db
from tests.helpers import statements_of

ROW = re.compile(r'<th scope="row"><a href="/participants/[0-9a-f-]+" class="code">')


def _grow(app, participants: int, prefix: str = "S") -> None:
    with app.app_context():
        seed_scale(
            db.session,
            cases=2,
            participants=participants,
            notes=participants * 2,
            coordinator="coord_a",
            peer="peer_a",
            peer_participants=3,
            prefix=prefix,
        )
        db.session.commit()


def test_participants_are_listed_a_page_at_a_time(app, world, client, auth):
    _grow(app, 230)
    auth.login("coord_a")
    # coord_a: team A's two participants and the 230 generated ones
    first = client.get("/participants/?lang=en").get_data(as_text=True)
    assert len(ROW.findall(first)) == 100
    assert "Participants 1–100 of 232" in first
    assert "Page 1 of 3" in first
    assert 'rel="next" href="/participants/?page=2"' in first
    assert 'rel="prev"' not in first
    last = client.get("/participants/?page=3&lang=en").get_data(as_text=True)
    assert len(ROW.findall(last)) == 32
    assert "Participants 201–232 of 232" in last
    assert 'rel="next"' not in last
    # every participant once over the three pages
    codes = set()
    for page in (1, 2, 3):
        html = client.get(f"/participants/?page={page}").get_data(as_text=True)
        codes |= set(re.findall(r'class="code">([^<]+)</a>', html))
    assert len(codes) == 232
    for wrong in ("4", "0", "x", "-1"):
        assert client.get(f"/participants/?page={wrong}").status_code == 404


def test_a_single_page_of_participants_shows_no_pager(app, world, client, auth):
    auth.login("coord_a")
    html = client.get("/participants/?lang=en").get_data(as_text=True)
    assert len(ROW.findall(html)) == 2
    assert "Page 1 of" not in html


def test_desk_pages_run_the_same_statements_at_both_sizes(app, world, client, auth):
    auth.login("coord_a")
    paths = ("/participants/", "/desk/", "/desk/alerts/", "/desk/themes/matrix", "/interviews/")
    small = {path: statements_of(app, client, path) for path in paths}
    _grow(app, 400)
    large = {path: statements_of(app, client, path) for path in paths}
    assert small == large
