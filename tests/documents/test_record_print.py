"""What a printed record carries beyond its words (issue 20): emoji in notes as real glyphs of
the emoji font the app ships, a note's own line breaks, and table headers with their scope in
the PDF's structure tree (PDF/UA, Matterhorn 15-003) in records, reports and consent records."""

import io
import re
import uuid
from pathlib import Path

import pypdf
import pytest
from fontTools.ttLib import TTFont

from interview.documents.render import EMOJI_FONT, paragraphs
from tests.helpers import consented_interview

ROOT = Path(__file__).resolve().parents[2]
EMOJI_NOTE = "Takk 🙂🌧️ for praten"
LINES_NOTE = "Linje 1\nLinje 2\n\nNytt avsnitt"


@pytest.fixture
def noted(app, client, world):
    """Interview pa, stopped, with a note with emoji and one with a single line break."""
    iid = consented_interview(client, world)
    response = client.post(
        f"/interviews/{iid}/section/0",
        data={
            "new-context.services-id": str(uuid.uuid4()),
            "new-context.services-text": EMOJI_NOTE,
            "new-context.duration-id": str(uuid.uuid4()),
            "new-context.duration-text": LINES_NOTE,
            "go": "stay",
        },
    )
    assert response.status_code == 302
    stop = client.post(f"/interviews/{iid}/stop", data={"reason": "participant_wish"})
    assert stop.status_code == 302
    client.post("/logout")
    return iid


def _coordinator(app):
    from tests.conftest import PASSWORD

    coord = app.test_client()
    coord.post("/login", data={"username": "coord_a", "password": PASSWORD})
    return coord


def _record(app, iid: str, lang: str = "nb") -> bytes:
    response = _coordinator(app).get(f"/desk/interviews/{iid}/record/{lang}.pdf")
    assert response.status_code == 200
    return response.data


def _fonts(reader: pypdf.PdfReader) -> dict[str, dict]:
    """Each embedded font's subset file and what its glyph codes stand for, by base name."""
    fonts = {}
    for page in reader.pages:
        for ref in page["/Resources"].get_object().get("/Font", {}).values():
            font = ref.get_object()
            name = str(font["/BaseFont"]).split("+", 1)[-1]
            descendant = font["/DescendantFonts"][0].get_object()
            program = descendant["/FontDescriptor"]["/FontFile2"].get_data()
            cmap = font["/ToUnicode"].get_object().get_data().decode("latin-1")
            codes = {}
            for code, hexes in re.findall(r"<([0-9a-f]{4})>\s*<([0-9a-f]*)>", cmap):
                codes[int(code, 16)] = bytes.fromhex(hexes).decode("utf-16-be")
            fonts.setdefault(name, {"program": program, "codes": {}})["codes"].update(codes)
    return fonts


def test_emoji_in_a_note_print_as_glyphs_of_the_shipped_emoji_font(app, world, noted):
    reader = pypdf.PdfReader(io.BytesIO(_record(app, noted)))
    fonts = _fonts(reader)
    assert "Noto-Emoji" in fonts, sorted(fonts)
    emoji = fonts["Noto-Emoji"]
    program = TTFont(io.BytesIO(emoji["program"]))
    order = program.getGlyphOrder()
    for char in ("🙂", "🌧"):
        # the glyph code that stands for the emoji (CID = glyph id: the map is /Identity)
        codes = [code for code, text in emoji["codes"].items() if text == char]
        assert codes, f"{char!r} is not set in the emoji font"
        glyph = program["glyf"][order[codes[0]]]
        assert codes[0] != 0 and glyph.numberOfContours != 0, f"{char!r} printed as an empty box"
    # no other font was asked for them (the text fonts have none: they would print boxes)
    for name, font in fonts.items():
        if name != "Noto-Emoji":
            assert not {"🙂", "🌧"} & set(font["codes"].values()), name
    # the words around them read as written (kerning splits words in pypdf's plain text)
    text = "".join(page.extract_text() for page in reader.pages)
    assert "Takk🙂🌧forpraten" in re.sub(r"\s+", "", text)


def test_the_emoji_font_is_a_file_of_the_app_not_a_download():
    font = TTFont(ROOT / "static" / EMOJI_FONT)
    assert font["name"].getDebugName(1) == "Noto Emoji"
    assert ord("🙂") in font.getBestCmap()
    css = (ROOT / "static/css/documents.css").read_text()
    assert f'url("../{EMOJI_FONT}")' in css
    assert "Open Font License" in (ROOT / "static/fonts/OFL.txt").read_text()


def test_a_single_line_break_in_a_note_stays_in_the_print(app, world, noted):
    reader = pypdf.PdfReader(io.BytesIO(_record(app, noted)))
    lines = [
        line.strip()
        for page in reader.pages
        for line in page.extract_text(extraction_mode="layout").splitlines()
    ]
    first = next(i for i, line in enumerate(lines) if "Linje 1" in line)
    assert "Linje 2" not in lines[first], lines[first]
    assert lines[first + 1].startswith("Linje 2"), lines[first : first + 3]
    assert any(line.startswith("Nytt avsnitt") for line in lines[first + 2 :])


def test_a_note_splits_into_paragraphs_at_blank_lines_only():
    assert paragraphs("a\r\nb\n \n\nc\n") == ["a\nb", "c"]
    assert paragraphs("") == [] and paragraphs(None) == []


# -- table headers -----------------------------------------------------------------------------


def _table_headers(pdf: bytes) -> list[tuple[str, str | None]]:
    """Each TH of the structure tree: its parent's parent (THead, TBody, Table) and its scope."""
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    found = []

    def walk(node):
        node = node.get_object()
        if isinstance(node, pypdf.generic.DictionaryObject):
            if node.get("/S") == "/TH":
                attributes = node.get("/A", {})
                assert attributes.get("/O") == "/Table"
                row = node["/P"].get_object()
                found.append((str(row["/P"].get_object()["/S"]), attributes.get("/Scope")))
            kids = node.get("/K", [])
            for kid in kids if isinstance(kids, list) else [kids]:
                walk(kid)
        elif isinstance(node, list):
            for kid in node:
                walk(kid)

    walk(reader.trailer["/Root"]["/StructTreeRoot"])
    return found


def test_table_headers_of_a_record_carry_their_scope(app, world, noted):
    headers = _table_headers(_record(app, noted, "en"))
    assert headers and all(scope in ("/Row", "/Column") for _, scope in headers), headers
    # the consent items' and the events' column heads, and the facts' row heads
    assert ("/THead", "/Column") in headers
    assert ("/TBody", "/Row") in headers
    assert all(scope == "/Column" for parent, scope in headers if parent == "/THead")
    assert all(scope == "/Row" for parent, scope in headers if parent == "/TBody")


def test_table_headers_of_the_progress_report_carry_their_scope(app, world, noted):
    from tests.conftest import PASSWORD

    admin = app.test_client()
    admin.post("/login", data={"username": "admin", "password": PASSWORD})
    response = admin.get("/desk/report/nb.pdf")
    assert response.status_code == 200
    headers = _table_headers(response.data)
    assert len(headers) > 20
    assert all(scope in ("/Row", "/Column") for _, scope in headers), headers
    assert all(scope == "/Column" for parent, scope in headers if parent == "/THead")
    assert {("/TBody", "/Row"), ("/TFoot", "/Row")} <= set(headers)


def test_table_headers_of_a_consent_record_carry_their_scope(app, world, noted):
    from sqlalchemy import select

    from interview.store.extensions import db
    from interview.store.models import Consent, ConsentRecord

    with app.app_context():
        consent = db.session.scalars(
            select(Consent).where(Consent.participant_id == world.participants["pa"])
        ).one()
        record = db.session.get(ConsentRecord, consent.id)
        assert record is not None
        pdf = _coordinator(app).get(f"/desk/consents/{consent.id}/record.pdf").data
    headers = _table_headers(pdf)
    assert headers and all(scope == "/Row" for _, scope in headers), headers
    # PDF/A: every font it uses is in the file
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    for page in reader.pages:
        for ref in page["/Resources"].get_object().get("/Font", {}).values():
            descriptor = ref.get_object()["/DescendantFonts"][0].get_object()["/FontDescriptor"]
            assert "/FontFile2" in descriptor


def test_every_table_header_in_a_document_template_says_what_it_heads():
    templates = sorted((ROOT / "templates/documents").glob("*.html"))
    templates.append(ROOT / "templates/desk/_progress_figures.html")
    for path in templates:
        for tag in re.findall(r"<th\b[^>]*>", path.read_text()):
            assert re.search(r'\bscope="(row|col|rowgroup|colgroup)"', tag), f"{path.name}: {tag}"
