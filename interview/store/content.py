"""Guide, consent-form and codebook data files: validation and loading into the case store."""

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from interview.store.consent_form import validate_consent
from interview.store.models import LANGUAGES, ConsentFormVersion, GuideVersion, Theme

GUIDES_DIR = Path(__file__).resolve().parent / "guides"
QUESTION_KINDS = ("context", "inhibits", "promotes", "leadership", "improvement", "closing")


class ContentError(Exception):
    """A data file is malformed, or would change a published version."""


def _check_text(value: Any, where: str, errors: list[str]) -> None:
    if not isinstance(value, dict) or set(value) != set(LANGUAGES):
        errors.append(f"{where}: needs exactly the languages {', '.join(LANGUAGES)}")
        return
    for lang in LANGUAGES:
        if not isinstance(value[lang], str) or not value[lang].strip():
            errors.append(f"{where}.{lang}: empty")


def _strip_texts(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_texts(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_texts(v) for v in value]
    if isinstance(value, str):
        return value.strip()
    return value


def validate_guide(data: dict, theme_keys: set[str]) -> list[str]:
    """Return the problems of a parsed guide file (empty when it is complete in both languages)."""
    errors: list[str] = []
    for name in ("key", "version", "published", "title", "intro", "sections"):
        if name not in data:
            errors.append(f"missing {name}")
    if errors:
        return errors
    _check_text(data["title"], "title", errors)
    _check_text(data["intro"], "intro", errors)
    seen: set[str] = set()
    section_keys: set[str] = set()
    if not data["sections"]:
        errors.append("no sections")
    for s in data["sections"]:
        skey = s.get("key", "?")
        if skey in section_keys:
            errors.append(f"section {skey}: duplicate key")
        section_keys.add(skey)
        _check_text(s.get("title"), f"{skey}.title", errors)
        if "intro" in s:
            _check_text(s["intro"], f"{skey}.intro", errors)
        if not s.get("questions"):
            errors.append(f"section {skey}: no questions")
        for q in s.get("questions", []):
            qkey = q.get("key", "?")
            if qkey in seen:
                errors.append(f"question {qkey}: duplicate key")
            seen.add(qkey)
            if not qkey.startswith(f"{skey}."):
                errors.append(f"question {qkey}: key must start with {skey}.")
            if q.get("kind") not in QUESTION_KINDS:
                errors.append(f"question {qkey}: unknown kind {q.get('kind')!r}")
            _check_text(q.get("text"), f"{qkey}.text", errors)
            probes = q.get("probes", [])
            if not 1 <= len(probes) <= 3:
                errors.append(f"question {qkey}: needs 1 to 3 probes")
            for i, p in enumerate(probes):
                _check_text(p, f"{qkey}.probes[{i}]", errors)
            for t in q.get("themes", []):
                if t not in theme_keys:
                    errors.append(f"question {qkey}: unknown theme {t}")
    return errors


def validate_codebook(data: dict) -> list[str]:
    """Return the problems of the parsed codebook (themes and the teams' staff themes)."""
    errors: list[str] = []
    keys: set[str] = set()
    for t in data.get("themes", []):
        if t.get("key") in keys:
            errors.append(f"theme {t.get('key')}: duplicate")
        keys.add(t.get("key"))
        _check_text(t.get("name"), f"theme {t.get('key')}", errors)
    for c in data.get("cases", []):
        _check_text(c.get("name"), f"case {c.get('code')}", errors)
        for s in c.get("staff", []):
            if s.get("theme") not in keys:
                errors.append(f"case {c.get('code')}: unknown theme {s.get('theme')}")
            if s.get("polarity") not in ("inhibits", "promotes"):
                errors.append(f"case {c.get('code')}: bad polarity {s.get('polarity')}")
    return errors


def read_toml(path: Path) -> dict:
    """Parse a data file, with multi-line texts trimmed."""
    with path.open("rb") as fh:
        return _strip_texts(tomllib.load(fh))


def checksum(data: dict) -> str:
    """Return a stable checksum of parsed content."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def read_codebook(directory: Path = GUIDES_DIR) -> dict:
    """Read and validate the codebook seed."""
    data = read_toml(directory / "codebook.toml")
    errors = validate_codebook(data)
    if errors:
        raise ContentError("codebook.toml: " + "; ".join(errors))
    return data


@dataclass
class LoadReport:
    """What a load did, for the command line to tell."""

    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    themes_added: int = 0


def load_all(session: Session, directory: Path = GUIDES_DIR) -> LoadReport:
    """Load codebook themes, guide and consent versions; refuse to change a published version."""
    report = LoadReport()
    codebook = read_codebook(directory)
    existing = set(session.scalars(Theme.__table__.select().with_only_columns(Theme.key)))
    for t in codebook["themes"]:
        if t["key"] not in existing:
            session.add(Theme(key=t["key"], name_nb=t["name"]["nb"], name_en=t["name"]["en"]))
            report.themes_added += 1
    theme_keys = {t["key"] for t in codebook["themes"]} | existing

    for path in sorted(directory.glob("guide-*.toml")):
        data = read_toml(path)
        errors = validate_guide(data, theme_keys)
        if errors:
            session.rollback()
            raise ContentError(f"{path.name}: " + "; ".join(errors))
        _load_version(session, GuideVersion, data, path.name, report)
    for path in sorted(directory.glob("consent-*.toml")):
        data = read_toml(path)
        errors = validate_consent(data)
        if errors:
            # nothing of this load is kept: a form that would not pass is never published
            session.rollback()
            raise ContentError(f"{path.name} is not loaded: " + "; ".join(errors))
        _load_version(session, ConsentFormVersion, data, path.name, report)
    session.commit()
    return report


def _load_version(session: Session, model, data: dict, name: str, report: LoadReport) -> None:
    digest = checksum(data)
    found = session.execute(
        model.__table__.select().where(model.key == data["key"], model.version == data["version"])
    ).first()
    if found is None:
        session.add(
            model(
                key=data["key"],
                version=data["version"],
                published=str(data["published"]),
                checksum=digest,
                content=data,
            )
        )
        report.added.append(name)
    elif found.checksum == digest:
        report.unchanged.append(name)
    else:
        session.rollback()
        raise ContentError(
            f"{name}: version {data['version']} of {data['key']} is published and cannot change;"
            " publish the change as a new version"
        )


@dataclass(frozen=True)
class Question:
    """One guide question, with its place in the guide."""

    key: str
    kind: str
    text: dict
    probes: tuple
    themes: tuple
    section_index: int


@dataclass(frozen=True)
class Section:
    """One guide section."""

    key: str
    title: dict
    intro: dict | None
    questions: tuple[Question, ...]


@dataclass(frozen=True)
class Guide:
    """A guide version's content in a shape templates and code can walk."""

    key: str
    version: int
    title: dict
    intro: dict
    sections: tuple[Section, ...]

    def question(self, key: str) -> Question | None:
        """Return the question with the given key, if the guide has it."""
        for s in self.sections:
            for q in s.questions:
                if q.key == key:
                    return q
        return None

    @property
    def question_keys(self) -> set[str]:
        """Return every question key of the guide."""
        return {q.key for s in self.sections for q in s.questions}


_GUIDES: dict[str, Guide] = {}
GUIDES_KEPT = 32


def _parse_guide(content: dict) -> Guide:
    sections = []
    for i, s in enumerate(content["sections"]):
        questions = tuple(
            Question(
                key=q["key"],
                kind=q["kind"],
                text=q["text"],
                probes=tuple(q.get("probes", [])),
                themes=tuple(q.get("themes", [])),
                section_index=i,
            )
            for q in s["questions"]
        )
        sections.append(Section(s["key"], s["title"], s.get("intro"), questions))
    return Guide(
        content["key"], content["version"], content["title"], content["intro"], tuple(sections)
    )


def guide_of(version: GuideVersion) -> Guide:
    """Return the parsed guide of a stored version (cached: versions never change)."""
    # the checksum is of the content, so it names the guide: a page that only needs the
    # guide's shape does not read the content again (see access.interview_or_404)
    guide = _GUIDES.get(version.checksum)
    if guide is None:
        guide = _parse_guide(version.content)
        if len(_GUIDES) >= GUIDES_KEPT:
            _GUIDES.clear()
        _GUIDES[version.checksum] = guide
    return guide
