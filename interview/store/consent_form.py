"""The consent form's required parts, checked before a version is published, and its text
laid out in the order of REK's template for information letters.

A form names its facts (responsible institution, project leader, data protection officer,
REK reference, end date) once, under `[study]`; the sections' texts name them as
`{placeholders}`, so a contact is written in one place and every section that must name it
does. A form with a part missing, a fact malformed or a template's placeholder left in
("000 00 000", "xxx", "ansvarlig institusjon", "TODO") is refused, naming the part and the
language.
"""

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from babel.dates import format_date

from interview.store.models import LANGUAGES

CONSENT_ITEMS = ("participate", "audio", "quotes", "recontact")
# the letter's sections in the order of REK's template ("Vil du delta i forskningsprosjektet …"):
# purpose; who is responsible; why you are asked; what taking part involves; voluntary and
# withdrawal; your privacy; when the project ends; your rights; the legal basis; contacts
SECTIONS = (
    "purpose",
    "responsible",
    "asked",
    "participation",
    "withdrawal",
    "privacy",
    "after_end",
    "rights",
    "legal_basis",
    "contact",
)
STATEMENT = "statement"
RIGHTS = ("access", "correction", "deletion", "restriction", "complaint")
# what a section holds beside its heading and text: texts every form must have, and flags
SECTION_TEXTS = {"privacy": ("confidentiality",), "rights": RIGHTS}
SECTION_FLAGS = {"withdrawal": ("data_choice",)}
# the facts each section must name, in both languages, so none can drop out of the letter
MUST_NAME = {
    "responsible": ("institution", "leader.name"),
    "after_end": ("end_date",),
    "legal_basis": ("rek_reference",),
    "contact": (
        "leader.name",
        "leader.phone",
        "leader.email",
        "dpo.name",
        "dpo.phone",
        "dpo.email",
    ),
}
PEOPLE = ("leader", "dpo")
NAMES = (
    "institution",
    "rek_reference",
    "end_date",
    *(f"{who}.{what}" for who in PEOPLE for what in ("name", "phone", "email")),
)
NAME = re.compile(r"\{([a-z_.]+)\}")
# a Norwegian number: eight digits, in pairs or 3-2-3, with or without +47
PHONE = re.compile(r"(\+47 ?)?(\d{2} ?\d{2} ?\d{2} ?\d{2}|\d{3} ?\d{2} ?\d{3})")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
# REK's case numbers: six digits since 2019 ("REK 123456"), before that year/number
# ("REK sør-øst 2016/1234")
REK = re.compile(r"REK( [a-zæøå-]+)? (\d{6}|\d{4}/\d{1,6})")
# what a template leaves for someone to fill in
PLACEHOLDERS = (
    re.compile(r"(?i)(?<![a-zæøå])x{3,}(?![a-zæøå])"),
    re.compile(r"(?i)(?<![a-zæøå])xx(?:[ .-]xx)+(?![a-zæøå])"),
    re.compile(r"(?i)\b(todo|fixme|tbd)\b"),
    re.compile(r"(?i)ansvarlig institusjon|responsible institution"),
    re.compile(r"(?i)lorem ipsum"),
    re.compile(r"\[[^\]\n]*\]"),
    re.compile(r"\{[^}\n]*\}"),
)
NUMBER = re.compile(r"\+?\d(?:[\d .-]*\d)?")


def placeholder_in(value: str) -> str | None:
    """Return the placeholder a text still holds (a row of zeros, "xxx", "TODO", …), if any."""
    for number in NUMBER.finditer(value):
        digits = re.sub(r"\D", "", number.group())
        if number.group().startswith("+47") or (len(digits) == 10 and digits.startswith("47")):
            digits = digits[2:]
        # "000 00 000", "REK 000000": a number nobody has; "100 000" is a number
        if len(digits) >= 3 and set(digits) == {"0"}:
            return number.group().strip()
    for pattern in PLACEHOLDERS:
        found = pattern.search(value)
        if found:
            return found.group()
    return None


def _text(value: Any, where: str, errors: list[str], extra: tuple[str, ...] = ()) -> None:
    """Check a {nb, en} text, which may carry the named extra fields beside its languages."""
    if value is None:
        errors.append(f"{where}: missing")
        return
    if not isinstance(value, dict):
        errors.append(f"{where}: needs a text in each language ({', '.join(LANGUAGES)})")
        return
    for name in set(value) - set(LANGUAGES) - set(extra):
        errors.append(f"{where}.{name}: unknown field")
    for lang in LANGUAGES:
        if lang not in value:
            errors.append(f"{where}.{lang}: missing")
        elif not isinstance(value[lang], str) or not value[lang].strip():
            errors.append(f"{where}.{lang}: empty")


def _name_or_text(value: Any, where: str, errors: list[str]) -> None:
    """A person's or an office's name: one string, or a text in each language."""
    if isinstance(value, str):
        if not value.strip():
            errors.append(f"{where}: empty")
    else:
        _text(value, where, errors)


def _check_study(study: Any, published: str, errors: list[str]) -> None:
    if not isinstance(study, dict):
        errors.append("missing study")
        return
    _text(study.get("institution"), "study.institution", errors)
    rek = study.get("rek_reference")
    if not isinstance(rek, str) or not rek.strip():
        errors.append("study.rek_reference: missing")
    elif not REK.fullmatch(rek):
        errors.append("study.rek_reference: not a REK reference like 'REK 123456'")
    end = study.get("end_date")
    if isinstance(end, date):
        # a TOML date would not survive the store's JSON: the file writes it as text
        errors.append('study.end_date: write the date in quotes, like "2030-12-31"')
    elif not isinstance(end, str) or not end.strip():
        errors.append("study.end_date: missing")
    else:
        try:
            ends = date.fromisoformat(end)
        except ValueError:
            errors.append("study.end_date: not a date (YYYY-MM-DD)")
        else:
            if ends <= date.fromisoformat(str(published)):
                errors.append("study.end_date: must come after the published date")
    for who in PEOPLE:
        person = study.get(who)
        if not isinstance(person, dict):
            errors.append(f"study.{who}: missing")
            continue
        _name_or_text(person.get("name"), f"study.{who}.name", errors)
        phone, email = person.get("phone"), person.get("email")
        if not isinstance(phone, str) or not phone.strip():
            errors.append(f"study.{who}.phone: missing")
        elif not PHONE.fullmatch(phone):
            errors.append(f"study.{who}.phone: not a Norwegian phone number (8 digits, +47 or not)")
        if not isinstance(email, str) or not email.strip():
            errors.append(f"study.{who}.email: missing")
        elif not EMAIL.fullmatch(email):
            errors.append(f"study.{who}.email: not an e-mail address")


def _check_section(key: str, section: Any, errors: list[str]) -> None:
    if not isinstance(section, dict):
        errors.append(f"{key}: needs a heading and a text in each language")
        return
    _text(section.get("heading"), f"{key}.heading", errors)
    texts = SECTION_TEXTS.get(key, ())
    _text(section, key, errors, extra=("heading", *texts, *SECTION_FLAGS.get(key, ())))
    for name in texts:
        _text(section.get(name), f"{key}.{name}", errors)
    for lang in LANGUAGES:
        said = section.get(lang)
        if not isinstance(said, str):
            continue
        for name in MUST_NAME.get(key, ()):
            if f"{{{name}}}" not in said:
                errors.append(f"{key}.{lang}: must name {{{name}}}")


def _strings(value: Any, where: str):
    """Each text of a form and its place: `contact.nb`, `items.audio.en`, `study.dpo.email`."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for name, inner in value.items():
            if name not in ("key", "required", "data_choice"):
                yield from _strings(inner, f"{where}.{name}" if where else name)
    elif isinstance(value, list):
        # an item is named by its key, and its text is the item's: `items.audio.nb`
        for i, inner in enumerate(value):
            if isinstance(inner, dict):
                yield from _strings(inner.get("text"), f"{where}.{inner.get('key', i)}")


def _fills_names(where: str) -> bool:
    """Whether the text at this place is shown with the form's facts filled in."""
    parts = where.split(".")
    if parts[0] not in (*SECTIONS, STATEMENT) or parts[-1] not in LANGUAGES:
        return False
    return len(parts) == 2 or (len(parts) == 3 and parts[1] in SECTION_TEXTS.get(parts[0], ()))


def _check_placeholders(data: dict, errors: list[str]) -> None:
    for where, said in _strings({k: v for k, v in data.items() if k != "key"}, ""):
        if _fills_names(where):
            # a section's text may name the form's facts; any other name is a slip
            for name in NAME.findall(said):
                if name not in NAMES:
                    errors.append(f"{where}: unknown name {{{name}}}")
            said = NAME.sub("", said)
        found = placeholder_in(said)
        if found is not None:
            errors.append(f"{where}: holds the placeholder {found!r}")


def validate_consent(data: dict) -> list[str]:
    """Return the problems of a parsed consent-form file: every part present, nothing left blank."""
    errors: list[str] = []
    for name in ("key", "version", "published", "title", "study", *SECTIONS, STATEMENT, "items"):
        if name not in data:
            errors.append(f"missing {name}")
    if any(name not in data for name in ("key", "version", "published", "items")):
        return errors
    try:
        if not isinstance(data["published"], str):
            raise ValueError
        date.fromisoformat(data["published"])
    except ValueError:
        errors.append('published: not a date in quotes, like "2026-11-01"')
        return errors
    if "title" in data:
        _text(data["title"], "title", errors)
    if "study" in data:
        _check_study(data["study"], data["published"], errors)
    for key in (*SECTIONS, STATEMENT):
        if key in data:
            _check_section(key, data[key], errors)
    withdrawal = data.get("withdrawal")
    if isinstance(withdrawal, dict) and "data_choice" in withdrawal:
        # whether a participant who withdraws may choose to keep what was already analysed
        if not isinstance(withdrawal["data_choice"], bool):
            errors.append("withdrawal.data_choice: must be true or false")
    version = data["version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        errors.append("version: must be a whole number, 1 or more")
    elif version > 1 or "changes" in data:
        # a later version says what changed: the peer reads it to a participant who consented
        # on an older one and is asked again (participants/renewal.py)
        _text(data.get("changes"), "changes", errors)
    keys = tuple(i.get("key") for i in data["items"])
    if keys != CONSENT_ITEMS:
        errors.append(f"items must be {', '.join(CONSENT_ITEMS)} in that order")
    for item in data["items"]:
        _text(item.get("text"), f"items.{item.get('key')}", errors)
        if item.get("required") is not (item.get("key") == "participate"):
            errors.append(f"items.{item.get('key')}: only 'participate' is required")
    _check_placeholders(data, errors)
    return errors


def withdrawal_data_choice(content: dict) -> bool:
    """Whether a consent form lets a participant who withdraws keep already analysed data."""
    withdrawal = content.get("withdrawal")
    return isinstance(withdrawal, dict) and withdrawal.get("data_choice") is True


# -- the letter as shown -------------------------------------------------------------------------


@dataclass(frozen=True)
class LetterSection:
    """One section of the letter in one language: paragraphs of lines, and its lists."""

    key: str
    heading: str
    paragraphs: tuple[tuple[str, ...], ...]
    rights: tuple[str, ...] = ()
    confidentiality: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class Letter:
    """A consent form's information sections in REK's order, and its consent statement."""

    sections: tuple[LetterSection, ...]
    statement: LetterSection


def _in(value: Any, lang: str) -> str:
    return value if isinstance(value, str) else value[lang]


def facts(content: dict, lang: str) -> dict[str, str]:
    """The form's facts as its texts name them, written for one language."""
    study = content["study"]
    named = {
        "institution": study["institution"][lang],
        "rek_reference": _unbroken(study["rek_reference"]),
        "end_date": format_date(date.fromisoformat(study["end_date"]), "long", locale=lang),
    }
    for who in PEOPLE:
        named[f"{who}.name"] = _in(study[who]["name"], lang)
        named[f"{who}.phone"] = _unbroken(study[who]["phone"])
        named[f"{who}.email"] = study[who]["email"]
    return named


def _unbroken(value: str) -> str:
    # a phone number or a reference split over two lines is misread or mistyped
    return value.replace(" ", "\u00a0")


def _fill(text: str, named: dict[str, str]) -> str:
    return NAME.sub(lambda m: named.get(m[1], m[0]), text)


def _paragraphs(text: str, named: dict[str, str]) -> tuple[tuple[str, ...], ...]:
    filled = _fill(text, named)
    return tuple(
        tuple(line.strip() for line in para.split("\n") if line.strip())
        for para in filled.split("\n\n")
        if para.strip()
    )


def _section(key: str, content: dict, lang: str, named: dict[str, str]) -> LetterSection:
    section = content[key]
    return LetterSection(
        key=key,
        heading=section["heading"][lang],
        paragraphs=_paragraphs(section[lang], named),
        rights=tuple(_fill(section[r][lang], named) for r in RIGHTS) if key == "rights" else (),
        confidentiality=_paragraphs(section["confidentiality"][lang], named)
        if key == "privacy"
        else (),
    )


def consent_letter(content: dict, lang: str) -> Letter | None:
    """The form's text in REK's order in one language, facts filled in; None for an older form."""
    # a version published before the sections existed keeps its own layout (body, contact)
    if STATEMENT not in content or "study" not in content:
        return None
    named = facts(content, lang)
    return Letter(
        sections=tuple(_section(key, content, lang, named) for key in SECTIONS),
        statement=_section(STATEMENT, content, lang, named),
    )
