"""The peer's interview, from capacity check and consent through the guide to the debrief."""

import uuid

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from interview.field import flow
from interview.field.notes import apply_notes, no_quotes_message, parse_section_form
from interview.field.pages import (
    _by_question,
    _check_consent_method,
    _conflicted_notes,
    _consent_answers,
    _consent_problems,
    _consent_strings,
    _identifier_findings,
    _identifier_guard,
    _identifier_words,
    _latest_consent_form,
    _note_words,
    _participant_words,
    _renewal_words,
    _section_notes,
    _themes_for,
    _warn_identifiers_elsewhere,
    free_text_guard,
    note_fields,
    text_findings,
    theme_boxes,
)
from interview.store.consent_form import consent_letter
from interview.store.consents import quotes_refused
from interview.store.content import guide_of
from interview.store.extensions import db
from interview.store.models import (
    ConsentFormVersion,
    Debrief,
    Interview,
    Note,
    Participant,
    Theme,
    utcnow,
)
from interview.sync.batch import apply_changes, web_change
from interview.sync.consents import decode_signature, record_consent
from interview.trust.access import interview_or_404, open_interviews_visible_to
from interview.web.forms import (
    CapacityForm,
    ConsentForm,
    DebriefForm,
    DistressTwoForm,
    RescheduleForm,
    StopForm,
    reschedule_reason_choices,
    stop_reason_choices,
    wellbeing_choices,
)
from interview.web.i18n import oslo_to_utc, utc_to_oslo
from interview.web.labels import FORM_MESSAGES, Words

bp = Blueprint("interviews", __name__, url_prefix="/interviews")


def offline_copy() -> bool:
    """True when the tablet fetches a page to keep for offline use (no redirects by state)."""
    return request.method == "GET" and request.headers.get("X-Offline-Copy") == "1"


def _editable_or_409(interview: Interview) -> None:
    if interview.participant.status == "withdrawn":
        abort(409, _("This participant has withdrawn."))


@login_required
def mine():
    """The interviews the user may see, as today / coming / done."""
    return _mine_page()


def _mine_page() -> str:
    rows = list(
        db.session.scalars(
            open_interviews_visible_to(current_user)
            .options(
                selectinload(Interview.participant).selectinload(Participant.case),
            )
            .order_by(Interview.planned_at)
        )
    )
    now = utcnow()
    today = utc_to_oslo(now).date()
    groups = {"today": [], "coming": [], "earlier": [], "done": []}
    for iv in rows:
        if iv.status in ("completed", "stopped") or iv.participant.status == "withdrawn":
            groups["done"].append(iv)
        elif iv.status in ("in_progress", "paused"):
            groups["today"].append(iv)
        else:
            day = utc_to_oslo(iv.planned_at).date()
            if day == today:
                groups["today"].append(iv)
            elif day > today:
                groups["coming"].append(iv)
            else:
                groups["earlier"].append(iv)
    groups["done"].reverse()
    return render_template("interviews/mine.html", groups=groups, now=now)


@login_required
def overview(interview_id):
    """An interview's summary and the next step."""
    interview = interview_or_404(interview_id)
    guide = guide_of(interview.guide_version)
    consent = flow.valid_consent(interview.participant)
    # the form a paper consent is signed on: the one signed, else the one the tablet would show
    consent_form = (
        consent.form_version
        if consent
        else db.session.scalars(
            select(ConsentFormVersion).order_by(ConsentFormVersion.version.desc())
        ).first()
    )
    return render_template(
        "interviews/overview.html",
        interview=interview,
        guide=guide,
        consent=consent,
        consent_form=consent_form,
    )


@login_required
def capacity(interview_id):
    """Capacity check before consent: go on, or reschedule."""
    interview = interview_or_404(interview_id)
    _editable_or_409(interview)
    if interview.status != "planned" and not offline_copy():
        return redirect(url_for("interviews.overview", interview_id=interview.id))
    form = CapacityForm(minutes=75)
    if form.validate_on_submit():
        if request.form.get("go") == "reschedule":
            flow.record_event(
                interview,
                "capacity_check",
                current_user,
                outcome="reschedule",
                understands=form.understands.data,
                can_explain=form.can_explain.data,
                not_in_crisis=form.not_in_crisis.data,
            )
            db.session.commit()
            return redirect(url_for("interviews.reschedule", interview_id=interview.id))
        if form.understands.data and form.can_explain.data and form.not_in_crisis.data:
            flow.capacity_ok(interview, current_user, form.minutes.data)
            db.session.commit()
            return redirect(url_for("interviews.consent", interview_id=interview.id))
        form.not_in_crisis.errors = list(form.not_in_crisis.errors) + [
            str(FORM_MESSAGES["need_all_three"])
        ]
    status = 400 if request.method == "POST" else 200
    return render_template("interviews/capacity.html", interview=interview, form=form), status


@login_required
def reschedule(interview_id):
    """Move a planned interview to another day, recording why."""
    interview = interview_or_404(interview_id)
    _editable_or_409(interview)
    if interview.status != "planned" and not offline_copy():
        return redirect(url_for("interviews.overview", interview_id=interview.id))
    form = RescheduleForm()
    form.reason.choices = reschedule_reason_choices()
    if form.validate_on_submit():
        if (form.day.data is None) != (form.at.data is None):
            form.at.errors = list(form.at.errors) + [_("Give both a date and a time, or neither.")]
        else:
            new_time = (
                oslo_to_utc(form.day.data, form.at.data) if form.day.data is not None else None
            )
            flow.reschedule(interview, current_user, form.reason.data, new_time)
            db.session.commit()
            flash(_("The interview is moved. Thank you for taking care."), "success")
            return redirect(url_for("interviews.overview", interview_id=interview.id))
    status = 400 if request.method == "POST" else 200
    return render_template("interviews/reschedule.html", interview=interview, form=form), status


@login_required
def consent(interview_id):
    """Informed consent in the interview language: every item answered; no consent, no interview."""
    interview = interview_or_404(interview_id)
    _editable_or_409(interview)
    if offline_copy():
        pass  # the tablet's copy: the tablet decides from its own state which page to show
    elif interview.status == "planned":
        return redirect(url_for("interviews.capacity", interview_id=interview.id))
    elif not flow.consent_due(interview):
        return redirect(url_for("interviews.section", interview_id=interview.id, index=0))
    elif interview.status not in ("in_progress", "paused"):
        # a stopped or finished interview takes no new consent
        return redirect(url_for("interviews.overview", interview_id=interview.id))
    form_version = _latest_consent_form()
    content = form_version.content
    form = ConsentForm()
    answers: dict[str, bool] = {}
    item_errors: dict[str, str] = {}
    if request.method == "POST":
        # every check at once, so the summary names everything that is missing in one go
        form.validate()
        answers, item_errors = _consent_answers(content["items"])
        signature = _check_consent_method(form)
        # each field asked afresh: `form.errors` is worked out once and would miss the checks above
        if not item_errors and not any(field.errors for field in form):
            record_consent(
                interview,
                current_user,
                consent_id=str(uuid.uuid4()),
                form_version=form_version,
                language=interview.language,
                answers=answers,
                method=form.method.data,
                paper_form_number=(form.paper_form_number.data or "").strip() or None,
                printed_name=(form.printed_name.data or "").strip() or None,
                signature=signature,
                obtained_at=utcnow(),
            )
            flow.record_event(interview, "start", current_user)
            db.session.commit()
            flash(_("Consent is recorded. You can begin the interview."), "success")
            return redirect(url_for("interviews.section", interview_id=interview.id, index=0))
    status = 400 if request.method == "POST" else 200
    return (
        render_template(
            "interviews/consent.html",
            said=_participant_words(interview.language),
            interview=interview,
            form=form,
            content=content,
            letter=consent_letter(content, interview.language),
            form_version=form_version,
            answers=answers,
            item_errors=item_errors,
            problems=_consent_problems(form, content["items"], answers, item_errors, interview),
            consent_strings=_consent_strings(),
            **_renewal_words(interview, form_version),
            # a drawn signature survives a rejected submission, so nobody signs twice
            kept_signature=form.signature.data
            if form.signature.data and decode_signature(form.signature.data)
            else "",
        ),
        status,
    )


@login_required
def section(interview_id, index: int):
    """One guide section: questions, probes and notes with tags; saving never loses text."""
    return _section(interview_or_404(interview_id), index)


def _section(interview: Interview, index: int):
    # `interview` comes from interview_or_404, which refuses a withdrawn participant's
    if offline_copy():
        pass
    elif interview.status == "planned":
        return redirect(url_for("interviews.capacity", interview_id=interview.id))
    elif flow.consent_due(interview):
        return redirect(url_for("interviews.consent", interview_id=interview.id))
    guide = guide_of(interview.guide_version)
    if not 0 <= index < len(guide.sections):
        abort(404)
    sec = guide.sections[index]
    keys = [q.key for q in sec.questions]
    # the consent in force decides whether a note may be marked as a possible quote
    no_quotes = quotes_refused(interview.participant)

    def page(notes, all_themes, errors, status) -> str:
        active = [t for t in all_themes.values() if not t.retired]
        staff = {st.theme_id for st in interview.participant.case.staff_themes}
        return render_template(
            "interviews/section.html",
            interview=interview,
            guide=guide,
            section=sec,
            index=index,
            notes=notes,
            notes_by_question=_by_question(notes),
            note_fields=note_fields,
            themes_for=lambda q: _themes_for(q.themes, active, staff),
            # the order of a new note's choices before its question's suggestions go first
            page_themes=_themes_for((), active, staff),
            errors=errors,
            values=request.form if status == 400 else {},
            theme_boxes=theme_boxes,
            # a page of notes shows each note's chosen themes; offline.js adds the rest from
            # the page's one list, and without JavaScript "themes=all" shows every list
            all_themes=request.args.get("themes") == "all" or status == 400,
            note_words=Words(**_note_words()),
            identifier_findings=_identifier_findings(notes),
            identifier_words=Words(**_identifier_words()),
            identifier_guard=_identifier_guard(),
            no_quotes=no_quotes,
            no_quotes_text=no_quotes_message(),
        )

    def themes() -> dict[int, Theme]:
        return {t.id: t for t in db.session.scalars(select(Theme))}

    if request.method != "POST":
        return page(_section_notes(interview, keys), themes(), {}, 200)
    notes = _section_notes(interview, keys)
    all_themes = themes()
    active_ids = {t.id for t in all_themes.values() if not t.retired}
    errors: dict[str, str] = {}
    status = 200
    _editable_or_409(interview)
    existing = {n.id: n for n in notes}
    # a retired theme already on a note may stay on it
    allowed = active_ids | {t.id for n in notes for t in n.themes}
    parsed = parse_section_form(request.form, keys, existing, allowed, quotes=not no_quotes)
    if parsed.errors:
        errors = parsed.errors
        status = 400
    else:
        result = apply_notes(interview, parsed.inputs, current_user, all_themes)
        refused = [r for r in result.results if r.status in ("rejected", "retry")]
        if refused:
            # a refused note refuses the whole form, so nothing is saved half; nothing
            # typed is dropped either: the page comes back with every text still in it
            db.session.rollback()
        else:
            interview.current_section = index
            db.session.commit()
        if refused:
            errors = {"_all": refused[0].reason or ""}
            status = 400
            notes = [
                n
                for n in db.session.scalars(select(Note).where(Note.interview_id == interview.id))
                if n.question_key in keys and n.deleted_at is None
            ]
        elif result.conflicts:
            flash(
                _(
                    "Someone else changed a note at the same time. Both texts are kept; "
                    "look at the note marked \u201ctwo versions\u201d."
                ),
                "warning",
            )
        if status != 400:
            target = _after_save(interview, index, len(guide.sections))
            _warn_identifiers_elsewhere(result.results, target, interview, index)
            return redirect(target)
    return page(notes, all_themes, errors, status), status


def _after_save(interview: Interview, index: int, count: int) -> str:
    go = request.form.get("go", "stay")
    if go == "next" and index + 1 < count:
        return url_for("interviews.section", interview_id=interview.id, index=index + 1)
    if go == "back" and index > 0:
        return url_for("interviews.section", interview_id=interview.id, index=index - 1)
    if go == "finish":
        return url_for("interviews.finish", interview_id=interview.id)
    if go.startswith("section-") and go[8:].isdigit() and int(go[8:]) < count:
        return url_for("interviews.section", interview_id=interview.id, index=int(go[8:]))
    if go == "themes":
        # without JavaScript: every note's whole theme list, on the page just saved
        return url_for("interviews.section", interview_id=interview.id, index=index, themes="all")
    # the safety bar on this page submits the notes form first, so nothing typed is lost
    here = url_for("interviews.section", interview_id=interview.id, index=index)
    steps = {
        "pause": (flow.pause, "paused", _("The interview is paused.")),
        "resume": (flow.resume, "in_progress", _("Welcome back.")),
        "check_in": (
            flow.check_in,
            None,
            _("Checked in. The coordinator can see that you are safe."),
        ),
    }
    if go in steps:
        action, done, message = steps[go]
        if interview.status != done:
            try:
                action(interview, current_user)
            except flow.FlowError:
                return here
            db.session.commit()
        flash(message, "info")
        return here
    if go == "distress":
        try:
            flow.distress_stage_one(interview, current_user)
            db.session.commit()
        except flow.FlowError:
            return here
        return url_for("interviews.distress", interview_id=interview.id)
    if go == "stop":
        return url_for("interviews.stop", interview_id=interview.id)
    return url_for("interviews.section", interview_id=interview.id, index=index) + "#saved"


def _event_view(interview_id, action, message: str, already: tuple[str, ...] = ()):
    interview = interview_or_404(interview_id)
    _editable_or_409(interview)
    if interview.status in already:
        return interview  # a second tap on a slow network: the step has been taken already
    try:
        action(interview)
    except flow.FlowError:
        abort(409, _("That is not possible in the interview's current state."))
    db.session.commit()
    if message:
        flash(message, "info")
    return interview


def _back_to_interview(interview: Interview):
    if interview.status in ("in_progress", "paused"):
        return redirect(
            url_for(
                "interviews.section", interview_id=interview.id, index=interview.current_section
            )
        )
    return redirect(url_for("interviews.overview", interview_id=interview.id))


@login_required
def pause(interview_id):
    """Pause the interview."""
    interview = _event_view(
        interview_id,
        lambda iv: flow.pause(iv, current_user),
        _("The interview is paused."),
        already=("paused",),
    )
    return _back_to_interview(interview)


@login_required
def resume(interview_id):
    """Resume after a pause."""
    interview = _event_view(
        interview_id,
        lambda iv: flow.resume(iv, current_user),
        _("Welcome back."),
        already=("in_progress",),
    )
    return _back_to_interview(interview)


@login_required
def check_in(interview_id):
    """Lone-worker safety check-in."""
    interview = _event_view(
        interview_id,
        lambda iv: flow.check_in(iv, current_user),
        _("Checked in. The coordinator can see that you are safe."),
    )
    return _back_to_interview(interview)


@login_required
def distress(interview_id):
    """Distress protocol stage 1: pause and check in; then resume, stop, or go to stage 2."""
    interview = interview_or_404(interview_id)
    if request.method == "POST":
        interview = _event_view(
            interview_id, lambda iv: flow.distress_stage_one(iv, current_user), ""
        )
        return redirect(url_for("interviews.distress", interview_id=interview.id))
    if interview.status not in ("in_progress", "paused") and not offline_copy():
        return redirect(url_for("interviews.overview", interview_id=interview.id))
    return render_template("interviews/distress.html", interview=interview)


def _unwarned_findings(text: str) -> dict | None:
    """What the identifier guard finds in an event's comment the peer has not been shown yet.

    An event is never edited once recorded, so the plain form shows the warning beside the
    comment before keeping it (the tablet warns while typing); sent again as it is, it is kept.
    """
    if request.form.get("identifiers_seen") == "1":
        return None
    return text_findings(text)


@login_required
def distress_two(interview_id):
    """Distress protocol stage 2: stop, and with consent contact the team."""
    interview = interview_or_404(interview_id)
    _editable_or_409(interview)
    if interview.status not in ("in_progress", "paused") and not offline_copy():
        return redirect(url_for("interviews.overview", interview_id=interview.id))
    form = DistressTwoForm()
    found = None
    if form.validate_on_submit():
        comment = (form.comment.data or "").strip()
        # a safety stop is never held back, not even to write around an identifier: it is
        # recorded at once, and the peer is told afterwards (the coordinator sees it flagged)
        flow.distress_stage_two(interview, current_user, form.contact_team.data, comment)
        db.session.commit()
        flash(
            _("The interview is stopped. Take care of the participant, then of yourself."),
            "info",
        )
        if text_findings(comment):
            flash(
                _(
                    "The comment you wrote may hold something that tells who the participant "
                    "is. It is kept as you wrote it; your coordinator sees that it was flagged."
                ),
                "warning",
            )
        return redirect(url_for("interviews.debrief", interview_id=interview.id, follow_up=1))
    elif request.method == "POST":
        found = text_findings(form.comment.data)
    status = 400 if request.method == "POST" and form.errors else 200
    return render_template(
        "interviews/distress_two.html", interview=interview, form=form, **free_text_guard(found)
    ), status


@login_required
def stop(interview_id):
    """Stop the interview early, with a reason."""
    interview = interview_or_404(interview_id)
    _editable_or_409(interview)
    if interview.status not in ("planned", "in_progress", "paused") and not offline_copy():
        return redirect(url_for("interviews.overview", interview_id=interview.id))
    form = StopForm()
    form.reason.choices = stop_reason_choices()
    found = None
    if form.validate_on_submit():
        comment = (form.comment.data or "").strip()
        found = _unwarned_findings(comment)
        if found is None:
            flow.stop(interview, current_user, form.reason.data, comment)
            db.session.commit()
            flash(_("The interview is stopped."), "info")
            return redirect(url_for("interviews.debrief", interview_id=interview.id))
    elif request.method == "POST":
        found = text_findings(form.comment.data)
    status = 400 if request.method == "POST" and form.errors else 200
    return render_template(
        "interviews/stop.html", interview=interview, form=form, **free_text_guard(found)
    ), status


@login_required
def finish(interview_id):
    """The closing: confirm the interview is finished."""
    interview = interview_or_404(interview_id)
    guide = guide_of(interview.guide_version)
    if request.method == "POST":
        if flow.consent_due(interview):
            return redirect(url_for("interviews.consent", interview_id=interview.id))
        _event_view(
            interview_id, lambda iv: flow.complete(iv, current_user), "", already=("completed",)
        )
        flash(_("The interview is complete. Thank you."), "success")
        return redirect(url_for("interviews.debrief", interview_id=interview.id))
    if interview.status not in ("in_progress", "paused") and not offline_copy():
        return redirect(url_for("interviews.overview", interview_id=interview.id))
    return render_template("interviews/finish.html", interview=interview, guide=guide)


@login_required
def debrief(interview_id):
    """The peer's debrief: wellbeing, reflection, a debrief talk, follow-up for the participant."""
    interview = interview_or_404(interview_id)
    if interview.status not in ("completed", "stopped") and not offline_copy():
        return redirect(url_for("interviews.overview", interview_id=interview.id))
    existing = interview.debrief_of(current_user.id)
    form = DebriefForm(obj=existing)
    form.wellbeing.choices = wellbeing_choices()
    if request.method == "GET":
        if existing is not None:
            form.wellbeing.data = str(existing.wellbeing)
        elif request.args.get("follow_up"):
            form.participant_follow_up.data = True
    if form.validate_on_submit():
        _editable_or_409(interview)
        record = existing or Debrief(
            id=str(uuid.uuid4()), interview_id=interview.id, author_id=current_user.id
        )
        record.wellbeing = int(form.wellbeing.data)
        record.reflection = (form.reflection.data or "").strip()
        record.wants_debrief_talk = form.wants_debrief_talk.data
        record.participant_follow_up = form.participant_follow_up.data
        if existing is None:
            db.session.add(record)
        else:
            record.rev += 1
        db.session.commit()
        if record.identifier_kinds:
            # saved, as a note is: the page comes back with the warning beside the reflection
            flash(
                _(
                    "Your debrief is saved. Your reflection may hold something that tells who "
                    "the participant is: write around it."
                ),
                "warning",
            )
            return redirect(url_for("interviews.debrief", interview_id=interview.id))
        flash(_("Thank you. Your debrief is saved."), "success")
        return redirect(url_for("interviews.overview", interview_id=interview.id))
    status = 400 if request.method == "POST" else 200
    if request.method == "POST":
        found = text_findings(form.reflection.data)
    else:
        # worked out when the reflection was written: opened again only when something was found
        flagged = existing is not None and existing.identifier_kinds
        found = text_findings(existing.reflection) if flagged else None
    return render_template(
        "interviews/debrief.html", interview=interview, form=form, **free_text_guard(found)
    ), status


@login_required
def conflicts():
    """Notes edited in two places at once: both versions side by side, to choose or merge."""
    notes = [n for n in _conflicted_notes() if n.conflict]
    return render_template("interviews/conflicts.html", notes=notes)


@login_required
def resolve_conflict(note_id):
    """Resolve a conflict: keep this version, take the other, or save a merged text."""
    note = db.session.get(Note, str(note_id))
    if note is None or note.conflict is None:
        abort(404)
    interview_or_404(note.interview_id)
    _editable_or_409(note.interview)
    choice = request.form.get("choice")
    try:
        base_rev = int(request.form.get("rev", ""))
    except ValueError:
        abort(400)
    data: dict = {"resolve": True}
    if choice == "other":
        for name in ("text", "polarity", "themes", "possible_quote"):
            if name in note.conflict:
                data[name] = note.conflict[name]
    elif choice == "merged":
        merged = (request.form.get("text") or "").replace("\r\n", "\n")
        if not merged.strip() or len(merged) > 20_000:
            flash(_("Write the merged text before saving it."), "warning")
            return redirect(url_for("interviews.conflicts") + f"#note-{note.id}")
        data["text"] = merged
    elif choice != "mine":
        abort(400)
    results = apply_changes(db.session, current_user, [web_change("note", note.id, base_rev, data)])
    db.session.commit()
    if results[0].status == "applied":
        flash(_("The note is saved. Thank you for sorting it out."), "success")
    else:
        flash(_("The note changed again meanwhile. Look at both versions once more."), "warning")
    return redirect(url_for("interviews.conflicts"))


IV = "/<uuid:interview_id>"

bp.add_url_rule("/conflicts", view_func=conflicts)

bp.add_url_rule("/conflicts/<uuid:note_id>", view_func=resolve_conflict, methods=["POST"])

bp.add_url_rule("/", view_func=mine)

bp.add_url_rule(IV, view_func=overview)

bp.add_url_rule(IV + "/capacity", view_func=capacity, methods=["GET", "POST"])

bp.add_url_rule(IV + "/reschedule", view_func=reschedule, methods=["GET", "POST"])

bp.add_url_rule(IV + "/consent", view_func=consent, methods=["GET", "POST"])

bp.add_url_rule(IV + "/section/<int:index>", view_func=section, methods=["GET", "POST"])

bp.add_url_rule(IV + "/pause", view_func=pause, methods=["POST"])

bp.add_url_rule(IV + "/resume", view_func=resume, methods=["POST"])

bp.add_url_rule(IV + "/check-in", view_func=check_in, methods=["POST"])

bp.add_url_rule(IV + "/distress", view_func=distress, methods=["GET", "POST"])

bp.add_url_rule(IV + "/distress/stage-2", view_func=distress_two, methods=["GET", "POST"])

bp.add_url_rule(IV + "/stop", view_func=stop, methods=["GET", "POST"])

bp.add_url_rule(IV + "/finish", view_func=finish, methods=["GET", "POST"])

bp.add_url_rule(IV + "/debrief", view_func=debrief, methods=["GET", "POST"])
