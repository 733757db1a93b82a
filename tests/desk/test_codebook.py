"""The codebook (add, rename, retire) and the theme matrix, as coordinators use them."""

import lxml.html
import pytest
from sqlalchemy import select

from interview.desk import codebook
from interview.store.extensions import db
from interview.store.models import AuditEvent, Case, Interview, Note, Participant, Theme


def _theme(key):
    return db.session.scalars(select(Theme).where(Theme.key == key)).one()


def _note(iid, text, polarity, *theme_keys, deleted=False):
    note = Note(
        interview_id=iid,
        question_key="context.services",
        text=text,
        polarity=polarity,
        themes=[_theme(k) for k in theme_keys],
    )
    if deleted:
        from interview.store.models import utcnow

        note.deleted_at = utcnow()
    db.session.add(note)
    return note


@pytest.fixture
def tagged(app, world):
    """Notes in teams A and B, tagged with staff themes and others."""
    with app.app_context():
        pa, pa2, pb = (world.interviews[k] for k in ("pa", "pa2", "pb"))
        _note(pa, "Teamet snakker ikke sammen", "inhibits", "poor_communication")
        _note(pa, "Ingen ringer tilbake", "inhibits", "poor_communication", "culture_attitude")
        _note(pa2, "They listen to me – æøå", "promotes", "poor_communication")
        _note(pa2, "No mark here", None, "poor_communication")
        _note(pa, "Slettet notat", "inhibits", "poor_communication", deleted=True)
        _note(pb, "Team B note", "promotes", "poor_communication")
        db.session.commit()
    return world


def test_matrix_counts_by_case_and_polarity_and_marks_staff_themes(app, tagged):
    with app.app_context():
        cases = list(db.session.scalars(select(Case).order_by(Case.code)))
        m = codebook.theme_matrix(db.session, cases)
        a, b, c = cases
        poor = _theme("poor_communication")
        assert m.cell(poor.id, a.id) == {"inhibits": 2, "promotes": 1, "none": 1}
        assert m.cell(poor.id, b.id) == {"inhibits": 0, "promotes": 1, "none": 0}
        assert m.cell(poor.id, c.id) == {"inhibits": 0, "promotes": 0, "none": 0}
        assert m.cell(_theme("culture_attitude").id, a.id)["inhibits"] == 1
        # team A's staff named poor communication as inhibiting; team B's did not
        assert m.staff[(poor.id, a.id)] == "inhibits"
        assert (poor.id, b.id) not in m.staff
        # staff themes of the teams come first
        staff_ids = {t for t, _ in m.staff}
        first_other = next(i for i, t in enumerate(m.themes) if t.id not in staff_ids)
        assert all(t.id not in staff_ids for t in m.themes[first_other:])


def test_withdrawn_participants_and_retired_themes_in_the_matrix(app, tagged):
    with app.app_context():
        cases = list(db.session.scalars(select(Case).order_by(Case.code)))
        db.session.get(Participant, tagged.participants["pa2"]).status = "withdrawn"
        unused = codebook.add_theme(db.session, "Ubrukt tema", "Unused theme")
        codebook.set_retired(unused, True)
        codebook.set_retired(_theme("poor_communication"), True)
        db.session.commit()
        m = codebook.theme_matrix(db.session, cases)
        poor = _theme("poor_communication")
        assert m.cell(poor.id, cases[0].id) == {"inhibits": 2, "promotes": 0, "none": 0}
        keys = [t.key for t in m.themes]
        assert "poor_communication" in keys  # retired, but notes carry it
        assert unused.key not in keys


def test_the_matrix_page_and_a_cell_list_the_notes(client, auth, tagged, app):
    auth.login("coord_a")
    page = client.get("/desk/themes/matrix?lang=en")
    assert page.status_code == 200
    assert "Poor and lacking communication" in page.text
    assert "Team B" not in page.text  # coordinator A sees team A only
    with app.app_context():
        poor = _theme("poor_communication").id
    cell = client.get(f"/desk/themes/matrix/A/{poor}?polarity=inhibits&lang=en")
    assert cell.status_code == 200
    assert "Teamet snakker ikke sammen" in cell.text and "Ingen ringer tilbake" in cell.text
    assert "They listen to me" not in cell.text  # promotes, not inhibits
    assert "Slettet notat" not in cell.text
    with app.app_context():
        code = db.session.get(Participant, tagged.participants["pa"]).code
    assert code in cell.text
    assert "Could you tell me a little about the help you get today" in cell.text
    everything = client.get(f"/desk/themes/matrix/A/{poor}?lang=en")
    assert "They listen to me – æøå" in everything.text


def test_cells_are_for_coordinators_of_that_case_only(client, auth, tagged, app):
    with app.app_context():
        poor = _theme("poor_communication").id
    url = f"/desk/themes/matrix/A/{poor}"
    assert client.get(url).status_code == 302
    auth.login("peer_a")
    assert client.get(url).status_code == 403
    assert client.get("/desk/themes/matrix").status_code == 403
    assert client.get("/desk/themes/").status_code == 403
    auth.logout()
    auth.login("coord_b")
    refused = client.get(url + "?lang=en")
    assert refused.status_code == 404
    assert "Teamet snakker" not in refused.text
    assert client.get(f"/desk/themes/matrix/B/{poor}").status_code == 200
    assert client.get("/desk/themes/matrix/B/999999?lang=en").status_code == 404
    bad = client.get(f"/desk/themes/matrix/B/{poor}?polarity=maybe&lang=en")
    assert bad.status_code == 400 and "Choose inhibits, promotes or neither" in bad.text


def test_add_rename_and_retire_a_theme_audited(client, auth, world, app):
    auth.login("coord_a")
    added = client.post(
        "/desk/themes/",
        data={"add-name_nb": "  Brukermedvirkning ", "add-name_en": "User involvement"},
    )
    assert added.status_code == 302
    with app.app_context():
        theme = _theme("user_involvement")
        assert (theme.name_nb, theme.name_en, theme.retired) == (
            "Brukermedvirkning",
            "User involvement",
            False,
        )
        theme_id = theme.id
    renamed = client.post(
        f"/desk/themes/{theme_id}",
        data={f"t{theme_id}-name_nb": "Medvirkning", f"t{theme_id}-name_en": "Involvement"},
    )
    assert renamed.status_code == 302
    retired = client.post(f"/desk/themes/{theme_id}/retire", data={"retired": "1"})
    assert retired.status_code == 302
    with app.app_context():
        theme = db.session.get(Theme, theme_id)
        assert (theme.key, theme.name_nb, theme.name_en, theme.retired) == (
            "user_involvement",
            "Medvirkning",
            "Involvement",
            True,
        )
        actions = list(
            db.session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.object_type == "theme")
                .order_by(AuditEvent.id)
            )
        )
        assert actions == ["theme_added", "theme_renamed", "theme_retired"]
    page = client.get("/desk/themes/?lang=en")
    assert "Involvement" in page.text and "Retired" in page.text


def test_a_retired_theme_is_not_offered_but_stays_on_old_notes(client, auth, tagged, app):
    with app.app_context():
        poor = _theme("poor_communication")
        poor.retired = True
        db.session.commit()
        iid = tagged.interviews["pa"]
        interview = db.session.get(Interview, iid)
        interview.status = "in_progress"
        db.session.commit()
        # note text is sealed at rest, so the match is made here, not in SQL
        (kept,) = [n for n in db.session.scalars(select(Note)) if n.text == "Ingen ringer tilbake"]
        assert [t.key for t in kept.themes] == ["culture_attitude", "poor_communication"]


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"add-name_nb": "", "add-name_en": "Only English"}, "Write the name in both languages"),
        ({"add-name_nb": "x" * 201, "add-name_en": "Long"}, "200"),
        (
            {"add-name_nb": "kultur og HOLDNINGER", "add-name_en": "Something new"},
            "Another theme already has that name",
        ),
    ],
)
def test_bad_theme_names_are_refused_clearly(client, auth, world, app, form, message):
    auth.login("coord_a")
    with app.app_context():
        before = len(db.session.scalars(select(Theme)).all())
    answer = client.post("/desk/themes/?lang=en", data=form)
    assert answer.status_code == 400
    assert message in answer.text
    with app.app_context():
        assert len(db.session.scalars(select(Theme)).all()) == before


def test_renaming_to_another_themes_name_is_refused_and_the_typing_stays(client, auth, world, app):
    auth.login("coord_a")
    with app.app_context():
        theme = _theme("culture_attitude")
    answer = client.post(
        f"/desk/themes/{theme.id}?lang=en",
        data={
            f"t{theme.id}-name_nb": "Ny kultur",
            f"t{theme.id}-name_en": "Poor and lacking communication",
        },
    )
    assert answer.status_code == 400
    assert "Another theme already has that name" in answer.text
    assert 'value="Ny kultur"' in answer.text
    with app.app_context():
        assert _theme("culture_attitude").name_en == "Culture & attitude"
    assert client.post(f"/desk/themes/{theme.id}/retire", data={"retired": "x"}).status_code == 400
    assert client.post("/desk/themes/999999/retire", data={"retired": "1"}).status_code == 404


def test_keys_are_ascii_and_unique(app, world):
    with app.app_context():
        first = codebook.add_theme(db.session, "Åpenhet", "Openness – å")
        second = codebook.add_theme(db.session, "Åpenhet 2", "openness: å!")
        assert first.key == "openness_a"
        assert second.key == "openness_a_2"


def test_ids_past_what_the_store_holds_are_404_not_a_crash(client, auth, world):
    auth.login("coord_a")
    huge = 10**30
    assert client.get(f"/desk/themes/matrix/A/{huge}?lang=en").status_code == 404
    assert client.post(f"/desk/themes/{huge}", data={}).status_code == 404
    assert client.post(f"/desk/themes/{huge}/retire", data={"retired": "1"}).status_code == 404


def test_a_too_long_new_name_says_so(client, auth, world, app):
    auth.login("coord_a")
    with app.app_context():
        theme_id = _theme("culture_attitude").id
    answer = client.post(
        f"/desk/themes/{theme_id}?lang=en",
        data={f"t{theme_id}-name_nb": "x" * 201, f"t{theme_id}-name_en": "Culture"},
    )
    assert answer.status_code == 400
    assert "A name can be at most 200 characters." in answer.text


def _row(html: str, theme_id: int):
    """The codebook's row of one theme."""
    (row,) = lxml.html.fromstring(html).xpath(f'//li[@id="theme-{theme_id}"]')
    return row


def test_codebook_counts_only_the_coordinators_own_teams(client, auth, tagged, app):
    with app.app_context():
        poor = _theme("poor_communication").id
    auth.login("coord_a")
    facts = _row(client.get("/desk/themes/?lang=en").text, poor).find_class("codebook-theme-facts")
    assert facts[0].text_content().split()[:2] == ["4", "notes"]
    # team A's staff named it as inhibiting
    assert "FACT team A: Named by the staff as inhibits" in " ".join(
        facts[0].text_content().split()
    )
    auth.logout()
    auth.login("coord_b")
    facts = _row(client.get("/desk/themes/?lang=en").text, poor).find_class("codebook-theme-facts")
    assert facts[0].text_content().split()[:2] == ["1", "note"]
    assert "FACT team A" not in facts[0].text_content()


def test_names_sort_as_a_reader_of_the_language_expects():
    names = ["Åpenhet", "apati", "Zebra", "Ærlighet", "Økonomi", "Bolig", "émigré"]
    nb = sorted(names, key=lambda n: codebook.name_order(n, "nb"))
    en = sorted(names, key=lambda n: codebook.name_order(n, "en"))
    assert nb == ["apati", "Bolig", "émigré", "Zebra", "Ærlighet", "Økonomi", "Åpenhet"]
    assert en == ["Ærlighet", "apati", "Åpenhet", "Bolig", "émigré", "Økonomi", "Zebra"]


def test_the_codebook_reads_as_a_list_in_the_page_language(client, auth, world, app):
    with app.app_context():
        codebook.add_theme(db.session, "Åpenhet i teamet", "Openness in the team")
        codebook.set_retired(_theme("housing"), True)
        db.session.commit()
        themes = list(db.session.scalars(select(Theme)))
        housing = {lang: _theme("housing").name(lang) for lang in ("nb", "en")}
    auth.login("coord_a")
    for lang in ("nb", "en"):
        doc = lxml.html.fromstring(client.get(f"/desk/themes/?lang={lang}").text)
        in_use, retired = doc.find_class("codebook-list")
        names = [h.text_content() for h in in_use.xpath(".//h3")]
        expected = sorted(
            (t.name(lang) for t in themes if not t.retired),
            key=lambda n: codebook.name_order(n, lang),
        )
        assert names == expected
        assert [h.text_content() for h in retired.xpath(".//h3")] == [housing[lang]]
        # the name in the other language is there too, marked with its language
        other = "en" if lang == "nb" else "nb"
        assert len(in_use.xpath(f'.//span[@lang="{other}"]')) == len(expected)
        # keys are small print, never a heading
        headings = " ".join(h.text_content() for h in doc.xpath("//h1|//h2|//h3"))
        assert not any(t.key in headings for t in themes if "_" in t.key)
        assert "administration_management" in doc.xpath("//code/text()")
    doc = lxml.html.fromstring(client.get("/desk/themes/?lang=nb").text)
    assert doc.find_class("codebook-list")[0].xpath(".//h3")[-1].text_content() == (
        "Åpenhet i teamet"
    )


def test_editing_is_on_demand_and_a_refusal_opens_that_theme_only(client, auth, world, app):
    with app.app_context():
        culture = _theme("culture_attitude").id
    auth.login("coord_a")
    doc = lxml.html.fromstring(client.get("/desk/themes/?lang=en").text)
    # every rename and retire form sits in a closed disclosure; adding too
    details = doc.xpath("//details")
    assert details and all(d.get("open") is None for d in details)
    assert all(
        f.xpath("ancestor::details") for f in doc.xpath("//form[contains(@action, '/desk/themes')]")
    )
    assert len(doc.xpath("//input[@type='text' or not(@type)][@name]")) == 2 + 2 * len(
        doc.xpath("//li[contains(@class, 'codebook-theme')]")
    )
    answer = client.post(
        f"/desk/themes/{culture}?lang=en",
        data={f"t{culture}-name_nb": "Ny kultur", f"t{culture}-name_en": "Housing"},
    )
    assert answer.status_code == 400
    doc = lxml.html.fromstring(answer.text)
    opened = doc.xpath("//details[@open]")
    assert [d.xpath("ancestor::li/@id") for d in opened] == [[f"theme-{culture}"]]
    assert "Another theme already has that name" in opened[0].text_content()
    assert opened[0].xpath(".//input[@lang='nb']/@value") == ["Ny kultur"]
    # a refused new theme opens the form for adding
    answer = client.post("/desk/themes/?lang=en", data={"add-name_nb": "", "add-name_en": "X"})
    opened = lxml.html.fromstring(answer.text).xpath("//details[@open]")
    assert len(opened) == 1 and "codebook-add" in opened[0].get("class")


def test_the_matrix_legend_shows_the_signs_the_cells_use(client, auth, tagged, app):
    with app.app_context():
        # a staff theme without notes, a cell with notes of every polarity, empty cells
        assert codebook.MARKS["empty"] == "·"
    auth.login("coord_a")
    for lang in ("nb", "en"):
        doc = lxml.html.fromstring(client.get(f"/desk/themes/matrix?lang={lang}").text)
        (legend,) = doc.xpath('//*[@id="matrix-key"]')
        shown = {s.text_content().strip() for s in legend.xpath(".//span[@aria-hidden='true']")}
        cells = doc.xpath("//table[contains(@class, 'matrix')]//td")
        used = set()
        for td in cells:
            used |= {s.text_content().strip() for s in td.xpath(".//a//span[@aria-hidden]")}
            used |= {s.text_content().strip() for s in td.xpath("./span[@aria-label]")}
            used |= {m.text.strip() for m in td.find_class("staff-mark")}
        assert used == shown == set(codebook.MARKS.values())
        assert "○" in legend.text_content() and "·" in legend.text_content()


def test_the_matrix_orders_themes_by_their_names_in_the_page_language(app, tagged):
    with app.app_context():
        cases = list(db.session.scalars(select(Case).order_by(Case.code)))
        for lang in ("nb", "en"):
            m = codebook.theme_matrix(db.session, cases, lang)
            named = {t for t, _ in m.staff}
            first = [t.name(lang) for t in m.themes if t.id in named]
            rest = [t.name(lang) for t in m.themes if t.id not in named]
            assert first == sorted(first, key=lambda n: codebook.name_order(n, lang))
            assert rest == sorted(rest, key=lambda n: codebook.name_order(n, lang))
