"""A .qdpx read back as an analyst's tool reads it, for the tests.

Three readings that share nothing with interview/desk/refi.py: the REFI-QDA schema
(standards/) validates `project.qde`; pyrefiqda, a third-party REFI-QDA reader from PyPI,
parses it into its own models, from which everything below is taken; each selection's words
are cut from its plain-text source in the zip at its positions. `qualcoder_view` then applies
QualCoder's own import rules (its refi.py) to that reading.
"""

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree
from pyrefiqda import RefiProject

XSD = Path(__file__).resolve().parents[2] / "standards" / "refi-qda-project-1.0.xsd"


@dataclass
class Selection:
    """A coded stretch of a source, as a reader sees it."""

    source: str  # the source's GUID
    words: str | None  # a text selection's words, cut from its plain-text source
    span: tuple[int, int]  # characters of a text, milliseconds of a recording
    user: str | None  # the selection's creatingUser, by User name
    coders: list[str | None]  # each coding's creatingUser, by User name
    codes: list[str]  # each coding's code, by GUID


@dataclass
class Reading:
    """What a .qdpx holds, by GUID."""

    users: dict[str, str | None]
    codes: dict[str, str]
    texts: dict[str, str]
    selections: dict[str, Selection]
    variables: dict[str, tuple[str, str]]  # GUID: (name, type)
    case_names: dict[str, str | None]
    case_code_refs: dict[str, set[str]]
    case_sources: dict[str, set[str]]
    case_values: dict[str, dict[str, str]]  # case GUID: {variable GUID: value}
    source_values: dict[str, dict[str, str]]  # source GUID: {variable GUID: value}
    source_names: dict[str, str | None] = field(default_factory=dict)


def _value(value) -> str:
    for kind in ("text_value", "date_value", "integer_value", "boolean_value", "float_value"):
        got = getattr(value, kind)
        if got is not None:
            return str(got)
    raise AssertionError("a VariableValue without a value")


def _walk_codes(codes, out: dict[str, str]) -> None:
    for code in codes:
        out[code.guid] = code.name
        _walk_codes(code.code, out)


def read_qdpx(blob: bytes, workdir: Path) -> Reading:
    """Validate a .qdpx against the schema and read it with pyrefiqda."""
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.testzip() is None
        schema = etree.XMLSchema(etree.parse(str(XSD)))
        schema.assertValid(etree.fromstring(zf.read("project.qde")))
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "project.qdpx"
    path.write_bytes(blob)
    extracted = workdir / "extracted"
    project = RefiProject.load(path, extract_dir=str(extracted))

    users = {u.guid: u.name for u in (project.users.user if project.users else [])}
    codes: dict[str, str] = {}
    _walk_codes(project.code_book.codes.code if project.code_book else [], codes)
    variables = {
        v.guid: (v.name, v.type_of_variable.value)
        for v in (project.variables.variable if project.variables else [])
    }
    reading = Reading(users, codes, {}, {}, variables, {}, {}, {}, {}, {})
    for case in project.cases.case if project.cases else []:
        reading.case_names[case.guid] = case.name
        reading.case_code_refs[case.guid] = {r.target_guid for r in case.code_ref}
        reading.case_sources[case.guid] = {r.target_guid for r in case.source_ref}
        reading.case_values[case.guid] = {
            v.variable_ref.target_guid: _value(v) for v in case.variable_value
        }
    sources = project.sources
    for source in sources.text_source if sources else []:
        # bytes, decoded here: a text-mode read would turn "\r\n" into "\n" and move offsets
        raw = RefiProject.resolve_source_path(source.plain_text_path, extracted).read_bytes()
        assert not raw.startswith(b"\xef\xbb\xbf")  # a BOM would shift every offset
        text = raw.decode("utf-8")
        reading.texts[source.guid] = text
        for s in source.plain_text_selection:
            assert s.guid not in reading.selections
            assert 0 <= s.start_position <= s.end_position <= len(text)
            reading.selections[s.guid] = Selection(
                source.guid,
                text[s.start_position : s.end_position],
                (s.start_position, s.end_position),
                users.get(s.creating_user) if s.creating_user else None,
                [users.get(c.creating_user) for c in s.coding],
                [c.code_ref.target_guid for c in s.coding],
            )
    for source in sources.audio_source if sources else []:
        for s in source.audio_selection:
            assert s.guid not in reading.selections
            reading.selections[s.guid] = Selection(
                source.guid,
                None,
                (s.begin, s.end),
                users.get(s.creating_user) if s.creating_user else None,
                [users.get(c.creating_user) for c in s.coding],
                [c.code_ref.target_guid for c in s.coding],
            )
    for source in [*(sources.text_source if sources else [])] + [
        *(sources.audio_source if sources else [])
    ]:
        reading.source_names[source.guid] = source.name
        reading.source_values[source.guid] = {
            v.variable_ref.target_guid: _value(v) for v in source.variable_value
        }
    # every reference points at something that is there
    for selection in reading.selections.values():
        assert set(selection.codes) <= set(codes)
        assert None not in selection.coders and selection.user is not None
    for refs in reading.case_sources.values():
        assert refs <= set(reading.source_values)
    return reading


@dataclass
class QualCoderProject:
    """What QualCoder's REFI-QDA import makes of a project (ccbogel/QualCoder, refi.py)."""

    case_variables: set[str]  # attribute names of caseOrFile 'case'
    file_variables: set[str]  # of caseOrFile 'file'
    file_values: dict[str, dict[str, str]]  # source GUID: {attribute name: value}
    case_texts: dict[str, set[tuple[str, int, int]]]  # case name: {(source GUID, pos0, pos1)}
    code_texts: list[tuple[str, str, str, str]]  # (code name, source GUID, seltext, owner)


def qualcoder_view(reading: Reading) -> QualCoderProject:
    """Apply QualCoder's import rules to a reading.

    - A variable is made a file variable, then turned into a case variable (by name) once a
      named Case gives it a value: values a source gave it are no longer shown as the
      source's.
    - A named Case's texts are the codings of the Code whose GUID is the Case's (QualCoder
      moves them from coded text to case text and drops the code); SourceRef is not read.
    - A text coding's owner is its selection's creatingUser, by User name.
    """
    retyped = {reading.variables[g][0] for values in reading.case_values.values() for g in values}
    names = {g: name for g, (name, _kind) in reading.variables.items()}
    file_values = {
        source: {names[g]: value for g, value in values.items() if names[g] not in retyped}
        for source, values in reading.source_values.items()
    }
    named_cases = {g: n for g, n in reading.case_names.items() if n is not None}
    case_texts: dict[str, set[tuple[str, int, int]]] = {n: set() for n in named_cases.values()}
    code_texts = []
    for selection in reading.selections.values():
        if selection.words is None:
            continue
        for code in selection.codes:
            if code in named_cases:
                case_texts[named_cases[code]].add((selection.source, *selection.span))
            else:
                code_texts.append(
                    (reading.codes[code], selection.source, selection.words, selection.user)
                )
    return QualCoderProject(
        case_variables=retyped,
        file_variables=set(names.values()) - retyped,
        file_values=file_values,
        case_texts=case_texts,
        code_texts=code_texts,
    )
