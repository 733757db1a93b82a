"""The REFI-QDA project (.qdpx) export: the interviews as text sources, the notes as coded
selections, the codebook as codes (standards/ holds the schema), written piece by piece.

With the recordings (the coordinator's choice): each as an AudioSource whose file is the
decrypted sound, and each note begun while it ran as an AudioSelection there, coded as its
text is (docs/recordings.md).

Who did what (docs/refi-qda.md): each note's selection and codings belong to the
peer who wrote and tagged it, a REFI-QDA User named by a pseudonymous label (`user_label`),
never by a username; the project and its sources belong to the user who exported it.
A FACT team is a Case: its variables are its own (never a source's), it lists its sources
(SourceRef, the standard's way), and it is also a Code of the same GUID that codes the whole
of each of its interview texts (the way NVivo writes cases and QualCoder reads them).
"""

import json
import logging
import uuid
import zipfile
import zlib
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, Protocol
from xml.etree import ElementTree as ET

from flask_babel import force_locale
from flask_babel import gettext as _

from interview.desk import exports
from interview.desk.exports import GUID_NS, QDA_NS, _split
from interview.store.models import (
    POLARITIES,
)
from interview.store.recordings import RecordingError
from interview.web.labels import label

log = logging.getLogger(__name__)

# an AudioSelection runs from where its note was begun to where the next note of the same
# recording was, or the recording's end, and at most this long (REFI-QDA: milliseconds)
AUDIO_SELECTION_MAX_MS = 60_000
# audio is compressed already: deflate it at the fastest level (a zip entry must be deflated
# to be read by every tool when its sizes follow its data)
AUDIO_COMPRESSLEVEL = 1


class AudioRecording(Protocol):
    """What the project needs of a recording (interview/desk/listen.py, ExportRecording)."""

    id: str
    extension: str
    started_at: datetime
    duration_ms: int | None
    size: int
    offsets: dict[str, int]

    def chunks(self) -> Iterator[bytes]:
        """The decrypted sound, a piece at a time."""


# the per-source variables (each interview's text and recordings) and their REFI-QDA types;
# the case's own variable is apart, so that no tool takes one variable for both
SOURCE_VARIABLES = {
    "team": "Text",
    "participant": "Text",
    "language": "Text",
    "guide": "Text",
    "date": "Date",
}
CASE_VARIABLES = {"case_team": "Text"}


def user_label(user_id: int | str | None) -> str:
    """Return the pseudonymous name of a user in the project, never a username."""
    return pseudonym_label(_pseudonym(user_id))


def user_guid(user_id: int | str | None) -> str:
    """Return a user's REFI-QDA GUID: their pseudonymous id, as in the JSON and CSV exports."""
    return pseudonym_guid(_pseudonym(user_id))


def _pseudonym(user_id: int | str | None) -> str | None:
    return None if user_id is None else exports.author_pseudonym(user_id)


def pseudonym_label(pseudonym: str | None) -> str:
    """Return the User name for an author's pseudonymous id (the export's `author`)."""
    return "user-unknown" if pseudonym is None else f"user-{pseudonym[:8]}"


def pseudonym_guid(pseudonym: str | None) -> str:
    """Return the User GUID for an author's pseudonymous id (the export's `author`)."""
    return guid("user", "unknown") if pseudonym is None else pseudonym


def guid(*parts: Any) -> str:
    """Return the deterministic REFI-QDA GUID of one of our records."""
    return str(uuid.uuid5(GUID_NS, ":".join(str(p) for p in parts)))


def source_text(interview: dict) -> tuple[str, list[tuple[dict, int, int]]]:
    """Return an interview's plain text and each note's (note, start, end) within it.

    The text has a heading line per question (its text in the interview language), a blank
    line, then each note followed by a blank line. Offsets are zero-based and count Unicode
    code points (Python `str` indices), end exclusive: REFI-QDA positions are characters of
    the plain text, not UTF-8 bytes and not UTF-16 units, so `text[start:end]` is the note
    even when it holds æøå or an emoji. Notes with no words get no selection.
    """
    parts: list[str] = []
    length = 0
    spans: list[tuple[dict, int, int]] = []
    current = None

    def add(piece: str) -> None:
        nonlocal length
        parts.append(piece)
        length += len(piece)

    for note in interview["notes"]:
        if not note["text"].strip():
            continue
        if note["question_key"] != current:
            current = note["question_key"]
            add((note["question_text"] or note["question_key"]) + "\n\n")
        start = length
        add(note["text"])
        spans.append((note, start, length))
        add("\n\n")
    return "".join(parts), spans


def _el(parent: ET.Element, tag: str, **attrs: Any) -> ET.Element:
    return ET.SubElement(parent, tag, {k: str(v) for k, v in attrs.items()})


def _coding(parent: ET.Element, note_guid: str, code_guid: str, coder_guid: str) -> None:
    coding = _el(parent, "Coding", guid=guid("coding", note_guid, code_guid))
    coding.set("creatingUser", coder_guid)
    _el(coding, "CodeRef", targetGUID=code_guid)


def _variable(parent: ET.Element, variable_guid: str, value: str, kind: str = "Text") -> None:
    holder = _el(parent, "VariableValue")
    _el(holder, "VariableRef", targetGUID=variable_guid)
    _el(holder, f"{kind}Value").text = value


def _xml(element: ET.Element) -> bytes:
    # what ElementTree writes for encoding="utf-8": characters UTF-8 cannot carry (lone
    # surrogates) become character references
    return ET.tostring(element, encoding="unicode").encode("utf-8", "xmlcharrefreplace")


# the Sources element's place in the project skeleton, while the sources are written apart
_SOURCES_HERE = "SourcesGoHere"

# what separates two sources: they sit two levels deep in project.qde
_BETWEEN_SOURCES = b"\n    "


def _qde_names(top: dict[str, Any], lang: str) -> dict[str, Any]:
    """Return what `project.qde` says and refers to apart from the interviews."""
    study = top["study"]
    exporter = study["exported_by"]
    with force_locale(lang):
        words = {
            "polarity": _("Polarity"),
            "themes": _("Themes"),
            "quote": _("Possible quote"),
            "team": _("FACT team"),
            "participant": _("Participant"),
            "language": _("Interview language"),
            "guide": _("Guide version"),
            "date": _("Interview date"),
            "case_team": _("FACT team (case)"),
            "case_code": _(
                "This FACT team as a case: it codes the whole of each of the team's "
                "interview texts, so that tools which link cases to texts through codes "
                "see them."
            ),
            "retired": _("retired"),
            "recording": _("audio recording"),
            "cut_short": _(
                "Only the beginning of this recording is here: a part of it did not open."
            ),
            "description": _(
                "Interview notes from %(origin)s, export format %(version)s.",
                origin=study["origin"],
                version=study["format_version"],
            ),
            **{p: label("polarity", p) for p in POLARITIES},
        }
    return {
        "lang": lang,
        "words": words,
        "user_pseudonym": _pseudonym(exporter["id"] if exporter else "system"),
        "user_guid": user_guid(exporter["id"] if exporter else "system"),
        "polarity_guids": {p: guid("code", "polarity", p) for p in POLARITIES},
        "theme_guids": {t["key"]: guid("code", "theme", t["key"]) for t in top["codebook"]},
        "quote_guid": guid("code", "possible_quote"),
        "variables": {
            **{k: guid("variable", k) for k in SOURCE_VARIABLES},
            "case_team": guid("variable", "case", "team"),
        },
        # a case is also a code of the same GUID (see the module's docstring)
        "cases": {
            c["code"]: (guid("case", c["code"]), f"{c['code']} – {c['name'].get(lang, c['code'])}")
            for c in top["cases"]
        },
    }


def _interview_date(interview: dict) -> str:
    return (interview["started_at"] or interview["planned_at"] or "")[:10]


def _text_source(
    names: dict[str, Any],
    participant: dict,
    interview: dict,
    spans: list[tuple[dict, int, int]],
    length: int,
) -> ET.Element:
    """Return an interview's TextSource: a selection per note, coded with its tags.

    First a selection of the whole text, coded with the team's case code (the module's
    docstring says why): `length` is the text's length in characters.
    """
    exporter_guid = names["user_guid"]
    source_guid = guid("interview", interview["id"])
    source = ET.Element(
        "TextSource",
        {
            "guid": source_guid,
            "name": f"{participant['code']} {_interview_date(interview)}".strip(),
            "plainTextPath": f"internal://{source_guid}.txt",
            "creatingUser": exporter_guid,
        },
    )
    _el(source, "Description").text = interview["id"]
    case_guid, case_name = names["cases"][participant["case"]]
    whole_guid = guid("case-text", source_guid)
    whole = _el(source, "PlainTextSelection", guid=whole_guid, name=case_name)
    whole.set("startPosition", "0")
    whole.set("endPosition", str(length))
    whole.set("creatingUser", exporter_guid)
    _coding(whole, whole_guid, case_guid, exporter_guid)
    for note, start, end in spans:
        note_guid = guid("note", note["id"])
        selection = _el(
            source,
            "PlainTextSelection",
            guid=note_guid,
            name=note["question_key"],
            startPosition=start,
            endPosition=end,
            creatingUser=pseudonym_guid(note["author"]),
            creationDateTime=note["created_at"],
        )
        _code_note(selection, note_guid, note, names)
    _source_variables(source, names, participant, interview)
    return source


def _code_note(selection: ET.Element, selection_guid: str, note: dict, names: dict) -> None:
    """Code a selection with its note's polarity, themes and possible-quote mark.

    The codings are the note's author's, as the selection is: QualCoder takes a coding's
    coder from its selection, other tools from the coding.
    """
    coder = pseudonym_guid(note["author"])
    polarity_guids, theme_guids = names["polarity_guids"], names["theme_guids"]
    if note["polarity"] in polarity_guids:
        _coding(selection, selection_guid, polarity_guids[note["polarity"]], coder)
    for key in note["themes"]:
        if key in theme_guids:
            _coding(selection, selection_guid, theme_guids[key], coder)
    if note["possible_quote"]:
        _coding(selection, selection_guid, names["quote_guid"], coder)


def _source_variables(source: ET.Element, names: dict, participant: dict, interview: dict) -> None:
    guide = interview["guide"]
    for key, value in (
        ("team", participant["case"]),
        ("participant", participant["code"]),
        ("language", interview["language"]),
        ("guide", f"{guide['key']} v{guide['version']}"),
        ("date", _interview_date(interview)),
    ):
        if value:  # an interview never planned has no date
            _variable(source, names["variables"][key], value, SOURCE_VARIABLES[key])


def audio_selections(
    notes: list[dict], offsets: dict[str, int], duration_ms: int | None
) -> list[tuple[dict, int, int]]:
    """Each note begun in a recording, with where its selection begins and ends there (ms).

    From the note's offset to the next note's, or the recording's end, and at most
    AUDIO_SELECTION_MAX_MS: the stretch of sound the note was written beside.
    """
    placed = sorted(
        ((n, max(0, offsets[n["id"]])) for n in notes if offsets.get(n["id"]) is not None),
        key=lambda pair: (pair[1], pair[0]["id"]),
    )
    begins = sorted({begin for _note, begin in placed})
    out = []
    for note, begin in placed:
        end = begin + AUDIO_SELECTION_MAX_MS
        later = bisect_right(begins, begin)
        if later < len(begins):
            end = min(end, begins[later])
        if duration_ms is not None:
            end = min(end, max(begin, duration_ms))
        out.append((note, begin, end))
    return out


def _audio_source(names: dict, participant: dict, interview: dict, audio: dict) -> ET.Element:
    """Return a recording's AudioSource: an AudioSelection per note begun while it ran."""
    source_guid = guid("recording", audio["id"])
    started = audio["started_at"] or ""
    source = ET.Element(
        "AudioSource",
        {
            "guid": source_guid,
            "name": f"{participant['code']} {started[:16].replace('T', ' ')} "
            f"({names['words']['recording']})",
            "path": f"internal://{source_guid}.{audio['ext']}",
            "creatingUser": names["user_guid"],
        },
    )
    if started:
        source.set("creationDateTime", started)
    description = interview["id"]
    if audio["cut"]:
        description += " – " + names["words"]["cut_short"]
    _el(source, "Description").text = description
    for note, begin, end in audio["selections"]:
        selection_guid = guid("note-audio", note["id"], audio["id"])
        selection = _el(
            source,
            "AudioSelection",
            guid=selection_guid,
            name=note["question_key"],
            begin=begin,
            end=end,
            creatingUser=pseudonym_guid(note["author"]),
            creationDateTime=note["created_at"],
        )
        _code_note(selection, selection_guid, note, names)
    _source_variables(source, names, participant, interview)
    return source


def _qde_around_sources(
    top: dict[str, Any],
    names: dict[str, Any],
    case_sources: dict[str, list[str]],
    authors: set[int | None],
    coded_cases: set[str],
) -> tuple[bytes, bytes]:
    """Return `project.qde` around its sources: the XML before them and after them.

    Everything but the sources is small (the cases list their sources by GUID only), so it is
    built as one ElementTree; the Sources element holds a stand-in, and the XML is cut there.
    `authors` are the users whose notes are in it, `coded_cases` the teams with a text.
    """
    study, words, lang = top["study"], names["words"], names["lang"]
    # ElementTree cannot put unprefixed attributes under a default namespace, so the elements
    # are written bare and the root declares the namespace they all belong to
    project = ET.Element(
        "Project",
        {
            "xmlns": QDA_NS,
            "name": f"{study['name']} {' '.join(study['cases'])}".strip(),
            "origin": study["origin"],
            "creatingUserGUID": names["user_guid"],
            "creationDateTime": study["exported_at"],
        },
    )
    # the exporter first: QualCoder makes the first user the coder of the imported project
    users = _el(project, "Users")
    exporter = names["user_pseudonym"]
    _el(users, "User", guid=names["user_guid"], name=pseudonym_label(exporter))
    for author in sorted(authors - {exporter}, key=lambda a: (a is None, a or "")):
        _el(users, "User", guid=pseudonym_guid(author), name=pseudonym_label(author))

    codes = _el(_el(project, "CodeBook"), "Codes")
    polarity = _el(codes, "Code", guid=guid("code", "polarity"), name=words["polarity"])
    polarity.set("isCodable", "false")
    for p, code_guid in names["polarity_guids"].items():
        _el(polarity, "Code", guid=code_guid, name=words[p], isCodable="true")
    themes = _el(codes, "Code", guid=guid("code", "themes"), name=words["themes"])
    themes.set("isCodable", "false")
    for t in top["codebook"]:
        name = t["name"].get(lang, t["key"])
        code = _el(themes, "Code", guid=names["theme_guids"][t["key"]], name=name)
        code.set("isCodable", "true")
        other = "en" if lang == "nb" else "nb"
        retired = f" ({words['retired']})" if t["retired"] else ""
        _el(code, "Description").text = f"{t['key']}{retired} – {t['name'][other]}"
    _el(codes, "Code", guid=names["quote_guid"], name=words["quote"], isCodable="true")
    for case in top["cases"]:
        if case["code"] in coded_cases:
            case_guid, case_name = names["cases"][case["code"]]
            code = _el(codes, "Code", guid=case_guid, name=case_name, isCodable="true")
            _el(code, "Description").text = words["case_code"]

    holder = _el(project, "Variables")
    for key, kind in {**SOURCE_VARIABLES, **CASE_VARIABLES}.items():
        variable = _el(holder, "Variable", guid=names["variables"][key], name=words[key])
        variable.set("typeOfVariable", kind)

    if top["cases"]:  # the schema wants at least one Case inside Cases
        cases = _el(project, "Cases")
        for case in top["cases"]:
            case_guid, case_name = names["cases"][case["code"]]
            element = _el(cases, "Case", guid=case_guid, name=case_name)
            if case["code"] in coded_cases:
                _el(element, "CodeRef", targetGUID=case_guid)
            _variable(element, names["variables"]["case_team"], case["code"])
            for source_guid in case_sources[case["code"]]:
                _el(element, "SourceRef", targetGUID=source_guid)
    any_sources = any(case_sources.values())
    if any_sources:
        _el(_el(project, "Sources"), _SOURCES_HERE)
    _el(project, "Description").text = words["description"]

    ET.indent(project)
    xml = ET.tostring(project, encoding="utf-8", xml_declaration=True)
    if not any_sources:
        return xml, b""
    before, after = xml.split(f"<{_SOURCES_HERE} />".encode())
    return before, after


class _Sink:
    """A write-only file for zipfile: it keeps what is written until it is taken.

    It has no seek() and no tell(), so zipfile writes each entry's sizes after its data.
    """

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        self.size = 0
        return out


def _entry(name: str, date_time: tuple) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time)
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


# what a TextSource needs of a note; its words are in the source text
_OUTLINE_NOTE = (
    "id",
    "question_key",
    "created_at",
    "polarity",
    "themes",
    "possible_quote",
    "author",
)


def _outline(
    participant: dict,
    interview: dict,
    spans: list[tuple[dict, int, int]],
    audio: list[dict] | None = None,
    length: int = 0,
) -> bytes:
    """Return what an interview's sources are made of, without the words: one JSON line."""
    outline = [
        {"code": participant["code"], "case": participant["case"]},
        {k: interview[k] for k in ("id", "started_at", "planned_at", "language", "guide")},
        [[{k: note[k] for k in _OUTLINE_NOTE}, start, end] for note, start, end in spans],
        [
            {
                **{k: a[k] for k in ("id", "ext", "started_at", "cut")},
                "selections": [
                    [{k: note[k] for k in _OUTLINE_NOTE}, begin, end]
                    for note, begin, end in a["selections"]
                ],
            }
            for a in audio or []
        ],
        length,
    ]
    return json.dumps(outline, separators=(",", ":")).encode("ascii") + b"\n"


def _outlines(packed: deque[bytes]) -> Iterator[list]:
    """Yield the outlines deflated into `packed`, emptying it as they are read."""
    unpack = zlib.decompressobj()
    rest = b""
    while packed:
        rest += unpack.decompress(packed.popleft())
        *lines, rest = rest.split(b"\n")
        for line in lines:
            yield json.loads(line)
    if rest + unpack.flush():
        raise ValueError("a source outline was cut short")


def _write_audio(zf: zipfile.ZipFile, sink: "_Sink", name: str, recording, date_time) -> Iterator:
    """Write a recording's decrypted sound into the zip, yielding as the sink fills.

    Returns (through StopIteration's value) whether it was cut short by a part that did not
    open: what came before it is kept, and the project says so.
    """
    info = _entry(name, date_time)
    info._compresslevel = AUDIO_COMPRESSLEVEL
    cut = False
    with zf.open(info, "w", force_zip64=recording.size > 1 << 30) as entry:
        try:
            for piece in recording.chunks():
                entry.write(piece)
                if sink.size >= exports.CHUNK_SIZE:
                    yield sink.take()
        except (RecordingError, OSError) as exc:
            log.warning(
                "recording %s is cut short in the export: %s", recording.id, type(exc).__name__
            )
            cut = True
    return cut


def qdpx_chunks(
    top: dict[str, Any],
    people: Iterable[dict[str, Any]],
    lang: str = "en",
    recordings: Callable[[str], list[AudioRecording]] | None = None,
) -> Iterator[bytes]:
    """Yield a REFI-QDA project: a zip of the interview texts under sources/ and `project.qde`.

    One pass over the participants, so that each source text and the selections in it come
    from the same reading of the store: each interview's text goes into the zip as soon as
    it is read. `project.qde` lists the cases, with their sources, before the sources, so it
    comes last, after the texts (in export order), and each TextSource waits for it as an
    outline without the words, deflated in memory (about 40 bytes a note). The bytes are the
    same for the same data. Entries carry their sizes after their data (the zip is written
    front to back, never sought back in).

    `recordings`, when given, returns an interview's recordings: each is written decrypted
    under sources/ beside the texts, read a chunk at a time, and becomes an AudioSource.
    """
    names = _qde_names(top, lang)
    stamp = datetime.fromisoformat(top["study"]["exported_at"].replace("Z", "+00:00"))
    # a fixed entry time (the export's) keeps the zip's bytes the same for the same data
    date_time = max(stamp.timetuple()[:6], (1980, 1, 1, 0, 0, 0))
    sink = _Sink()
    zf = zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED)
    case_sources: dict[str, list[str]] = {c["code"]: [] for c in top["cases"]}
    authors: set[int | None] = set()
    coded_cases: set[str] = set()
    deflate = zlib.compressobj()
    outlines: deque[bytes] = deque()
    for participant in people:
        for interview in participant["interviews"]:
            text, spans = source_text(interview)
            audio = recordings(interview["id"]) if recordings else []
            if not spans and not audio:
                continue  # an interview with no words written and no sound has nothing to code
            if spans:
                source_guid = guid("interview", interview["id"])
                # UTF-8 without a BOM: a BOM would shift every offset by one character
                with zf.open(_entry(f"sources/{source_guid}.txt", date_time), "w") as entry:
                    entry.write(text.encode("utf-8"))
                case_sources[participant["case"]].append(source_guid)
                coded_cases.add(participant["case"])
                authors.update(note["author"] for note, _start, _end in spans)
            sounds = []
            for recording in audio:
                source_guid = guid("recording", recording.id)
                name = f"sources/{source_guid}.{recording.extension}"
                cut = yield from _write_audio(zf, sink, name, recording, date_time)
                sounds.append(
                    {
                        "id": recording.id,
                        "ext": recording.extension,
                        "started_at": exports.iso(recording.started_at),
                        "cut": cut,
                        "selections": audio_selections(
                            interview["notes"], recording.offsets, recording.duration_ms
                        ),
                    }
                )
                case_sources[participant["case"]].append(source_guid)
                authors.update(note["author"] for note, _b, _e in sounds[-1]["selections"])
            outline = _outline(participant, interview, spans, sounds, len(text))
            outlines.append(deflate.compress(outline))
        if sink.size >= exports.CHUNK_SIZE:
            yield sink.take()
    outlines.append(deflate.flush())

    before, after = _qde_around_sources(top, names, case_sources, authors, coded_cases)
    with zf.open(_entry("project.qde", date_time), "w") as entry:
        entry.write(before)
        n = 0
        for participant, interview, spans, sounds, length in _outlines(outlines):
            sources = [_text_source(names, participant, interview, spans, length)] if spans else []
            sources += [_audio_source(names, participant, interview, a) for a in sounds]
            for source in sources:
                ET.indent(source, level=2)
                entry.write((_BETWEEN_SOURCES if n else b"") + _xml(source))
                n += 1
            if sink.size >= exports.CHUNK_SIZE:
                yield sink.take()
        entry.write(after)
    zf.close()
    yield sink.take()


def to_qdpx(data: dict, lang: str = "en") -> bytes:
    """Return `qdpx_chunks` of collected data in one piece."""
    top, people = _split(data)
    return b"".join(qdpx_chunks(top, people, lang))
