"""The appliers: one function per entity that applies a checked change to the store, with
the rules of the forms (docs/sync.md, *The rules*).
"""

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from interview.store.consents import (
    participant_consent,
    quotes_refused,
    renewal_due,
    required_renewals,
)
from interview.store.models import (
    EVENT_KINDS,
    LANGUAGES,
    PLACE_KINDS,
    POLARITIES,
    Consent,
    ConsentFormVersion,
    Debrief,
    GuideVersion,
    Interview,
    InterviewEvent,
    Note,
    Participant,
    User,
    utcnow,
)
from interview.sync.consents import decode_signature, record_consent
from interview.sync.context import (
    Applied,
    Waiting,
    _check_access,
    _device,
    _interview_for,
    _question_keys,
    _themes_by_key,
)
from interview.sync.envelope import (
    DEBRIEF_FIELDS,
    NO_QUOTES_REASON,
    NOTE_FIELDS,
    OLD_FORM_REASON,
    RESCHEDULE_REASONS,
    SEALED_UNOPENED,
    STOP_REASONS,
    Change,
    Reject,
    _bool,
    _check_unicode,
    _choice,
    _int,
    _is_uuid,
    _parse_time,
    _text,
    _unknown_keys,
)
from interview.sync.merge import (
    CONFLICT_SEPARATOR,
    _within_cap,
    conflict_versions,
    merge_fields,
    refold_interview,
)
from interview.sync.recordings import note_recording, recording_details, recording_place
from interview.trust.sealed_box import BoxError, open_box


def _note_values(note: Note) -> dict[str, Any]:
    return {
        "text": note.text,
        "polarity": note.polarity,
        "themes": sorted(t.key for t in note.themes),
        "possible_quote": note.possible_quote,
        "deleted": note.deleted_at is not None,
    }


def _note_input(data: dict, creating: bool) -> dict[str, Any]:
    allowed = (
        ("interview_id", "question_key", *NOTE_FIELDS, "recording")
        if creating
        else (*NOTE_FIELDS, "resolve")
    )
    _unknown_keys(data, allowed)
    values: dict[str, Any] = {}
    if data.get("recording") is not None:
        values["recording"] = recording_place(data["recording"])
    text = _text(data, "text", required=creating)
    if text is not None:
        values["text"] = text
    if "polarity" in data:
        values["polarity"] = _choice(data, "polarity", POLARITIES)
    if "themes" in data:
        themes = data["themes"]
        if (
            not isinstance(themes, list)
            or len(themes) > 60
            or not all(isinstance(t, str) and len(t) <= 80 and "\x00" not in t for t in themes)
        ):
            raise Reject("themes must be a list of theme keys")
        values["themes"] = sorted(set(themes))
    quote = _bool(data, "possible_quote")
    if quote is not None:
        values["possible_quote"] = quote
    deleted = _bool(data, "deleted")
    if deleted is not None:
        values["deleted"] = deleted
    return values


def apply_note(session: Session, user: User, change: Change) -> Applied:
    """Create, edit, delete or resolve a note."""
    note = session.get(Note, change.id)
    if change.base_rev is None:
        values = _note_input(change.data, creating=True)
        if note is not None:
            # the same note created again (a form sent twice): the first one's tags stand, and
            # a different text is kept beside it as a conflict version, so no words are lost
            _check_access(user, note.interview.participant)
            same_place = (
                str(change.data.get("interview_id") or "").lower() == note.interview_id
                and change.data.get("question_key") == note.question_key
            )
            if not same_place:
                # not the same note sent again: an id already taken by another note
                raise Reject("id is already another note's")
            if values["text"] == note.text:
                return Applied("applied", note.rev)
            return _edit_note(
                session, user, note, -1, {"text": values["text"]}, False, change.recorded_at
            )
        question_key = _text(change.data, "question_key", required=True, limit=120)
        interview = _interview_for(session, user, change.data.get("interview_id"))
        if question_key not in _question_keys(interview):
            raise Reject("question_key is not in this interview's guide")
        dropped = _drop_refused_quote(interview.participant, values)
        place = note_recording(session, interview, values.get("recording"))
        note = Note(
            id=change.id,
            interview_id=interview.id,
            question_key=question_key,
            # a note created deleted keeps no words (docs/data-protection.md §5)
            text=None if values.get("deleted") else values["text"],
            polarity=values.get("polarity"),
            possible_quote=bool(values.get("possible_quote")),
            themes=_themes_by_key(session, values.get("themes", [])),
            deleted_at=change.recorded_at if values.get("deleted") else None,
            author_id=user.id,
            created_at=change.recorded_at,
            updated_at=change.recorded_at,
            rev=1,
            field_revs={},
            recording_id=place[0] if place else None,
            recording_offset_ms=place[1] if place else None,
        )
        session.add(note)
        session.flush()
        return Applied("applied", note.rev, NO_QUOTES_REASON if dropped else None, created=note.id)
    # checked in full before it may wait: what waits is as valid as what applies
    values = _note_input(change.data, creating=False)
    if note is None:
        raise Waiting(change.id)
    _check_access(user, note.interview.participant)
    dropped = _drop_refused_quote(note.interview.participant, values)
    applied = _edit_note(
        session,
        user,
        note,
        change.base_rev,
        values,
        bool(change.data.get("resolve")),
        change.recorded_at,
    )
    if dropped and applied.reason is None:
        applied.reason = NO_QUOTES_REASON
    return applied


def _drop_refused_quote(participant: Participant, values: dict[str, Any]) -> bool:
    """Take off a "possible quote" mark the participant's consent in force does not cover.

    Never the note's words: a mark made on a tablet that had not yet heard of the withdrawal
    goes, and the rest of the change is kept (docs/sync.md, *Partial withdrawal*).
    """
    if values.get("possible_quote") and quotes_refused(participant):
        values["possible_quote"] = False
        return True
    return False


def _edit_note(
    session: Session,
    user: User,
    note: Note,
    base_rev: int,
    values: dict,
    resolve: bool,
    recorded_at: datetime | None = None,
) -> Applied:
    current = _note_values(note)
    if resolve:
        if base_rev != note.rev:
            # someone changed the note while this resolution was being made: look again
            applied, conflicts = merge_fields(current, note.field_revs or {}, base_rev, values)
        else:
            applied, conflicts = {k: v for k, v in values.items() if current.get(k) != v}, {}
    else:
        applied, conflicts = merge_fields(current, note.field_revs or {}, base_rev, values)
    if "text" in conflicts and conflicts["text"] in conflict_versions(note.conflict, "text"):
        del conflicts["text"]  # the same words sent again: kept already, no new version
    if not applied and not conflicts and not (resolve and note.conflict and base_rev == note.rev):
        return Applied("applied", note.rev)
    new_rev = note.rev + 1
    revs = dict(note.field_revs or {})
    for name, value in applied.items():
        revs[name] = new_rev
        if name == "themes":
            note.themes = _themes_by_key(session, value)
        elif name == "deleted":
            note.deleted_at = utcnow() if value else None
        else:
            setattr(note, name, value)
    if conflicts:
        kept = dict(note.conflict or {})
        earlier = kept.get("text")
        kept.update(conflicts)
        if "text" in conflicts and earlier and earlier != conflicts["text"]:
            versions = earlier.split(CONFLICT_SEPARATOR)
            last_at = kept.get("recorded_at")
            device = _device.get()
            if (
                device is not None
                and kept.get("device") == device
                and kept.get("by") == user.id
                and recorded_at is not None
                and last_at
                and recorded_at.isoformat() > last_at
            ):
                # the same tablet typing on: its newer words replace its own last version
                # (an older change arriving late is kept beside it instead)
                versions[-1] = conflicts["text"]
            else:
                # a third version while two are waiting: keep every text, one after the other
                versions.append(conflicts["text"])
            _within_cap(versions)
            kept["text"] = CONFLICT_SEPARATOR.join(versions)
        kept["by"] = user.id
        kept["at"] = utcnow().isoformat()
        if "text" in conflicts and recorded_at is not None:
            kept["recorded_at"] = recorded_at.isoformat()
            kept["device"] = _device.get()
        if conflicts.get("deleted") is False and note.deleted_at is not None:
            # deleted on one side, edited on the other: bring the words back, flagged
            note.deleted_at = None
            revs["deleted"] = new_rev
        note.conflict = kept
    elif resolve and base_rev == note.rev:
        note.conflict = None
    if note.deleted_at is not None and "text" in conflicts:
        note.deleted_at = None
    if note.deleted_at is not None:
        forget_words(note, revs, new_rev)
    note.field_revs = revs
    note.rev = new_rev
    note.updated_at = utcnow()
    return Applied("conflict" if conflicts else "applied", note.rev)


def forget_words(note: Note, revs: dict[str, int], rev: int) -> None:
    """Drop a deleted note's words: its text, the versions beside it, the identifiers found.

    In the transaction of the delete, so no sealed copy of the words outlives it in the case
    store (a change that waited for this note had its payload cleared when it applied). The
    text counts as changed at this rev: an edit made before the delete then meets it as a
    conflict and brings the note back, flagged, with its own words (docs/sync.md).
    """
    if note.text:
        revs["text"] = rev
    note.text = None  # the hook clears identifier_kinds too
    note.conflict = None


def apply_event(session: Session, user: User, change: Change) -> Applied:
    """Append an interview event (immutable) and fold the interview's state again."""
    if change.base_rev is not None:
        raise Reject("events cannot be edited")
    existing = session.get(InterviewEvent, change.id)
    if existing is not None:
        # a known record sent again: only someone who may touch it hears that it is there
        _check_access(user, existing.interview.participant)
        return Applied("applied", existing.rev)
    data = change.data
    _unknown_keys(data, ("interview_id", "kind", "details"))
    kind = _choice(data, "kind", EVENT_KINDS, required=True)
    details = data.get("details") or {}
    if not isinstance(details, dict):
        raise Reject("details must be an object")
    details = _event_details(kind, details)
    interview = _interview_for(session, user, data.get("interview_id"))
    if (
        interview.ended_at is not None
        and change.recorded_at > interview.ended_at
        # the stop that follows a distress stage 2 changes nothing, and a recording stops
        # when the interview ends, a moment after it
        and kind not in ("stop", "recording_stopped")
    ):
        # as the forms have it: once stopped or completed, nothing more happens in the visit
        # (an event from before the end that arrives late still counts)
        raise Reject("the interview has ended: nothing more is recorded in it")
    if kind == "recording_started":
        state = participant_consent(interview.participant)
        if state is not None and not state.allows("audio"):
            raise Reject("the participant's consent does not cover audio recording")
    session.add(
        InterviewEvent(
            id=change.id,
            interview_id=interview.id,
            kind=kind,
            data=details,
            recorded_at=change.recorded_at,
            recorded_by_id=user.id,
            rev=1,
        )
    )
    refold_interview(session, interview)
    return Applied("applied", 1, created=change.id)


def _event_details(kind: str, details: dict) -> dict:
    if kind == "capacity_check":
        _unknown_keys(
            details, ("outcome", "minutes", "understands", "can_explain", "not_in_crisis")
        )
        out = {"outcome": _choice(details, "outcome", ("ok", "reschedule"), required=True)}
        minutes = _int(details, "minutes", 15, 240)
        if minutes is not None:
            out["minutes"] = minutes
        for name in ("understands", "can_explain", "not_in_crisis"):
            flag = _bool(details, name)
            if flag is not None:
                out[name] = flag
        return out
    if kind == "reschedule":
        _unknown_keys(details, ("reason", "new_time"))
        new_time = details.get("new_time")
        if new_time is not None:
            new_time = _parse_time(new_time).isoformat()
        return {
            "reason": _choice(details, "reason", RESCHEDULE_REASONS, required=True),
            "new_time": new_time,
        }
    if kind == "stop":
        _unknown_keys(details, ("reason", "comment"))
        return {
            "reason": _choice(details, "reason", STOP_REASONS, required=True),
            "comment": _text(details, "comment", limit=2000) or "",
        }
    if kind == "distress_2":
        _unknown_keys(details, ("contact_team", "comment"))
        return {
            "contact_team": bool(_bool(details, "contact_team")),
            "comment": _text(details, "comment", limit=2000) or "",
        }
    if kind in ("recording_started", "recording_stopped"):
        return recording_details(kind, details)
    _unknown_keys(details, ())
    return {}


def apply_consent(session: Session, user: User, change: Change) -> Applied:
    """Record a consent (immutable); the signature goes to the identity key store."""
    if change.base_rev is not None:
        raise Reject("a consent cannot be edited; record a withdrawal instead")
    existing = session.get(Consent, change.id)
    if existing is not None:
        # a known record sent again: only someone who may touch it hears that it is there
        _check_access(user, existing.participant)
        return Applied("applied", existing.rev)
    data = change.data
    _unknown_keys(
        data,
        (
            "interview_id",
            "form_version",
            "language",
            "answers",
            "method",
            "paper_form_number",
            "signature",
            "printed_name",
            "sealed",
        ),
    )
    # checked in full before the interview is looked for: what waits is as valid as what applies
    language = _choice(data, "language", LANGUAGES, required=True)
    version = _int(data, "form_version", 1, 10_000, required=True)
    form_version = session.scalars(
        select(ConsentFormVersion).where(ConsentFormVersion.version == version)
    ).first()
    if form_version is None:
        raise Reject("unknown consent form version")
    answers = data.get("answers")
    keys = [item["key"] for item in form_version.content["items"]]
    if (
        not isinstance(answers, dict)
        or set(answers) != set(keys)
        or not all(isinstance(v, bool) for v in answers.values())
    ):
        raise Reject("every consent item must be answered yes or no")
    if not answers.get("participate"):
        raise Reject("without consent to take part there is no consent to record")
    method = _choice(data, "method", ("tablet", "paper"), required=True)
    paper_number = _text(data, "paper_form_number", limit=40)
    identity = _sealed_identity(data) if "sealed" in data else data
    printed_name = _text(identity, "printed_name", limit=200)
    signature = None
    if method == "tablet":
        signature = decode_signature(_text(identity, "signature", limit=700_000) or "")
        if signature is None:
            raise Reject("a signature drawn on the tablet is required")
    elif not (paper_number or "").strip():
        raise Reject("the number of the signed paper form is required")
    interview = _interview_for(session, user, data.get("interview_id"))
    # the rules of the consent page: consent comes before the interview, and once
    if interview.status in ("completed", "stopped"):
        raise Reject("the interview has ended: consent is taken before it")
    obtained_at = change.recorded_at
    in_force = participant_consent(interview.participant)
    if in_force is not None:
        # a second consent only renews one given on an older form, when renewal is due
        due = renewal_due(interview, required_renewals(session))
        if due is None:
            raise Reject("the participant's consent is already recorded")
        if version < due.version:
            raise Reject(OLD_FORM_REASON)
        # a tablet whose clock is behind the case store's: the renewal still comes after the
        # consent it renews, or the older one would stay in force (store.consents)
        obtained_at = max(obtained_at, in_force.consent.obtained_at + timedelta(seconds=1))
    record = record_consent(
        interview,
        user,
        consent_id=change.id,
        form_version=form_version,
        language=language,
        answers=answers,
        method=method,
        paper_form_number=(paper_number or "").strip() or None,
        printed_name=(printed_name or "").strip() or None,
        signature=signature,
        obtained_at=obtained_at,
    )
    return Applied("applied", record.rev, created=change.id)


def _sealed_identity(data: dict) -> dict:
    """Open the signature and printed name the tablet sealed to the study key."""
    if "signature" in data or "printed_name" in data:
        raise Reject("with sealed, signature and printed_name go inside it, not beside it")
    try:
        inside = open_box(data["sealed"])
    except BoxError:
        # refused, not retried: a box that does not open now never will
        raise Reject(SEALED_UNOPENED) from None
    if not isinstance(inside, dict):
        raise Reject("the sealed part must hold an object")
    _unknown_keys(inside, ("signature", "printed_name"))
    _check_unicode(inside)
    return inside


def apply_debrief(session: Session, user: User, change: Change) -> Applied:
    """Create or edit the peer's debrief; reflections edited on two tablets keep both texts."""
    data = change.data
    debrief = session.get(Debrief, change.id)
    if change.base_rev is None and debrief is None:
        _unknown_keys(data, ("interview_id", *DEBRIEF_FIELDS))
        wellbeing = _int(data, "wellbeing", 1, 5, required=True)
        reflection = _text(data, "reflection") or ""
        wants_talk = bool(_bool(data, "wants_debrief_talk"))
        follow_up = bool(_bool(data, "participant_follow_up"))
        interview = _interview_for(session, user, data.get("interview_id"))
        # asked of the store, not of interview.debriefs: a debrief created earlier in the same
        # batch is in the store but not in that list, and a second create then broke the batch
        mine = select(Debrief.id).where(
            Debrief.interview_id == interview.id, Debrief.author_id == user.id
        )
        if session.scalar(mine) is not None:
            raise Reject("you already wrote a debrief for this interview; edit that one")
        if interview.status not in ("completed", "stopped"):
            raise Reject("the debrief comes after the interview has ended")
        debrief = Debrief(
            id=change.id,
            interview_id=interview.id,
            wellbeing=wellbeing,
            reflection=reflection,
            wants_debrief_talk=wants_talk,
            participant_follow_up=follow_up,
            author_id=user.id,
            rev=1,
            field_revs={},
            created_at=change.recorded_at,
            updated_at=change.recorded_at,
        )
        session.add(debrief)
        session.flush()
        return Applied("applied", 1, created=debrief.id)
    _unknown_keys(data, ("interview_id", *DEBRIEF_FIELDS))
    values: dict[str, Any] = {}
    if "wellbeing" in data:
        values["wellbeing"] = _int(data, "wellbeing", 1, 5, required=True)
    if "reflection" in data:
        values["reflection"] = _text(data, "reflection") or ""
    for name in ("wants_debrief_talk", "participant_follow_up"):
        if name in data:
            values[name] = bool(_bool(data, name))
    if debrief is None:
        raise Waiting(change.id)
    _check_access(user, debrief.interview.participant)
    if debrief.author_id != user.id:
        raise Reject("a debrief is changed only by the one who wrote it")
    current = {name: getattr(debrief, name) for name in DEBRIEF_FIELDS}
    base = change.base_rev or 1
    applied, conflicts = merge_fields(current, debrief.field_revs or {}, base, values)
    if "reflection" in conflicts and conflicts["reflection"] in conflict_versions(
        debrief.conflict, "reflection"
    ):
        del conflicts["reflection"]  # the same words sent again: kept already
    if not applied and not conflicts:
        return Applied("applied", debrief.rev)
    new_rev = debrief.rev + 1
    revs = dict(debrief.field_revs or {})
    for name, value in applied.items():
        setattr(debrief, name, value)
        revs[name] = new_rev
    # a yes on either side wins for the two flags: nobody's call for help is lost
    for name in ("wants_debrief_talk", "participant_follow_up"):
        if conflicts.pop(name, False) is True:
            setattr(debrief, name, True)
            revs[name] = new_rev
    if conflicts:
        kept = dict(debrief.conflict or {})
        earlier = kept.get("reflection")
        kept.update(conflicts)
        if "reflection" in conflicts and earlier and earlier != conflicts["reflection"]:
            versions = [*earlier.split(CONFLICT_SEPARATOR), conflicts["reflection"]]
            _within_cap(versions)
            kept["reflection"] = CONFLICT_SEPARATOR.join(versions)
        debrief.conflict = kept
    debrief.field_revs = revs
    debrief.rev = new_rev
    debrief.updated_at = utcnow()
    return Applied("conflict" if conflicts else "applied", debrief.rev)


def apply_interview(session: Session, user: User, change: Change) -> Applied:
    """Create an interview planned on a tablet, or move its place in the guide."""
    data = change.data
    interview = session.get(Interview, change.id)
    if change.base_rev is None and interview is None:
        _unknown_keys(data, ("participant_id", "language", "planned_at", "place_kind"))
        participant_id = data.get("participant_id")
        if not _is_uuid(participant_id):
            raise Reject("participant_id must be a UUID")
        participant = session.get(Participant, participant_id)
        if participant is None:
            raise Reject("not allowed for this participant")
        _check_access(user, participant)
        guide = session.scalars(select(GuideVersion).order_by(GuideVersion.version.desc())).first()
        if guide is None:
            raise Reject("no interview guide is loaded")
        planned = _parse_time(data.get("planned_at"))
        interview = Interview(
            id=change.id,
            participant=participant,
            guide_version=guide,
            language=_choice(data, "language", LANGUAGES, required=True),
            place_kind=_choice(data, "place_kind", PLACE_KINDS) or "other",
            planned_at=planned,
            first_planned_at=planned,
            created_by_id=user.id,
            rev=1,
        )
        session.add(interview)
        session.flush()
        return Applied("applied", 1, created=interview.id)
    _unknown_keys(data, ("current_section",))
    section = _int(data, "current_section", 0, 100)
    if interview is None:
        raise Waiting(change.id)
    _check_access(user, interview.participant)
    if section is not None and section != interview.current_section:
        interview.current_section = section
        interview.rev += 1
        interview.updated_at = utcnow()
    return Applied("applied", interview.rev)


APPLIERS: dict[str, Callable[[Session, User, Change], Applied]] = {
    "note": apply_note,
    "event": apply_event,
    "consent": apply_consent,
    "debrief": apply_debrief,
    "interview": apply_interview,
}
