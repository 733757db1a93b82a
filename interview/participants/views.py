"""The coordinator's work with participants: register, assign, plan, look up identity."""

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from interview.participants.partial import (
    PartialWithdrawalError,
    check_items,
    marked_quotes,
    withdraw_items,
    withdrawable_items,
)
from interview.participants.registry import register
from interview.participants.renewal import RenewalError, overview, require_renewal
from interview.participants.withdrawal import (
    WithdrawalError,
    check_date,
    consent_form_for,
    earliest_date,
    today_in_oslo,
    withdraw,
    withdrawal_record,
)
from interview.store.consent_form import withdrawal_data_choice
from interview.store.consents import participant_consent, renewal_for, required_renewals
from interview.store.database import scrub_sqlite_files
from interview.store.extensions import db
from interview.store.identity import get_identity
from interview.store.models import (
    Case,
    ConsentFormVersion,
    GuideVersion,
    Interview,
    Participant,
    Recording,
    User,
)
from interview.trust import audit
from interview.trust.access import (
    cases_coordinated_by,
    participant_or_404,
    participants_visible_to,
    roles_required,
)
from interview.web.forms import (
    AssignForm,
    ConsentRenewalForm,
    ParticipantForm,
    PlanInterviewForm,
    WithdrawForm,
    WithdrawItemsForm,
    language_choices,
    place_choices,
)
from interview.web.i18n import keeps_form_on_language_switch, oslo_to_utc, ui_lang
from interview.web.labels import label

bp = Blueprint("coordinator", __name__, url_prefix="/participants")
# a study's full size is thousands of participants: the list shows them a page at a time
PAGE_SIZE = 100

COORDINATING = ("coordinator", "admin")


def _peer_choices(case_ids: set[int]) -> list[tuple[int, str]]:
    peers = db.session.scalars(
        select(User)
        .where(User.role == "peer", User.active.is_(True))
        .options(selectinload(User.cases))
        .order_by(User.username)
    )
    return [
        (u.id, u.username + " (" + ", ".join(c.code for c in u.cases) + ")")
        for u in peers
        if u.case_ids & case_ids
    ]


def _valid_interviewers(ids: list[int], case_id: int) -> list[User] | None:
    users = list(db.session.scalars(select(User).where(User.id.in_(ids))))
    if len(users) != len(set(ids)):
        return None
    if any(u.role != "peer" or not u.active or case_id not in u.case_ids for u in users):
        return None
    return users


@roles_required(*COORDINATING)
def participants():
    """List the participants and interviews of the coordinator's cases."""
    cases = cases_coordinated_by(current_user)
    case_code = request.args.get("case")
    stmt = (
        participants_visible_to(current_user)
        .options(
            selectinload(Participant.interviewers),
            selectinload(Participant.interviews),
            selectinload(Participant.case),
        )
        .order_by(Participant.code)
    )
    if case_code:
        stmt = stmt.join(Case, Case.id == Participant.case_id).where(Case.code == case_code)
    total = db.session.scalar(
        select(func.count()).select_from(stmt.options().order_by(None).subquery())
    )
    pages = max(1, -(-total // PAGE_SIZE))
    page = _page_number(request.args.get("page"), pages)
    rows = list(db.session.scalars(stmt.limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).unique())
    return render_template(
        "coordinator/participants.html",
        participants=rows,
        cases=cases,
        case_code=case_code,
        page=page,
        pages=pages,
        total=total,
        first=(page - 1) * PAGE_SIZE + 1,
    )


def _page_number(value: str | None, pages: int) -> int:
    """Return the asked page (1 when not given); a page that is not there is a 404."""
    if value is None:
        return 1
    if not value.isdigit() or not 1 <= int(value) <= pages:
        abort(404)
    return int(value)


def _chosen_case(cases: list[Case], form: ParticipantForm) -> Case | None:
    """The team a participant is registered in: the posted one, the asked one, or the only one."""
    if request.method == "POST":
        return next((c for c in cases if c.id == form.case_id.data), None)
    asked = request.args.get("case")
    if asked:
        return next((c for c in cases if c.code == asked), None)
    return cases[0] if len(cases) == 1 else None


@keeps_form_on_language_switch
@roles_required(*COORDINATING)
def new_participant():
    """Register a participant under a fresh pseudonymous code: the team first, then its peers."""
    cases = cases_coordinated_by(current_user)
    form = ParticipantForm()
    form.case_id.choices = [(c.id, f"{c.code} – {c.name(ui_lang())}") for c in cases]
    form.preferred_language.choices = language_choices()
    case = _chosen_case(cases, form)
    # only the chosen team's peers are offered: a peer of another team would be refused
    form.interviewers.choices = _peer_choices({case.id}) if case else []
    if case is not None and request.method == "GET":
        form.case_id.data = case.id
    if form.validate_on_submit():
        interviewers = _valid_interviewers(form.interviewers.data, form.case_id.data)
        if case is None:
            abort(404)
        if interviewers is None:
            form.interviewers.errors.append(
                _("Choose peer co-researchers who work in this FACT team.")
            )
        else:
            participant = register(
                case,
                form.preferred_language.data,
                interviewers,
                current_user,
                (form.name.data or "").strip() or None,
                (form.phone.data or "").strip() or None,
            )
            audit.record("participant_registered", "participant", participant.id)
            db.session.commit()
            flash(
                _("Participant %(code)s is registered.", code=participant.code),
                "success",
            )
            return redirect(url_for("coordinator.detail", participant_id=participant.id))
    status = 400 if request.method == "POST" else 200
    return render_template("coordinator/new.html", form=form, case=case, cases=cases), status


@roles_required(*COORDINATING)
def detail(participant_id: str):
    """Show a participant: interviewers, interviews, consents; assign and plan."""
    participant = participant_or_404(participant_id)
    assign = AssignForm(prefix="assign")
    assign.interviewers.choices = _peer_choices({participant.case_id})
    if request.method == "GET":
        assign.interviewers.data = [u.id for u in participant.interviewers]
    plan = PlanInterviewForm(prefix="plan")
    plan.place_kind.choices = place_choices()
    plan.language.choices = language_choices()
    if request.method == "GET":
        plan.language.data = participant.preferred_language
    in_force = participant_consent(participant)
    return render_template(
        "coordinator/detail.html",
        participant=participant,
        assign=assign,
        plan=plan,
        in_force=in_force,
        renewal=renewal_for(in_force, required_renewals(db.session)),
        recordings=_recordings_by_interview(participant.id),
    )


def _recordings_by_interview(participant_id: str) -> dict[str, list[Recording]]:
    """A participant's audio recordings under their interviews, in the order they were made."""
    rows = db.session.scalars(
        select(Recording)
        .where(Recording.participant_id == participant_id)
        .order_by(Recording.started_at, Recording.id)
    )
    by_interview: dict[str, list[Recording]] = {}
    for recording in rows:
        by_interview.setdefault(recording.interview_id, []).append(recording)
    return by_interview


@keeps_form_on_language_switch
@roles_required(*COORDINATING)
def assign(participant_id: str):
    """Change who interviews a participant."""
    participant = participant_or_404(participant_id)
    if participant.status == "withdrawn":
        # the page of a withdrawn participant has no interviewer form to show an error on
        abort(409, _("This participant has withdrawn; the interviewers cannot be changed."))
    form = AssignForm(prefix="assign")
    form.interviewers.choices = _peer_choices({participant.case_id})
    if form.validate_on_submit():
        users = _valid_interviewers(form.interviewers.data, participant.case_id)
        if users is not None:
            participant.interviewers = users
            audit.record("interviewers_assigned", "participant", participant.id)
            db.session.commit()
            flash(_("The interviewers are saved."), "success")
            return redirect(url_for("coordinator.detail", participant_id=participant.id))
        form.interviewers.errors.append(_("Choose peer co-researchers who work in this FACT team."))
    plan = PlanInterviewForm(prefix="plan", formdata=None)
    plan.place_kind.choices = place_choices()
    plan.language.choices = language_choices()
    return (
        render_template(
            "coordinator/detail.html",
            participant=participant,
            assign=form,
            plan=plan,
            in_force=participant_consent(participant),
            recordings=_recordings_by_interview(participant.id),
        ),
        400,
    )


@keeps_form_on_language_switch
@roles_required(*COORDINATING)
def plan_interview(participant_id: str):
    """Plan an interview with the newest guide version."""
    participant = participant_or_404(participant_id)
    form = PlanInterviewForm(prefix="plan")
    form.place_kind.choices = place_choices()
    form.language.choices = language_choices()
    if participant.status == "withdrawn":
        # the page of a withdrawn participant has no planning form to show an error on
        abort(409, _("This participant has withdrawn; no new interviews can be planned."))
    if form.validate_on_submit():
        guide = db.session.scalars(
            select(GuideVersion).order_by(GuideVersion.version.desc())
        ).first()
        if guide is None:
            abort(409)
        interview = Interview(
            participant=participant,
            guide_version=guide,
            language=form.language.data,
            place_kind=form.place_kind.data,
            planned_at=oslo_to_utc(form.day.data, form.at.data),
            created_by_id=current_user.id,
        )
        db.session.add(interview)
        db.session.flush()
        audit.record("interview_planned", "interview", interview.id)
        db.session.commit()
        flash(_("The interview is planned."), "success")
        return redirect(url_for("coordinator.detail", participant_id=participant.id))
    assign_form = AssignForm(prefix="assign", formdata=None)
    assign_form.interviewers.choices = _peer_choices({participant.case_id})
    assign_form.interviewers.data = [u.id for u in participant.interviewers]
    return (
        render_template(
            "coordinator/detail.html",
            participant=participant,
            assign=assign_form,
            plan=form,
            in_force=participant_consent(participant),
            recordings=_recordings_by_interview(participant.id),
        ),
        400,
    )


@keeps_form_on_language_switch
@roles_required(*COORDINATING)
def identity(participant_id: str):
    """Show who a code belongs to; every look is audited."""
    participant = participant_or_404(participant_id)
    person = get_identity(participant.id)
    audit.record("identity_viewed", "participant", participant.id)
    db.session.commit()
    return render_template("coordinator/identity.html", participant=participant, person=person)


@keeps_form_on_language_switch
@roles_required(*COORDINATING)
def withdraw_participant(participant_id: str):
    """Record a participant's withdrawal, after a page that says plainly what will happen."""
    participant = participant_or_404(participant_id)
    consent_form = consent_form_for(db.session, participant)
    choice = bool(consent_form and withdrawal_data_choice(consent_form.content))
    form = WithdrawForm()
    problem = None
    status = 200
    if participant.status == "withdrawn":
        problem = WithdrawalError("already").message()
        status = 409 if request.method == "POST" else 200
    elif request.method == "POST":
        valid = form.validate_on_submit()
        if form.withdrawn_on.data is not None:
            try:
                check_date(participant, form.withdrawn_on.data)
            except WithdrawalError as exc:
                form.withdrawn_on.errors = [*form.withdrawn_on.errors, exc.message()]
                valid = False
        if choice and form.keep_data.data not in ("keep", "delete"):
            form.keep_data.errors = [*form.keep_data.errors, WithdrawalError("choice").message()]
            valid = False
        if form.keep_identity.data not in ("keep", "delete"):
            form.keep_identity.errors = [
                *form.keep_identity.errors,
                _("Choose whether to keep or delete the identity key entry."),
            ]
            valid = False
        if valid:
            try:
                summary = withdraw(
                    db.session,
                    participant,
                    withdrawn_on=form.withdrawn_on.data,
                    keep_data=(form.keep_data.data == "keep") if choice else None,
                    keep_identity=form.keep_identity.data == "keep",
                    user=current_user,
                )
            except WithdrawalError as exc:
                db.session.rollback()
                if exc.code in ("future", "too_early"):
                    form.withdrawn_on.errors = [*form.withdrawn_on.errors, exc.message()]
                elif exc.code == "choice":
                    form.keep_data.errors = [*form.keep_data.errors, exc.message()]
                else:
                    problem = exc.message()
                    status = 409
            else:
                audit.record(
                    "participant_withdrawn", "participant", participant.id, **summary.as_detail()
                )
                db.session.commit()
                # on SQLite the deleted rows' old pages stay in the WAL until a checkpoint
                scrub_sqlite_files((None,) if summary.keep_identity else (None, "identity"))
                flash(
                    _("The withdrawal of %(code)s is recorded.", code=participant.code), "success"
                )
                return redirect(url_for("coordinator.detail", participant_id=participant.id))
        if status == 200:
            status = 400
    elif form.withdrawn_on.data is None:
        form.withdrawn_on.data = today_in_oslo()
    return (
        render_template(
            "coordinator/withdraw.html",
            participant=participant,
            form=form,
            choice=choice,
            consent_form=consent_form,
            problem=problem,
            today=today_in_oslo(),
            earliest=earliest_date(participant),
            record=withdrawal_record(participant),
        ),
        status,
    )


@keeps_form_on_language_switch
@roles_required(*COORDINATING)
def withdraw_consent_items(participant_id: str):
    """Record the withdrawal of single consent items, after a page that says what will happen."""
    participant = participant_or_404(participant_id)
    state = participant_consent(participant)
    offered = [k for k in withdrawable_items(state) if state.allows(k)] if state else []
    form = WithdrawItemsForm()
    form.items.choices = [(k, label("consent_item", k)) for k in offered]
    problem = None
    status = 200
    if participant.status == "withdrawn" or state is None:
        # nothing to withdraw from: the page says why instead of showing the form
        refusal = PartialWithdrawalError(
            "withdrawn" if participant.status == "withdrawn" else "no_consent"
        )
        problem = refusal.message()
        status = refusal.status if request.method == "POST" else 200
    elif request.method == "POST":
        valid = form.validate_on_submit()
        try:
            check_items(participant, form.items.data or [])
        except PartialWithdrawalError as exc:
            form.items.errors = [*form.items.errors, exc.message()]
            valid = False
        if valid:
            try:
                summary = withdraw_items(
                    db.session,
                    participant,
                    items=form.items.data,
                    withdrawn_on=form.withdrawn_on.data,
                    user=current_user,
                )
            except PartialWithdrawalError as exc:
                db.session.rollback()
                if exc.code in ("future", "too_early"):
                    form.withdrawn_on.errors = [*form.withdrawn_on.errors, exc.message()]
                else:
                    problem = exc.message()
                    status = exc.status
            else:
                audit.record(
                    "consent_items_withdrawn", "participant", participant.id, **summary.as_detail()
                )
                db.session.commit()
                flash(
                    _(
                        "The withdrawal of part of the consent of %(code)s is recorded.",
                        code=participant.code,
                    ),
                    "success",
                )
                return redirect(url_for("coordinator.detail", participant_id=participant.id))
        if status == 200:
            status = 400
    elif form.withdrawn_on.data is None:
        form.withdrawn_on.data = today_in_oslo()
    return (
        render_template(
            "coordinator/withdraw_items.html",
            participant=participant,
            form=form,
            state=state,
            offered=offered,
            problem=problem,
            marked=marked_quotes(db.session, participant),
            today=today_in_oslo(),
            earliest=earliest_date(participant),
        ),
        status,
    )


@roles_required(*COORDINATING)
def consent_forms():
    """The consent form versions, and who in the coordinator's teams consented on an older one."""
    return _consent_forms_page(ConsentRenewalForm())


def _consent_forms_page(form: ConsentRenewalForm, status: int = 200, problem: str | None = None):
    return (
        render_template(
            "coordinator/consent_forms.html",
            summary=overview(db.session, participants_visible_to(current_user)),
            form=form,
            problem=problem,
        ),
        status,
    )


@roles_required(*COORDINATING)
def ask_renewal(version: int):
    """Mark the newest consent form as needing renewed consent, for the whole study."""
    form_version = db.session.scalars(
        select(ConsentFormVersion).where(ConsentFormVersion.version == version)
    ).first()
    if form_version is None:
        abort(404)
    form = ConsentRenewalForm()
    form.validate_on_submit()  # the CSRF token is checked for every form before the view
    try:
        summary = require_renewal(
            db.session, current_user, form_version, confirmed=bool(form.confirm.data)
        )
    except RenewalError as exc:
        db.session.rollback()
        if exc.code == "confirm":
            form.confirm.errors = [exc.message()]
            return _consent_forms_page(form, 400)
        return _consent_forms_page(form, 409, exc.message())
    db.session.commit()
    flash(
        ngettext(
            "Renewed consent is asked for on version %(v)s. %(num)d participant in the study is "
            "asked again at their next interview.",
            "Renewed consent is asked for on version %(v)s. %(num)d participants in the study are "
            "asked again at their next interview.",
            summary.participants,
            v=summary.version,
        ),
        "success",
    )
    return redirect(url_for("coordinator.consent_forms"))


bp.add_url_rule("/", view_func=participants)
bp.add_url_rule("/consent-forms", view_func=consent_forms)
bp.add_url_rule("/consent-forms/<int:version>/renewal", view_func=ask_renewal, methods=["POST"])
bp.add_url_rule("/new", view_func=new_participant, methods=["GET", "POST"])
bp.add_url_rule("/<uuid:participant_id>", view_func=detail)
bp.add_url_rule("/<uuid:participant_id>/interviewers", view_func=assign, methods=["POST"])
bp.add_url_rule("/<uuid:participant_id>/interviews", view_func=plan_interview, methods=["POST"])
bp.add_url_rule("/<uuid:participant_id>/identity", view_func=identity, methods=["POST"])
bp.add_url_rule(
    "/<uuid:participant_id>/withdraw", view_func=withdraw_participant, methods=["GET", "POST"]
)
bp.add_url_rule(
    "/<uuid:participant_id>/withdraw-items",
    view_func=withdraw_consent_items,
    methods=["GET", "POST"],
)
