"""A section page carries each note's chosen themes and one list of all choices for the page.

offline.js copies the other choices into every note (tests/browser/test_theme_choices.py);
without JavaScript a button saves and shows every list, and posting the page as a browser
would never drops a note's themes.
"""

import lxml.html
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from interview.store.extensions import db
from interview.store.models import Note, Theme
from tests.helpers import (
    consented_interview,
    new_note_on_page,
)


def _theme_ids(app) -> dict[str, int]:
    with app.app_context():
        return {
            t.key: t.id for t in db.session.scalars(select(Theme).where(Theme.retired.is_(False)))
        }


def _save_note(client, iid, text, theme_ids):
    page = client.get(f"/interviews/{iid}/section/0").text
    new_id, fields = new_note_on_page(page, "context.services")
    answer = client.post(
        f"/interviews/{iid}/section/0",
        data={
            **fields,
            "new-context.services-text": text,
            "new-context.services-theme": [str(t) for t in theme_ids],
            "go": "stay",
        },
    )
    assert answer.status_code == 302
    return new_id


def _form_as_posted(html: str) -> MultiDict:
    """Return what a browser without JavaScript sends for the notes form."""
    doc = lxml.html.fromstring(html)
    form = doc.get_element_by_id("section-form")
    # a form sends its own fields and those outside it that name it (form="section-form")
    owned = [e for e in form.iter("input", "textarea") if e.get("form") in (None, "section-form")]
    owned += doc.xpath("//*[@form='section-form'][not(ancestor::form[@id='section-form'])]")
    fields = MultiDict()
    for el in owned:
        kind = el.get("type", "text")
        if not el.get("name") or kind in ("submit", "button"):
            continue
        if kind in ("checkbox", "radio"):
            if el.get("checked") is not None:
                # a value="" radio sends "", which lxml's form_values would turn into "on"
                fields.add(el.get("name"), el.get("value", "on"))
        elif el.tag == "textarea":
            fields.add(el.get("name"), el.text or "")
        else:
            fields.add(el.get("name"), el.get("value", ""))
    return fields


def test_notes_carry_their_chosen_themes_and_the_page_one_list(app, world, client, auth):
    iid = consented_interview(client, world)
    ids = _theme_ids(app)
    note_id = _save_note(client, iid, "Får hjelp med bolig.", [ids["communication"]])
    html = client.get(f"/interviews/{iid}/section/0").text
    doc = lxml.html.fromstring(html)

    template = doc.get_element_by_id("theme-choices")
    keys = [i.get("data-key") for i in template.iter("input")]
    assert sorted(keys) == sorted(ids)  # every theme offered, once for the whole page

    saved = doc.xpath(f"//div[@data-note-id='{note_id}']//input[@data-key]")
    assert [(i.get("data-key"), i.get("checked") is not None) for i in saved] == [
        ("communication", True)
    ]
    # a new note's box carries no choices of its own; offline.js fills them in
    new = doc.xpath("//div[@data-new]//details[@data-choices='new-context.services']")
    assert new and not new[0].xpath(".//input[@data-key]")
    # the question's suggested themes come first when offline.js fills the list (said once,
    # on the question)
    assert new[0].xpath("ancestor::section[@class='question']")[0].get("data-first") is not None
    # without JavaScript there is a way to every theme
    assert "Save and show all themes" in html or "Lagre og vis alle temaene" in html


def test_posting_the_page_without_javascript_keeps_the_themes(app, world, client, auth):
    iid = consented_interview(client, world)
    ids = _theme_ids(app)
    note_id = _save_note(
        client, iid, "Får hjelp med bolig.", [ids["communication"], ids["housing"]]
    )
    html = client.get(f"/interviews/{iid}/section/0").text
    fields = _form_as_posted(html)
    fields.add("go", "stay")
    assert client.post(f"/interviews/{iid}/section/0", data=fields).status_code == 302
    with app.app_context():
        note = db.session.get(Note, note_id)
        assert sorted(t.key for t in note.themes) == ["communication", "housing"]
        assert note.rev == 1  # nothing changed, so nothing was written


def test_the_button_without_javascript_saves_and_shows_every_list(app, world, client, auth):
    iid = consented_interview(client, world)
    ids = _theme_ids(app)
    _save_note(client, iid, "Får hjelp med bolig.", [ids["communication"]])
    fields = _form_as_posted(client.get(f"/interviews/{iid}/section/0").text)
    fields["new-context.services-text"] = "Ventetiden var lang."
    fields.add("go", "themes")
    answer = client.post(f"/interviews/{iid}/section/0", data=fields)
    assert answer.status_code == 302
    assert answer.headers["Location"].endswith(f"/interviews/{iid}/section/0?themes=all")
    full = lxml.html.fromstring(client.get(answer.headers["Location"]).text)
    notes = full.xpath("//div[@data-question]")
    assert len(notes) == 2 + 3  # two saved notes, a new box for each of the three questions
    for note in notes:
        assert len(note.xpath(".//input[@data-key]")) == len(ids)
    assert not full.xpath("//details[@data-choices]")
    with app.app_context():
        texts = sorted(
            n.text for n in db.session.scalars(select(Note).where(Note.interview_id == iid))
        )
    assert texts == ["Får hjelp med bolig.", "Ventetiden var lang."]


def test_a_refused_form_shows_every_list_with_what_was_ticked(app, world, client, auth):
    iid = consented_interview(client, world)
    ids = _theme_ids(app)
    page = client.get(f"/interviews/{iid}/section/0").text
    new_id, fields = new_note_on_page(page, "context.services")
    answer = client.post(
        f"/interviews/{iid}/section/0",
        data={
            **fields,
            "new-context.services-text": "x" * 20_001,
            "new-context.services-theme": [str(ids["housing"])],
            "go": "stay",
        },
    )
    assert answer.status_code == 400
    doc = lxml.html.fromstring(answer.text)
    box = doc.xpath("//div[@data-new][@data-question='context.services']")[0]
    ticked = [
        i.get("data-key") for i in box.xpath(".//input[@data-key]") if i.get("checked") is not None
    ]
    assert ticked == ["housing"]
    assert len(box.xpath(".//input[@data-key]")) == len(ids)
