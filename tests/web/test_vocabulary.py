"""One Norwegian word for each thing: the glossary (docs/glossary.md) holds for the message
catalogue and for the bilingual guide, consent form and codebook the study ships with."""

import re
import tomllib
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from interview.store.content import GUIDES_DIR

ROOT = Path(__file__).resolve().parents[2]
GLOSSARY = ROOT / "docs" / "glossary.md"
CATALOGUE = ROOT / "translations" / "nb" / "LC_MESSAGES" / "messages.po"
# placeholders and code names (consent_record) are not English prose
NOT_PROSE = re.compile(r"%\(\w+\)[sd]|\{[\w.]+\}|\b\w+_\w+\b")


def glossary() -> list[tuple[list[str], str, list[str]]]:
    """The glossary's rows: English terms, the one Bokmål word, the words never used."""
    rows = []
    for line in GLOSSARY.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        cells = line.strip().strip("|").split("|")
        english, bokmal, never = (re.findall(r"`([^`]+)`", c) for c in cells[:3])
        rows.append((english, bokmal[0], never))
    return rows


def catalogue_pairs() -> list[tuple[str, str]]:
    """Every translated (English, Bokmål) pair of the nb catalogue, plural forms included."""
    with CATALOGUE.open("rb") as f:
        catalogue = read_po(f)
    pairs = []
    for message in catalogue:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        # nb has two plural forms, like English
        pairs += [(i, s) for i, s in zip(ids, strings, strict=False) if s]
    return pairs


def _bilingual(node, where: str):
    if isinstance(node, dict):
        if isinstance(node.get("nb"), str) and isinstance(node.get("en"), str):
            yield node["en"], node["nb"], where
        for key, value in node.items():
            yield from _bilingual(value, f"{where}.{key}")
    elif isinstance(node, list):
        for n, value in enumerate(node):
            yield from _bilingual(value, f"{where}[{n}]")


def content_pairs() -> list[tuple[str, str, str]]:
    """Every (English, Bokmål, where) pair of the guides, consent forms and shipped codebook."""
    pairs = []
    for path in sorted(GUIDES_DIR.glob("*.toml")):
        pairs += _bilingual(tomllib.loads(path.read_text(encoding="utf-8")), path.name)
    return pairs


def missing_words(english: str, bokmal: str) -> list[str]:
    """The glossary words a translation lacks for the English terms it translates."""
    text = NOT_PROSE.sub(" ", english)
    terms = sorted(
        ((term, word) for terms, word, _ in glossary() for term in terms),
        key=lambda tw: -len(tw[0]),
    )
    missing = []
    for term, word in terms:  # the longest first: "peer worker" is not "peer"
        pattern = re.compile(rf"\b{re.escape(term)}(?:s|'s|s')?\b", re.IGNORECASE)
        if pattern.search(text):
            text = pattern.sub(" ", text)
            # a name kept as it is (the table "consent") is not a translation
            kept = re.search(rf"\b{re.escape(term)}\b", bokmal)
            if word.casefold() not in bokmal.casefold() and not kept:
                missing.append(word)
    return missing


def banned_words(bokmal: str) -> list[str]:
    """The words the glossary never uses that this Bokmål text holds."""
    never = {w for _, _, ws in glossary() for w in ws}
    return sorted(w for w in never if re.search(rf"\b{re.escape(w)}", bokmal, re.IGNORECASE))


def test_the_glossary_reads_as_a_table():
    rows = glossary()
    words = {word for _, word, _ in rows}
    assert {"medforsker", "debriefsamtale", "revisjonslogg", "saksarkiv"} <= words
    never = {w for _, _, ws in rows for w in ws}
    assert {"likeperson", "intervjuere", "debriefingsamtale"} <= never


def test_the_checks_catch_the_mixed_words_the_desk_had():
    # the headings and alerts coordinators read before the glossary
    assert missing_words("Interviews per interviewer", "Intervjuer per intervjuer") == [
        "medforsker"
    ]
    assert banned_words("Velg én eller to intervjuere.") == ["intervjuere"]
    assert banned_words("En likeperson ønsker en debriefingsamtale") == [
        "debriefing",
        "debriefingsamtale",
        "likeperson",
    ]
    assert missing_words("No check-in. Call the peer.", "Ring likepersonen.") == ["medforsker"]
    assert missing_words("Interviews per interviewer", "Intervjuer per medforsker") == []
    # "peer worker" is the team's own staff, not the study's peer co-researcher
    assert (
        missing_words("If the team has a peer worker", "Hvis teamet har en erfaringskonsulent")
        == []
    )
    # the plural of "intervju" is not a person
    assert banned_words("Mine intervjuer") == []


def test_the_catalogue_uses_the_glossary_words():
    wrong = [
        f"{english!r} -> {bokmal!r}: needs {', '.join(missing)}"
        for english, bokmal in catalogue_pairs()
        if (missing := missing_words(english, bokmal))
    ]
    assert not wrong, "\n".join(wrong)


def test_the_catalogue_never_uses_the_banned_words():
    wrong = [
        f"{english!r} -> {bokmal!r}: {', '.join(banned)}"
        for english, bokmal in catalogue_pairs()
        if (banned := banned_words(bokmal))
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("check", [missing_words, lambda en, nb: banned_words(nb)])
def test_the_guide_consent_form_and_codebook_use_the_glossary_words(check):
    wrong = [f"{where}: {nb!r}" for en, nb, where in content_pairs() if check(en, nb)]
    assert not wrong, "\n".join(wrong)


def test_interviews_and_the_people_who_hold_them_are_different_words():
    nb = dict(catalogue_pairs())
    assert nb["Interviews"] != nb["Interviewers"]
    assert nb["Interviewer"] == nb["Peer co-researcher"]
