"""A consent form cannot be published incomplete: every part REK and a data protection officer
check is required, in both languages, and a template's placeholder left in is refused by name.
"""

import copy
import shutil

import pytest
from flask.cli import FlaskGroup
from sqlalchemy import func, select

from interview.store.consent_form import (
    RIGHTS,
    SECTIONS,
    STATEMENT,
    consent_letter,
    placeholder_in,
    validate_consent,
)
from interview.store.content import GUIDES_DIR, ContentError, load_all, read_toml
from interview.store.extensions import db
from interview.store.models import ConsentFormVersion, GuideVersion, Theme

LANGS = ("nb", "en")
SHIPPED = read_toml(GUIDES_DIR / "consent-v1.toml")


def _form() -> dict:
    return copy.deepcopy(SHIPPED)


def _drop(form: dict, path: str) -> None:
    *parents, last = path.split(".")
    for name in parents:
        form = form[name]
    del form[last]


def _put(form: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for name in parents:
        form = form[name]
    form[last] = value


# every text the form must carry, in each language
TEXTS = (
    "title",
    "study.institution",
    "study.dpo.name",
    *SECTIONS,
    *(f"{s}.heading" for s in (*SECTIONS, STATEMENT)),
    STATEMENT,
    "privacy.confidentiality",
    *(f"rights.{r}" for r in RIGHTS),
    "items.0.text",
)
# the facts that are one value in both languages
FACTS = (
    "study.rek_reference",
    "study.end_date",
    "study.leader.name",
    "study.leader.phone",
    "study.leader.email",
    "study.dpo.phone",
    "study.dpo.email",
)


def _named(path: str) -> str:
    """The field as an error names it (an item by its key, not its place)."""
    return path.replace("items.0.text", "items.participate")


def _errors_of(form: dict) -> str:
    return "\n".join(validate_consent(form))


def _resolve(form: dict, path: str):
    for name in path.split("."):
        form = form[int(name)] if isinstance(form, list) else form[name]
    return form


def test_the_shipped_form_is_complete():
    assert validate_consent(_form()) == []


def test_the_shipped_confidentiality_names_the_distress_protocol_exception():
    form = _form()
    old = {"nb": "Alt du forteller, behandles konfidensielt.", "en": "Everything you tell us is"}
    for lang in LANGS:
        everything = str(form)
        assert old[lang] not in everything
    assert "alvorlig fare" in form["privacy"]["confidentiality"]["nb"]
    assert "serious risk" in form["privacy"]["confidentiality"]["en"]
    assert "belastning og fare" in form["privacy"]["confidentiality"]["nb"]
    assert "distress and risk" in form["privacy"]["confidentiality"]["en"]


@pytest.mark.parametrize(
    "path",
    [
        "study",
        "study.institution",
        "study.rek_reference",
        "study.end_date",
        "study.leader",
        *FACTS,
        "study.dpo.name",
        *SECTIONS,
        STATEMENT,
        *(f"{s}.heading" for s in (*SECTIONS, STATEMENT)),
        "privacy.confidentiality",
        *(f"rights.{r}" for r in RIGHTS),
    ],
)
def test_a_missing_field_is_refused_by_name(path):
    form = _form()
    _drop(form, path)
    errors = _errors_of(form)
    assert f"{path}: missing" in errors or f"missing {path}" in errors, errors


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("path", TEXTS)
def test_a_text_missing_in_one_language_is_refused_naming_the_language(path, lang):
    form = _form()
    del _resolve(form, path)[lang]
    assert f"{_named(path)}.{lang}: missing" in _errors_of(form)


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("path", TEXTS)
def test_an_empty_text_is_refused_naming_the_language(path, lang):
    form = _form()
    _resolve(form, path)[lang] = "   "
    assert f"{_named(path)}.{lang}: empty" in _errors_of(form)


PLACEHOLDERS = [
    "000 00 000",
    "+47 00 00 00 00",
    "xxx",
    "XXX",
    "xx xx xx xx",
    "ansvarlig institusjon",
    "Ansvarlig institusjon",
    "responsible institution",
    "TODO",
    "[sett inn navn]",
]


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
@pytest.mark.parametrize(
    "path",
    ["title", "study.institution", "contact", "privacy.confidentiality", "rights.complaint"],
)
def test_a_placeholder_in_a_text_is_refused_naming_field_and_language(path, placeholder, lang):
    form = _form()
    text = _resolve(form, path)
    text[lang] = f"{text[lang]} {placeholder}"
    errors = validate_consent(form)
    assert any(e.startswith(f"{path}.{lang}: holds the placeholder") for e in errors), errors
    other = "en" if lang == "nb" else "nb"
    assert not any(e.startswith(f"{path}.{other}:") for e in errors), errors


@pytest.mark.parametrize(
    "path,value",
    [
        ("study.leader.phone", "000 00 000"),
        ("study.dpo.phone", "+47 000 00 000"),
        ("study.leader.email", "xxx@example.org"),
        ("study.dpo.email", "TODO@example.org"),
        ("study.rek_reference", "REK 000000"),
        ("study.leader.name", "XXX"),
        ("study.leader.name", "Ansvarlig institusjon"),
    ],
)
def test_a_placeholder_in_a_fact_is_refused_by_name(path, value):
    form = _form()
    _put(form, path, value)
    errors = validate_consent(form)
    assert any(e.startswith(f"{path}: holds the placeholder") for e in errors), errors


@pytest.mark.parametrize(
    "path,value,says",
    [
        ("study.leader.phone", "12345", "not a Norwegian phone number"),
        ("study.dpo.phone", "+46 70 123 45 67", "not a Norwegian phone number"),
        ("study.leader.email", "innofact at example.org", "not an e-mail address"),
        ("study.rek_reference", "123456", "not a REK reference"),
        ("study.rek_reference", "REK 12", "not a REK reference"),
        ("study.end_date", "31.12.2030", "not a date"),
        ("study.end_date", "2026-10-01", "must come after the published date"),
    ],
)
def test_a_malformed_fact_is_refused_by_name(path, value, says):
    form = _form()
    _put(form, path, value)
    assert f"{path}: {says}" in _errors_of(form)


@pytest.mark.parametrize(
    "section,name",
    [
        ("responsible", "institution"),
        ("responsible", "leader.name"),
        ("after_end", "end_date"),
        ("legal_basis", "rek_reference"),
        ("contact", "leader.phone"),
        ("contact", "leader.email"),
        ("contact", "dpo.phone"),
        ("contact", "dpo.email"),
    ],
)
@pytest.mark.parametrize("lang", LANGS)
def test_a_section_that_stops_naming_its_fact_is_refused(section, name, lang):
    form = _form()
    form[section][lang] = form[section][lang].replace(f"{{{name}}}", "somebody")
    assert f"{section}.{lang}: must name {{{name}}}" in _errors_of(form)


def test_an_unknown_name_in_a_text_is_refused():
    form = _form()
    form["contact"]["en"] += "\nFax {leader.fax}"
    assert "contact.en: unknown name {leader.fax}" in _errors_of(form)


@pytest.mark.parametrize(
    "text",
    ["Over 100 000 nordmenn", "Ring 51 23 45 67", "Saksnummer 2016/1234", "0 eller 00"],
)
def test_ordinary_numbers_are_no_placeholders(text):
    assert placeholder_in(text) is None


# -- the letter as shown --------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_the_letter_has_every_section_in_the_order_of_rek_and_its_facts_filled_in(lang):
    letter = consent_letter(_form(), lang)
    assert tuple(s.key for s in letter.sections) == SECTIONS
    assert letter.statement.key == STATEMENT
    said = [
        s.heading
        + " "
        + " ".join(" ".join(p) for p in (*s.paragraphs, *s.confidentiality))
        + " "
        + " ".join(s.rights)
        for s in (*letter.sections, letter.statement)
    ]
    # read as a person reads it: a space that keeps a number on one line is a space
    everything = " ".join(" ".join(said).split())
    assert "{" not in everything
    assert "+47\u00a051\u00a023\u00a045\u00a067" in " ".join(said)
    for fact in ("REK 123456", "+47 51 23 45 67", "+47 51 76 54 32", "innofact@example.org"):
        assert fact in everything
    assert ("31. desember 2030" if lang == "nb" else "December 31, 2030") in everything
    rights = next(s for s in letter.sections if s.key == "rights").rights
    assert len(rights) == 5 and "Datatilsynet" in rights[-1]


def test_a_form_from_before_the_sections_has_no_letter():
    legacy = {k: v for k, v in _form().items() if k in ("key", "version", "title", "items")}
    assert consent_letter(legacy, "nb") is None


# -- loading --------------------------------------------------------------------------------


# what a later version must say about itself: what changed since the one before
CHANGES = """
[changes]
nb = "Skjemaet har nå kontaktopplysninger til personvernombudet."
en = "The form now gives the data protection officer's contact details."
"""


def test_a_later_version_must_say_what_changed_in_both_languages():
    form = _form()
    form["version"] = 2
    assert "changes: missing" in _errors_of(form)
    form["changes"] = {"nb": "Nytt personvernombud.", "en": ""}
    assert "changes.en: empty" in _errors_of(form)
    form["changes"]["en"] = "A new data protection officer."
    assert validate_consent(form) == []
    form["changes"]["en"] = "See xxx"
    assert "changes.en: holds the placeholder 'xxx'" in _errors_of(form)


def _copy_guides(tmp_path):
    edited = tmp_path / "guides"
    edited.mkdir()
    for path in GUIDES_DIR.glob("*.toml"):
        shutil.copy(path, edited / path.name)
    return edited


def _count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def test_the_shipped_form_loads(app):
    with app.app_context():
        report = load_all(db.session)
        assert "consent-v1.toml" in report.added
        stored = db.session.scalars(select(ConsentFormVersion)).one()
        assert stored.content["study"]["rek_reference"] == "REK 123456"


@pytest.mark.parametrize(
    "written,swap,where",
    [
        ('phone = "+47 51 23 45 67"', 'phone = "000 00 000"', "study.leader.phone"),
        (
            'nb = "Nordvik universitetssykehus HF"',
            'nb = "ansvarlig institusjon"',
            "study.institution.nb",
        ),
        (
            'en = "Nordvik University Hospital Trust"',
            'en = "Responsible institution"',
            "study.institution.en",
        ),
    ],
)
def test_a_form_with_a_placeholder_loads_nothing(app, tmp_path, written, swap, where):
    edited = _copy_guides(tmp_path)
    form = edited / "consent-v1.toml"
    text = form.read_text(encoding="utf-8")
    assert written in text
    form.write_text(text.replace(written, swap, 1), encoding="utf-8")
    with app.app_context():
        with pytest.raises(ContentError) as info:
            load_all(db.session, directory=edited)
    message = str(info.value)
    assert message.startswith("consent-v1.toml is not loaded: ")
    assert f"{where}: holds the placeholder" in message
    # nothing of the load is kept: no form, and not the guide or themes loaded before it
    assert _count(app, ConsentFormVersion) == 0
    assert _count(app, GuideVersion) == 0
    assert _count(app, Theme) == 0


def test_guides_load_refuses_an_incomplete_form_naming_field_and_language(
    app, runner, tmp_path, monkeypatch
):
    """The command run as `flask guides load` runs it, on a form with one right left undone."""
    import interview.store.content

    edited = _copy_guides(tmp_path)
    form = edited / "consent-v1.toml"
    text = form.read_text(encoding="utf-8")
    start = text.index("[rights.complaint]")
    end = text.index("[legal_basis.heading]")
    form.write_text(
        text[:start] + '[rights.complaint]\nnb = "TODO"\n\n' + text[end:], encoding="utf-8"
    )
    monkeypatch.setattr(interview.store.content.load_all, "__defaults__", (edited,))
    group = FlaskGroup(create_app=lambda: app, load_dotenv=False, set_debug_flag=False)
    result = runner.invoke(cli=group, args=["guides", "load"])
    assert result.exit_code != 0
    assert "consent-v1.toml is not loaded" in result.output
    assert "rights.complaint.nb: holds the placeholder 'TODO'" in result.output
    assert "rights.complaint.en: missing" in result.output
    assert _count(app, ConsentFormVersion) == 0


def _legacy_v1() -> dict:
    """Version 1 as stores loaded it before the form had its sections (placeholders and all)."""
    form = _form()
    return {
        "key": form["key"],
        "version": 1,
        "published": form["published"],
        "title": {"nb": "Samtykke til å delta i intervju", "en": "Consent to take part"},
        "body": {"nb": "Alt du forteller, behandles konfidensielt.", "en": "Everything you tell."},
        "items": form["items"],
        "withdrawal": {"nb": "Du kan trekke deg.", "en": "You can withdraw."},
        "contact": {"nb": "Telefon 000 00 000", "en": "Phone 000 00 000"},
    }


@pytest.fixture
def legacy_store(app):
    """A store that loaded version 1 before it was completed."""
    with app.app_context():
        load_all(db.session)
        stored = db.session.scalars(select(ConsentFormVersion)).one()
        stored.content = _legacy_v1()
        stored.checksum = "0" * 64
        db.session.commit()
    return app


def test_a_store_with_the_earlier_v1_refuses_the_new_v1_and_keeps_its_own(legacy_store):
    app = legacy_store
    with app.app_context():
        with pytest.raises(ContentError) as info:
            load_all(db.session)
        message = str(info.value)
        assert "consent-v1.toml: version 1 of innofact-consent is published" in message
        assert "publish the change as a new version" in message
        db.session.expire_all()
        stored = db.session.scalars(select(ConsentFormVersion)).one()
        # what participants consented to stays what it was
        assert stored.content == _legacy_v1()


def test_the_completed_form_published_as_v2_loads_beside_the_earlier_v1(legacy_store, tmp_path):
    app = legacy_store
    edited = _copy_guides(tmp_path)
    (edited / "consent-v1.toml").unlink()
    text = (GUIDES_DIR / "consent-v1.toml").read_text(encoding="utf-8")
    (edited / "consent-v2.toml").write_text(
        text.replace("version = 1", "version = 2", 1) + CHANGES, encoding="utf-8"
    )
    with app.app_context():
        report = load_all(db.session, directory=edited)
        assert report.added == ["consent-v2.toml"]
        versions = db.session.scalars(
            select(ConsentFormVersion.version).order_by(ConsentFormVersion.version)
        ).all()
        assert versions == [1, 2]
