"""Flask-WTF forms with translated labels; dynamic note fields are parsed in notes.py."""

from datetime import date

from flask_babel import LazyString
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    IntegerField,
    PasswordField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    Regexp,
    ValidationError,
)

from interview.web.i18n import (
    date_hint,
    day_format,
    day_text,
    language_switch_requested,
    parse_clock,
    parse_day,
    time_hint,
)
from interview.web.labels import FORM_MESSAGES, LABELS


class LocalDateField(StringField):
    """A date written as text in the UI language's order, never the browser's date picker.

    A date input shows the date in the browser's language (12/05/2026 on an English browser
    showing a Norwegian page); this one shows 23.11.2026 on nb and 2026-11-23 on en, and reads
    both on either, with a message in the user's language for anything else.
    """

    def __init__(self, label=None, validators=None, **kwargs):
        kwargs.setdefault("description", LazyString(date_hint))
        kwargs.setdefault("render_kw", {"spellcheck": "false", "size": 10})
        super().__init__(label, validators, **kwargs)

    def _value(self):
        if self.raw_data:
            return self.raw_data[0]
        return day_text(self.data) if self.data else ""

    def process_formdata(self, valuelist):
        """Parse the date; a malformed or far-off date gets a message in the user's language."""
        self.data = None
        if not valuelist or not valuelist[0].strip():
            self.raw_data = []  # blank: InputRequired and Optional see no input
            return
        try:
            self.data = parse_day(valuelist[0])
        except ValueError:
            raise ValueError(
                _(
                    "Write the date as %(format)s, for example %(example)s.",
                    format=day_format(),
                    example=day_text(date(2026, 11, 23)),
                )
            ) from None
        if not 2000 <= self.data.year <= 2100:
            self.data = None
            raise ValueError(_l("Choose a date between the years 2000 and 2100."))


class LocalTimeField(StringField):
    """A 24-hour time written as text (13:30), never the browser's (maybe 12-hour) picker."""

    def __init__(self, label=None, validators=None, **kwargs):
        kwargs.setdefault("description", LazyString(time_hint))
        kwargs.setdefault("render_kw", {"spellcheck": "false", "size": 5})
        super().__init__(label, validators, **kwargs)

    def _value(self):
        if self.raw_data:
            return self.raw_data[0]
        return self.data.strftime("%H:%M") if self.data else ""

    def process_formdata(self, valuelist):
        """Parse the time; a malformed one gets a message in the user's language."""
        self.data = None
        if not valuelist or not valuelist[0].strip():
            self.raw_data = []
            return
        try:
            self.data = parse_clock(valuelist[0])
        except ValueError:
            raise ValueError(_l("Write a time like 13:30.")) from None


class Form(FlaskForm):
    """A form that is never valid when its page is only asked again in another language."""

    def validate_on_submit(self, extra_validators=None):
        """Validate a submitted form (errors in the UI language); False for a language switch."""
        valid = super().validate_on_submit(extra_validators)
        return valid and not language_switch_requested()


class LoginForm(Form):
    """Username and password."""

    username = StringField(_l("Username"), validators=[DataRequired(), Length(max=80)])
    password = PasswordField(_l("Password"), validators=[DataRequired(), Length(max=200)])


def _check_interviewers(field) -> None:
    if not 1 <= len(field.data or []) <= 2:
        raise ValidationError(_l("Choose one or two interviewers."))
    offered = {value for value, _label in field.choices or []}
    if not set(field.data) <= offered:
        raise ValidationError(_l("Choose peer co-researchers who work in this FACT team."))


def language_choices():
    """Return the interview language choices with translated labels."""
    return list(LABELS["language"].items())


class ParticipantForm(Form):
    """Register a participant; name and phone go only to the identity key store."""

    case_id = SelectField(_l("FACT team"), coerce=int, validators=[InputRequired()])
    preferred_language = SelectField(_l("Interview language"), validators=[InputRequired()])
    # the choices are checked in validate_interviewers, with a message in the user's language
    # (WTForms' own message for a multiple choice has no Bokmål translation)
    interviewers = SelectMultipleField(
        _l("Interviewers (one or two)"), coerce=int, validate_choice=False
    )
    name = StringField(
        _l("Name (optional, kept in the identity key store only)"),
        validators=[Optional(), Length(max=200)],
    )
    phone = StringField(
        _l("Phone (optional, kept in the identity key store only)"),
        validators=[
            Optional(),
            Length(max=40),
            Regexp(r"^[0-9 +()-]{5,40}$", message=_l("Write the phone number with digits only.")),
        ],
    )

    def validate_interviewers(self, field):
        """Ask for one or two interviewers from the choices."""
        _check_interviewers(field)


class AssignForm(Form):
    """Change who interviews a participant."""

    interviewers = SelectMultipleField(
        _l("Interviewers (one or two)"), coerce=int, validate_choice=False
    )

    def validate_interviewers(self, field):
        """Ask for one or two interviewers from the choices."""
        _check_interviewers(field)


def place_choices():
    """Return the place kinds with translated labels."""
    return list(LABELS["place"].items())


class PlanInterviewForm(Form):
    """Plan an interview: date, time, place and language."""

    day = LocalDateField(_l("Date"), validators=[InputRequired(message=_l("Choose a date."))])
    at = LocalTimeField(_l("Time"), validators=[InputRequired(message=_l("Choose a time."))])
    place_kind = SelectField(_l("Place"), validators=[InputRequired()])
    language = SelectField(_l("Interview language"), validators=[InputRequired()])


class CapacityForm(Form):
    """The capacity check before consent."""

    understands = BooleanField(_l("The participant understands what the study is about"))
    can_explain = BooleanField(
        _l("The participant can say in their own words what taking part means")
    )
    not_in_crisis = BooleanField(_l("The participant is not acutely intoxicated or in crisis"))
    minutes = IntegerField(
        _l("How long do you expect the visit to take (minutes)?"),
        default=75,
        validators=[
            InputRequired(message=_l("Write the expected length in minutes.")),
            NumberRange(min=15, max=240, message=_l("Choose between 15 and 240 minutes.")),
        ],
    )


def reschedule_reason_choices():
    """Return reasons for rescheduling with translated labels."""
    return [
        ("capacity", _l("Not the right day for the participant")),
        ("participant_asked", _l("The participant asked to move it")),
        ("practical", _l("Practical reasons")),
    ]


class RescheduleForm(Form):
    """Move a planned interview to another day."""

    reason = SelectField(_l("Why"), validators=[InputRequired()])
    day = LocalDateField(_l("New date (if agreed)"), validators=[Optional()])
    at = LocalTimeField(_l("New time"), validators=[Optional()])


class ConsentForm(Form):
    """Consent on the tablet; items are added per form version in the view."""

    # chosen first: the form then shows only what that way of consenting needs
    method = RadioField(
        _l("How does the participant give consent?"),
        choices=[
            SelectChoice("tablet", _l("Signs here on the tablet")),
            SelectChoice("paper", _l("Has signed a paper form")),
        ],
        validators=[InputRequired(message=FORM_MESSAGES["need_method"])],
    )
    printed_name = StringField(
        _l("Participant's name in block letters (optional)"),
        validators=[Optional(), Length(max=200)],
    )
    signature = StringField(validators=[Optional(), Length(max=700_000)])
    paper_form_number = StringField(
        _l("Paper form number"), validators=[Optional(), Length(max=40)]
    )


def stop_reason_choices():
    """Return reasons for stopping with translated labels; no reason is chosen for the peer."""
    return [
        ("", _l("Choose a reason")),
        ("participant_wish", _l("The participant wanted to stop")),
        ("distress", _l("Distress")),
        ("practical", _l("Practical reasons")),
        ("other", _l("Other")),
    ]


def one_kind_of_line_break(value: str | None) -> str | None:
    """Return text with CR LF and CR as LF, as notes and sync keep it."""
    return value.replace("\r\n", "\n").replace("\r", "\n") if isinstance(value, str) else value


class StopForm(Form):
    """Stop an interview, with a reason."""

    reason = SelectField(
        _l("Why is the interview stopping?"),
        validators=[DataRequired(message=_l("Choose a reason."))],
    )
    comment = TextAreaField(
        _l("Anything the team should know (no names)"),
        validators=[Optional(), Length(max=2000)],
        filters=[one_kind_of_line_break],
    )


class DistressTwoForm(Form):
    """Distress protocol stage 2: stop, and with consent contact the team."""

    contact_team = BooleanField(_l("The participant agrees that we contact their FACT team now"))
    comment = TextAreaField(
        _l("What happened, briefly (no names)"),
        validators=[Optional(), Length(max=2000)],
        filters=[one_kind_of_line_break],
    )


def wellbeing_choices():
    """Return the wellbeing scale with translated labels."""
    return [
        ("1", _l("Very hard")),
        ("2", _l("Hard")),
        ("3", _l("Okay")),
        ("4", _l("Good")),
        ("5", _l("Very good")),
    ]


class DebriefForm(Form):
    """The peer's debrief after the interview."""

    wellbeing = RadioField(
        _l("How are you after this interview?"),
        validators=[InputRequired(message=_l("Choose how you are."))],
    )
    reflection = TextAreaField(
        _l("Your reflections: what went well, what was hard?"),
        validators=[Optional(), Length(max=20000)],
        filters=[one_kind_of_line_break],
    )
    wants_debrief_talk = BooleanField(_l("I would like a debrief talk"))
    participant_follow_up = BooleanField(_l("The participant needs follow-up from the team"))


class WithdrawForm(Form):
    """Record a participant's withdrawal: the date, and what happens to data and identity."""

    withdrawn_on = LocalDateField(
        _l("Date of withdrawal"), validators=[InputRequired(message=_l("Choose a date."))]
    )
    # the choices are checked by the view: the data choice exists only on some consent forms
    keep_data = RadioField(
        _l("What did the participant choose for the data already collected?"),
        choices=[
            SelectChoice("delete", _l("Delete it")),
            SelectChoice("keep", _l("Keep what has already been analysed, for anonymous use only")),
        ],
        validate_choice=False,
    )
    keep_identity = RadioField(
        _l("The identity key entry (name, contact, signed consent)"),
        choices=[
            SelectChoice("delete", _l("Delete it now")),
            SelectChoice("keep", _l("Keep it until the study ends")),
        ],
        validate_choice=False,
    )


class ConsentRenewalForm(Form):
    """Ask every participant who consented on an older form to consent on the newest."""

    confirm = BooleanField(
        _l(
            "I confirm: the study has decided (with REK where needed) that this change needs "
            "renewed consent, and every participant who consented on an older form is to be "
            "asked again before their next interview."
        )
    )


class WithdrawItemsForm(Form):
    """Record the withdrawal of single consent items (a partial withdrawal)."""

    # the choices are the items in force, set by the view; it checks what is sent itself
    items = SelectMultipleField(
        _l("Which consent items does the participant withdraw?"), validate_choice=False
    )
    withdrawn_on = LocalDateField(
        _l("Date of withdrawal"), validators=[InputRequired(message=_l("Choose a date."))]
    )
