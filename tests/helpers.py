"""Small helpers shared by the flow tests."""

import base64
import io
import uuid

from PIL import Image, ImageDraw


def signature_data_url() -> str:
    """Return a PNG data URL with a drawn stroke, as the signature pad would send."""
    img = Image.new("RGBA", (300, 100), (0, 0, 0, 0))
    ImageDraw.Draw(img).line([(10, 80), (120, 20), (280, 70)], fill=(0, 0, 0, 255), width=3)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def blank_signature_data_url() -> str:
    """Return a PNG data URL of an empty canvas."""
    img = Image.new("RGBA", (300, 100), (0, 0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


CONSENT_ALL_YES = {
    "item-participate": "yes",
    "item-audio": "no",
    "item-quotes": "yes",
    "item-recontact": "yes",
}


def start_interview(client, interview_id: str, minutes: int = 75):
    """Pass the capacity check."""
    return client.post(
        f"/interviews/{interview_id}/capacity",
        data={
            "understands": "y",
            "can_explain": "y",
            "not_in_crisis": "y",
            "minutes": str(minutes),
            "go": "ok",
        },
    )


def give_paper_consent(client, interview_id: str, number: str = "P-123"):
    """Record consent on a paper form."""
    return client.post(
        f"/interviews/{interview_id}/consent",
        data={**CONSENT_ALL_YES, "method": "paper", "paper_form_number": number},
    )


def note_change(iid, note_id, text, base_rev=None, change_id=None, **extra):
    """Return a sync change for a note: a create without base_rev, else an edit of text."""
    data = {"text": text, **extra}
    if base_rev is None:
        data.update(interview_id=iid, question_key="context.services")
    return {
        "change_id": change_id or str(uuid.uuid4()),
        "entity": "note",
        "id": note_id,
        "base_rev": base_rev,
        "recorded_at": "2026-11-23T10:00:00Z",
        "data": data,
    }
