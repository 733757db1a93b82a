"""The identifier guard (DESIGN §6): spot direct identifiers in a note so the peer can write
around them. Pure functions; the only I/O is reading guides/names.txt once.

What is flagged, and the rules that keep ordinary words from being flagged:

- `national_id`: 11 digits (optionally a space or hyphen after the 6 date digits) whose two
  mod-11 control digits are right and whose first six digits are a real date: fødselsnummer,
  D-number (day + 40) and H-number (month + 40, used in health services).
- `phone`: a Norwegian 8-digit number written "91234567", "912 34 567", "91 23 45 67" or
  "9123 4567", with or without +47 / 0047, and any "+CC" / "00CC" number of 7 to 15 digits.
  Without a country code the first digit must be 2–9 (the Norwegian numbering plan), and
  these are left alone: 8 digits that are a date (20240312, 31122024), two years side by side
  ("2024 2025"), and amounts (a number after "kr"/"NOK" or before "kr", "kroner", "%"...).
  A number run into more digits (an account number, a longer list) is not a phone number.
- `email`: name@domain.tld.
- `address`: a street word followed by a house number: "Storgata 12", "Kirkeveien 3B",
  "Karl Johans gate 22" (suffixes gata/gate/gaten/veien/vegen/vei/veg/stien/plassen/allé and,
  when capitalised, torget/bakken/ringen/svingen/brygge/alle), and "12 Baker Street"
  (Street/Road/Avenue/Lane/...). A number followed by a unit ("3 ganger", "2 km", "5 år") is
  not a house number; a street word without a number is not flagged.
- `name`: a given name from names.txt written with a capital, followed on the same line (by
  spaces only) by another capitalised word that is not an acronym (NAV, FACT-teamet), a month,
  a weekday or another common non-name word: "Kari Nordmann", "Per Olsen". Or a listed given
  name, capitalised, right after "heter", "het", "kalt", "kalles", "navnet", "named",
  "called" or "name is". A given name alone is not flagged: "Kari sa at…" or "Per uke…" at
  the start of a sentence, or the preposition "per", never are.

Each finding carries a masked excerpt: the words around it, with every finding in it masked
(the first letter of each word and at most the first two digits stay), so the warning never
repeats an identifier.
"""

import hashlib
import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

NAMES_FILE = Path(__file__).resolve().parent / "guides" / "names.txt"
KINDS = ("national_id", "phone", "email", "address", "name")
MASK = "\u2022"
CONTEXT = 24

_SP = "[ \u00a0]"  # a space inside a number: plain or non-breaking, never a line break
_TWO_DIGITS = re.compile(r"\d\d")
_SIX_DIGITS = re.compile(r"\d{6}")
_AFTER_NUMBER = rf"(?![\w]|[.,]\d|{_SP}\d|-\d)"
_BEFORE_NUMBER = r"(?<![\w+.,/-])(?<!\d[ \u00a0])"


@dataclass(frozen=True)
class Finding:
    """One possible identifier: its kind, where it is, and an excerpt with it masked."""

    kind: str
    start: int
    end: int
    excerpt: str


@lru_cache(maxsize=1)
def given_names() -> frozenset[str]:
    """Return the given names of guides/names.txt (read once)."""
    names = set()
    for line in NAMES_FILE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.add(line)
    return frozenset(names)


# --- national identity numbers --------------------------------------------------------------

_NATIONAL_ID = re.compile(rf"{_BEFORE_NUMBER}(\d{{6}})(?:{_SP}|-)?(\d{{5}}){_AFTER_NUMBER}")
_W1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_W2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


def _control(digits: list[int], weights: tuple[int, ...]) -> int | None:
    rest = 11 - sum(d * w for d, w in zip(digits, weights, strict=False)) % 11
    if rest == 11:
        return 0
    return None if rest == 10 else rest


def valid_national_id(number: str) -> bool:
    """True for 11 digits with both mod-11 control digits right and a plausible birth date."""
    if len(number) != 11 or not number.isdigit():
        return False
    d = [int(c) for c in number]
    if _control(d[:9], _W1) != d[9] or _control(d[:10], _W2) != d[10]:
        return False
    day, month, year = int(number[0:2]), int(number[2:4]), int(number[4:6])
    if day > 40:  # D-number
        day -= 40
    if month > 40:  # H-number (health services)
        month -= 40
    for century in (1900, 2000):
        try:
            date(century + year, month, day)
            return True
        except ValueError:
            continue
    return False


# --- phone numbers ----------------------------------------------------------------------------

_NO_BODY = (
    rf"\d{{8}}|\d{{3}}{_SP}\d{{2}}{_SP}\d{{3}}|\d{{2}}(?:{_SP}\d{{2}}){{3}}|\d{{4}}{_SP}\d{{4}}"
)
_NO_PHONE = re.compile(
    rf"{_BEFORE_NUMBER}(?P<prefix>(?:\+|00)47{_SP}?)?(?P<body>{_NO_BODY}){_AFTER_NUMBER}"
)
_INT_PHONE = re.compile(
    rf"(?<![\w+.,])(?:\+|00)[1-9]\d{{0,2}}(?:{_SP}|-)?(?:\(0\){_SP}?)?\d(?:(?:{_SP}|-)?\d){{5,12}}"
    rf"{_AFTER_NUMBER}"
)
_AMOUNT_BEFORE = re.compile(r"(?:\bkr\.?|\bNOK|€|\$|£)\s?$", re.IGNORECASE)
_AMOUNT_AFTER = re.compile(
    r"^\s?(?:kr\b|kroner|kr\.|nok\b|,-|%|prosent|euro|eur\b|dollar|usd\b|pounds?\b)",
    re.IGNORECASE,
)


def _is_date_or_years(body: str) -> bool:
    digits = re.sub(r"\D", "", body)
    if len(body) == 8:
        for y, m, d in (
            (digits[:4], digits[4:6], digits[6:]),
            (digits[4:], digits[2:4], digits[:2]),
        ):
            if 1900 <= int(y) <= 2099:
                try:
                    date(int(y), int(m), int(d))
                    return True
                except ValueError:
                    pass
    halves = body.split()
    if len(halves) == 2 and all(len(h) == 4 and 1900 <= int(h) <= 2099 for h in halves):
        return True
    return False


def _phones(text: str) -> list[tuple[int, int]]:
    spans = []
    for m in _NO_PHONE.finditer(text):
        body = m.group("body")
        if not m.group("prefix"):
            if body[0] in "01" or _is_date_or_years(body):
                continue
            if _AMOUNT_BEFORE.search(text[max(0, m.start() - 5) : m.start()]):
                continue
            if _AMOUNT_AFTER.match(text[m.end() : m.end() + 10]):
                continue
        spans.append((m.start(), m.end()))
    spans += [(m.start(), m.end()) for m in _INT_PHONE.finditer(text)]
    return spans


# --- e-mail -----------------------------------------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.%+-])[\w%+-][\w.%+-]*@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}(?!\w)")


# --- street addresses -------------------------------------------------------------------------

_UNITS = (
    r"%|prosent|kr\b|kroner|km\b|meter|m\b|cm\b|mil\b|min\b|minutt|time|timer|t\b|døgn|dag|"
    r"uke|måned|mnd|år\b|gang|person|stk|kg\b|times?\b|days?\b|weeks?\b|months?\b|years?\b|"
    r"hours?\b|minutes?\b|people\b|persons?\b|miles?\b"
)
_HOUSE = rf"\d{{1,4}}(?:{_SP}?[A-Za-z](?!\w))?(?![\w]|[.,:]\d|{_SP}?(?:{_UNITS}))"
_NB_STRONG = r"gata|gaten|gate|veien|vegen|vei|veg|stien|plassen|allé|alléen"
_NB_PROPER = r"torget|torg|bakken|ringen|svingen|brygge|brygga|alle|alleen|plass|sti"
_CAP = "A-ZÆØÅÄÖÜÉ"
# the lookaheads (?=...) add nothing a match does not need: the street word is one run of
# letters (and hyphens) right before the spaces and the number, so a word that is not followed
# that way is given up at once instead of trying every suffix at every letter
_NB_STREET = re.compile(
    rf"(?<![\w-])(?=[^\W\d_](?:[^\W\d_]|-)*{_SP}+\d)"
    rf"[^\W\d_](?:[^\W\d_]|-)+?(?:{_NB_STRONG}){_SP}+{_HOUSE}",
    re.IGNORECASE,
)
_NB_STREET_PROPER = re.compile(
    rf"(?<![\w-])(?=[^\W\d_]+{_SP}+\d)[{_CAP}][^\W\d_]+?(?:{_NB_PROPER}){_SP}+{_HOUSE}"
)
_NB_STREET_WORDS = re.compile(
    rf"(?<![\w-])(?:[{_CAP}][\w'’.-]*{_SP}+){{0,2}}[{_CAP}][\w'’.-]*{_SP}+"
    rf"(?:gate|gata|vei|veg|allé|plass){_SP}+{_HOUSE}"
)
_EN_STREET = re.compile(
    rf"(?<![\w.,])\d{{1,5}}[A-Za-z]?{_SP}+(?:[A-Z][a-z'’]+{_SP}+){{1,3}}"
    r"(?:Street|St|Road|Rd|Avenue|Ave|Lane|Drive|Close|Way|Place|Square|Terrace|Crescent|"
    r"Gardens)\b\.?"
)


# Cheap tests of what a pattern needs somewhere in the text to match at all; a text without
# it skips the pattern (most notes hold no address, and the street patterns are the slow ones).
# Each gate is a necessary condition only, so the findings never change:
# - every Norwegian street pattern ends in a letter, spaces and the house number's digit;
# - the street-word pattern also needs one of its words right before those spaces;
# - the English one needs a house number, spaces and a capital.
_NB_GATE = re.compile(rf"[^\W\d_]{_SP}+\d")
_NB_WORDS_GATE = re.compile(rf"(?:gate|gata|vei|veg|allé|plass){_SP}+\d")
_EN_GATE = re.compile(rf"\d[A-Za-z]?{_SP}+[A-Z]")


def _addresses(text: str) -> list[tuple[int, int]]:
    patterns = []
    if _NB_GATE.search(text):
        patterns += [_NB_STREET, _NB_STREET_PROPER]
        if _NB_WORDS_GATE.search(text):
            patterns.append(_NB_STREET_WORDS)
    if _EN_GATE.search(text):
        patterns.append(_EN_STREET)
    return [(m.start(), m.end()) for pattern in patterns for m in pattern.finditer(text)]


# --- personal names ---------------------------------------------------------------------------

_WORD = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*")
_GAP = re.compile(r"[ \t\u00a0]+")
_TRIGGERS = {"heter", "het", "kalt", "kalles", "kaltes", "navnet", "named", "called"}
# capitalised words that follow a given name without being a surname
_NOT_SURNAMES = {
    *"January February March April May June July August September October".split(),
    *"November December".split(),
    *"Januar Februar Mars Mai Juni Juli Oktober Desember".split(),
    *"Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split(),
    *"Mandag Tirsdag Onsdag Torsdag Fredag Lørdag Søndag".split(),
    *"Jul Påske Christmas Easter Gud God Jesus".split(),
    *"Norge Norway Norwegian Norsk Sverige Sweden Danmark Denmark English Engelsk".split(),
    *"Oslo Bergen Trondheim Stavanger Tromsø Kristiansand Drammen Bodø Ålesund".split(),
    *"Facebook Messenger Snapchat Instagram Google Teams Zoom Vipps".split(),
    *"The And Or But He She They We It Hun Han De Vi Det Den Og Men".split(),
}


def _proper(word: str) -> bool:
    """A capitalised word that may be part of a name: not an acronym, not a known non-name."""
    return len(word) >= 2 and word[0].isupper() and word[1].islower() and word not in _NOT_SURNAMES


def _listed(word: str, names: frozenset[str]) -> bool:
    return word[0].isupper() and (word in names or word.split("-")[0] in names)


_LETTER_RUN = re.compile(r"[^\W\d_]+")


@lru_cache(maxsize=1)
def _name_starts() -> frozenset[str]:
    """Return the first run of letters of every given name ("Jan" for "Jan-Erik")."""
    return frozenset(_LETTER_RUN.match(name)[0] for name in given_names())


def _names(text: str) -> list[tuple[int, int]]:
    names = given_names()
    # every flagged name starts with a listed word, and a listed word's first run of letters is
    # the first run of letters of a given name: a text with no such run has no names to find
    starts = _name_starts()
    if not any(run in starts for run in _LETTER_RUN.findall(text)):
        return []
    words = list(_WORD.finditer(text))
    spans = []

    def joined(i: int) -> bool:
        return bool(_GAP.fullmatch(text[words[i - 1].end() : words[i].start()]))

    def stretch(i: int) -> int:
        """The end of the run of capitalised name words from word i (at most 4 in all)."""
        j = i
        while j + 1 < len(words) and j - i < 3 and joined(j + 1) and _proper(words[j + 1][0]):
            j += 1
        return words[j].end()

    for i, m in enumerate(words):
        word = m[0]
        if not _listed(word, names):
            continue
        end = stretch(i)
        if end > m.end():
            spans.append((m.start(), end))
            continue
        if i > 0 and joined(i):
            before = words[i - 1][0].lower()
            name_is = before == "is" and i > 1 and words[i - 2][0].lower() == "name"
            if before in _TRIGGERS or name_is:
                spans.append((m.start(), m.end()))
    return spans


# --- putting it together ----------------------------------------------------------------------


def _mask(piece: str) -> str:
    out = []
    digits = 0
    previous_letter = False
    for ch in piece:
        if ch.isdigit():
            digits += 1
            out.append(ch if digits <= 2 else MASK)
            previous_letter = False
        elif ch.isalpha():
            out.append(MASK if previous_letter else ch)
            previous_letter = True
        else:
            out.append(ch)
            previous_letter = False
    return "".join(out)


def _excerpt(masked: str, start: int, end: int) -> str:
    left = max(0, start - CONTEXT)
    right = min(len(masked), end + CONTEXT)
    # cut at a space, so no half word shows
    if left > 0:
        space = masked.find(" ", left, start)
        left = space + 1 if space != -1 else start
    if right < len(masked):
        space = masked.rfind(" ", end, right)
        right = space if space != -1 else end
    piece = " ".join(masked[left:right].split())
    return ("…" if left > 0 else "") + piece + ("…" if right < len(masked) else "")


def find_identifiers(text: str) -> list[Finding]:
    """Return the possible direct identifiers in a text, in order, none overlapping."""
    if not text:
        return []
    candidates: list[tuple[int, int, str]] = []
    # each kind is looked for only where the text has what it needs (six digits in a row, an
    # @, two digits in a row or a +): most notes have none of it, and nothing found changes
    if _SIX_DIGITS.search(text):
        for m in _NATIONAL_ID.finditer(text):
            if valid_national_id(m.group(1) + m.group(2)):
                candidates.append((m.start(), m.end(), "national_id"))
    if "@" in text:
        candidates += [(m.start(), m.end(), "email") for m in _EMAIL.finditer(text)]
    if "+" in text or _TWO_DIGITS.search(text):
        candidates += [(s, e, "phone") for s, e in _phones(text)]
    candidates += [(s, e, "address") for s, e in _addresses(text)]
    candidates += [(s, e, "name") for s, e in _names(text)]
    # earliest first, then the longest, then the kind in KINDS order; overlaps are dropped
    candidates.sort(key=lambda c: (c[0], -(c[1] - c[0]), KINDS.index(c[2])))
    chosen: list[tuple[int, int, str]] = []
    for start, end, kind in candidates:
        if chosen and start < chosen[-1][1]:
            continue
        chosen.append((start, end, kind))
    masked = text
    for start, end, _kind in chosen:
        masked = masked[:start] + _mask(masked[start:end]) + masked[end:]
    return [Finding(kind, s, e, _excerpt(masked, s, e)) for s, e, kind in chosen]


def summarise(findings: list[Finding]) -> set[str]:
    """Return the kinds found."""
    return {f.kind for f in findings}


def warning_kinds(text: str | None) -> list[str]:
    """Return the kinds found in a text, in KINDS order (what the sync answer carries)."""
    return list(_kinds(text or ""))


# The same words are looked at more than once in one save (the note's flag when its text is
# set, then the sync answer's warnings), so the last answers are kept: under a fingerprint of
# the text and as kinds only, so the cache never holds the words themselves.
_KINDS_KEPT = 512
_kinds_seen: dict[bytes, tuple[str, ...]] = {}


def _kinds(text: str) -> tuple[str, ...]:
    key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=20).digest()
    kinds = _kinds_seen.get(key)
    if kinds is None:
        found = summarise(find_identifiers(text))
        kinds = tuple(kind for kind in KINDS if kind in found)
        if len(_kinds_seen) >= _KINDS_KEPT:
            _kinds_seen.clear()
        _kinds_seen[key] = kinds
    return kinds


__all__ = [
    "KINDS",
    "Finding",
    "find_identifiers",
    "given_names",
    "summarise",
    "valid_national_id",
    "warning_kinds",
]
