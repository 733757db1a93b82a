"""What the tablet's scripts need from the server: translated strings and an interview's state."""

from datetime import date, datetime
from pathlib import Path
from urllib.parse import quote

from flask import Flask, current_app, request, url_for
from flask_babel import gettext as _
from jinja2.utils import htmlsafe_json_dumps
from markupsafe import Markup
from sqlalchemy import func, select

from interview.field import flow
from interview.field.notes import no_quotes_message
from interview.store.consents import participant_consent
from interview.store.content import guide_of
from interview.store.extensions import db
from interview.store.models import Interview, InterviewEvent
from interview.sync.envelope import NO_QUOTES_REASON, OLD_FORM_REASON
from interview.web.i18n import day_format, day_text, ui_lang
from interview.web.labels import FORM_MESSAGES, LABELS


def tablet_strings() -> dict[str, str | dict]:
    """Return the words the tablet's scripts show, in the UI language."""
    return {
        "saved_local": _("Saved on this tablet"),
        "waiting": _("Saved on this tablet – %(n)s changes waiting"),
        "waiting_one": _("Saved on this tablet – 1 change waiting"),
        "all_saved": _("All saved to the case store"),
        "offline": _("No network. Saved on this tablet – %(n)s changes waiting"),
        "offline_one": _("No network. Saved on this tablet – 1 change waiting"),
        "login": _("Log in again to send %(n)s changes. They are kept on this tablet."),
        "login_one": _("Log in again to send 1 change. It is kept on this tablet."),
        "logout_waiting_one": _(
            "1 change is not yet in the case store. If you log out now it stays on this "
            "tablet and is sent when you log in again. Log out?"
        ),
        "conflict": _("A note has two versions: look at it"),
        "storage_full": _(
            "The tablet's storage is full: this change is not saved on the tablet. "
            "Keep the page open and free some space, or connect to the network."
        ),
        "storage_error": _("The tablet could not save this change: %(error)s"),
        "server_error": _("The case store did not answer. Your changes are kept on this tablet."),
        "rejected": _("%(n)s changes were refused by the case store: %(reason)s"),
        "rejected_one": _("1 change was refused by the case store: %(reason)s"),
        "logout_waiting": _(
            "%(n)s changes are not yet in the case store. If you log out now they stay on "
            "this tablet and are sent when you log in again. Log out?"
        ),
        "logout_audio_waiting": _(
            "%(n)s minutes of recording are not yet in the case store. If you log out now they "
            "stay on this tablet, locked, and are sent when you log in again. Log out?"
        ),
        "logout_audio_waiting_one": _(
            "1 minute of recording is not yet in the case store. If you log out now it stays on "
            "this tablet, locked, and is sent when you log in again. Log out?"
        ),
        "logout_audio_too": _("%(n)s minutes of recording wait too, locked, in the same way."),
        "logout_audio_too_one": _("1 minute of recording waits too, locked, in the same way."),
        "prepare_done": _("Ready offline: %(n)s interviews."),
        "prepare_done_one": _("Ready offline: 1 interview."),
        "offline_none": _("No network. Everything you wrote is saved on this tablet."),
        "unreachable": _(
            "The case store is not answering. Saved on this tablet – %(n)s changes waiting"
        ),
        "unreachable_one": _(
            "The case store is not answering. Saved on this tablet – 1 change waiting"
        ),
        "unreachable_none": _(
            "The case store is not answering. Everything you wrote is saved on this tablet."
        ),
        "login_none": _("You are logged out. Log in again to go on."),
        "others_waiting": _(
            "Another person's work (%(n)s changes) is also waiting on this tablet; it is sent "
            "when they log in."
        ),
        "others_waiting_one": _(
            "Another person's work (1 change) is also waiting on this tablet; it is sent when "
            "they log in."
        ),
        "new_note": _("New note"),
        "installed_yes": _("Yes"),
        "installed_no": _("No. Add it to the Home Screen so the work is kept safe (see below)."),
        "persisted_yes": _("Yes: the browser will not clear it by itself."),
        "persisted_no": _(
            "Not promised: the browser may clear it when space runs low. Sync often, and open "
            "the app from the Home Screen."
        ),
        "persisted_unknown": _("This browser does not say."),
        "usage": _("%(used)s of %(quota)s available"),
        "usage_unknown": _("This browser does not say."),
        "rescue_none": _("Nothing is waiting on this tablet: all your work is sent."),
        "rescue_no_key": _(
            "The copy cannot be made yet: this tablet needs to reach the case store once after "
            "you log in."
        ),
        "rescue_done": _(
            "A locked copy of %(n)s changes is saved as %(file)s. Give the file to your "
            "coordinator."
        ),
        "rescue_done_one": _(
            "A locked copy of 1 change is saved as %(file)s. Give the file to your coordinator."
        ),
        "rescue_failed": _("The copy could not be made: %(error)s"),
        "need_method": _("Choose how the participant gives consent."),
        "no_study_key": _(
            "This tablet does not have the study's key yet, so it cannot keep a signature "
            "safely. Connect to the network once, or use a paper form."
        ),
        "checked_in_at": _("Checked in at %(time)s"),
        "checked_in_waiting": _("Checked in at %(time)s – saved on this tablet, not sent yet"),
        "checked_in_sent": _("Checked in at %(time)s. The coordinator can see that you are safe."),
        "checked_in_kept": _(
            "Checked in at %(time)s. It is saved on this tablet, and the coordinator sees it "
            "as soon as there is a network."
        ),
        "consent_sent": _("Consent is recorded. You can begin the interview."),
        "consent_kept": _(
            "Consent is saved on this tablet and is sent to the case store as soon as there is "
            "a network. You can begin the interview."
        ),
        "finished_sent": _("The interview is complete. Thank you."),
        "finished_kept": _(
            "The interview is complete. Thank you. It is saved on this tablet and sent to the "
            "case store as soon as there is a network."
        ),
        "debrief_sent": _("Thank you. Your debrief is saved."),
        "debrief_kept": _(
            "Thank you. Your debrief is saved on this tablet and sent to the case store as "
            "soon as there is a network."
        ),
        "stopped_sent": _("The interview is stopped."),
        "stopped_kept": _(
            "The interview is stopped. This is saved on this tablet and sent to the case store "
            "as soon as there is a network."
        ),
        "distress_stopped": _(
            "The interview is stopped. Take care of the participant, then of yourself."
        ),
        "moved_sent": _("The interview is moved. Thank you for taking care."),
        "moved_kept": _(
            "The interview is moved. Thank you for taking care. This is saved on this tablet "
            "and sent to the case store as soon as there is a network."
        ),
        "prepare_failed": _("Could not prepare for offline use. Try again with a network."),
        "preparing": _("Getting the interviews ready for offline use…"),
        "persist_denied": _(
            "The browser may clear this tablet's storage when space runs low. "
            "Sync often, or add the app to the home screen."
        ),
        "ready_offline": _("Ready offline"),
        "not_offline": _("Not ready offline"),
        "minutes_range": _("Give a number of minutes between 15 and 240."),
        "need_reason": _("Choose a reason."),
        "need_both": _("Give both a date and a time, or neither."),
        "bad_date": _(
            "Write the date as %(format)s, for example %(example)s.",
            format=day_format(),
            example=day_text(date(2026, 11, 23)),
        ),
        "bad_time": _("Write a time like 13:30."),
        "need_wellbeing": _("Choose how you are doing."),
        "too_long": _(
            "This note is too long (at most %(n)d characters). Split it into two notes.",
            n=20_000,
        ),
        "settle_online": _(
            "Choosing between two versions needs a network. Both versions are kept until then."
        ),
        "note": _("Note"),
        "two_versions": _("Two versions"),
        "two_versions_text": _(
            "another version of this note was saved at the same time. It is shown here; "
            "copy what you need into the note."
        ),
        "choose_version": _("Choose a version or write them together"),
        "withdrawn_removed": _(
            "This participant has withdrawn from the study. Their interview has been removed "
            "from this tablet."
        ),
        "status": {code: str(label) for code, label in LABELS["interview"].items()},
        # refusals the peer reads in their own words, by the reason the case store gives
        "reasons": {
            NO_QUOTES_REASON: no_quotes_message(),
            OLD_FORM_REASON: _(
                "This consent was given on an older consent form than the study now asks for. "
                "Open the interview again while online: the consent page shows the new form."
            ),
        },
        "old_consent_form": _(
            "This page shows an older consent form than the study now asks for, so the consent "
            "cannot be recorded on it. Open the interview again while online: the consent page "
            "then shows the new form."
        ),
        # audio recordings (docs/recordings.md): the status line on every page
        "audio_waiting": _("%(n)s minutes of recording wait to be sent."),
        "audio_waiting_one": _("1 minute of recording waits to be sent."),
        "recording_store_full": _(
            "The case store has no room for more recordings. They stay on this tablet: tell "
            "your coordinator."
        ),
        # …and the record control on the guide's pages
        "record": _("Record the conversation"),
        "recording_explain": _(
            "The participant has said yes to an audio recording. Tell them that it starts now, "
            "and that they can ask you to stop it at any time: one tap stops it."
            "\n\n"
            "The sound is locked the moment it is recorded. Nobody can listen to it on this "
            "tablet, not even you: only the coordinator of your team, once it has reached the "
            "case store. The tablet now asks to use the microphone: say yes."
        ),
        "recording_begin": _("Start recording"),
        "recording_not_now": _("Not now"),
        "recording_on": _("Recording now"),
        "recording_paused": _("Recording paused"),
        "recording_stop": _("Stop recording"),
        "recording_participant_stop": _("The participant asks to stop recording"),
        "recording_participant_stopped": _(
            "The recording is stopped, as the participant asked. What was recorded until now "
            "is kept."
        ),
        "recording_cannot": _(
            "Nothing is recorded: the tablet may not use a microphone here. Go on with notes, "
            "or allow the microphone in the browser's settings and try again."
        ),
        "no_study_key_recording": _(
            "This tablet does not have the study's key yet, so it cannot lock a recording. "
            "Connect to the network once, then try again."
        ),
        "recording_full": _(
            "The tablet's storage is full, so the recording has stopped. What was recorded "
            "until now is kept."
        ),
        "recording_consent_gone": _(
            "The participant no longer agrees to an audio recording. The recording is stopped "
            "and removed from this tablet."
        ),
        **{key: str(message) for key, message in FORM_MESSAGES.items()},
    }


# words only one page's scripts show: other pages leave them out (every page carries the
# rest, and a first visit counts every byte)
PAGE_WORDS = {
    # My interviews: preparing for offline, keeping the work, the rescue copy
    "keeping": {
        "installed_no",
        "installed_yes",
        "not_offline",
        "persist_denied",
        "persisted_no",
        "persisted_unknown",
        "persisted_yes",
        "prepare_done",
        "prepare_done_one",
        "prepare_failed",
        "preparing",
        "ready_offline",
        "rescue_done",
        "rescue_done_one",
        "rescue_failed",
        "rescue_no_key",
        "rescue_none",
        "usage",
        "usage_unknown",
    },
    # the consent page
    "consent": {
        "answer_every_item",
        "need_method",
        "need_paper_number",
        "need_participate",
        "need_signature",
        "no_study_key",
        "old_consent_form",
    },
    # the guide's pages: the record control (recording.js)
    "recording": {
        "no_study_key_recording",
        "record",
        "recording_begin",
        "recording_cannot",
        "recording_consent_gone",
        "recording_explain",
        "recording_full",
        "recording_not_now",
        "recording_on",
        "recording_participant_stop",
        "recording_participant_stopped",
        "recording_paused",
        "recording_stop",
    },
}
_KEPT: dict[tuple[str, tuple[str, ...]], Markup] = {}


def tablet_strings_json(*pages: str) -> Markup:
    """Return `tablet_strings()` as JSON for a page, with the words of the named `pages`.

    Built once per language and set of words, per process.
    """
    lang = ui_lang()
    kept = _KEPT.get((lang, pages))
    if kept is None:
        # every page carries these words: translating them on each request cost more than
        # the rest of a small page
        left_out = set().union(*(v for k, v in PAGE_WORDS.items() if k not in pages))
        words = {k: v for k, v in tablet_strings().items() if k not in left_out}
        kept = _KEPT[(lang, pages)] = Markup(
            htmlsafe_json_dumps(words, dumps=current_app.json.dumps)
        )
    return kept


_CHROME: dict[tuple[str, str], dict] = {}


def chrome() -> dict:
    """Return the words and links of every page's frame, built once per language and process."""
    key = (ui_lang(), request.script_root)
    kept = _CHROME.get(key)
    if kept is None:
        # every page shows these: translating and building them on each request was a
        # good part of a small page's time
        kept = _CHROME[key] = {
            "app": _("FACT Interview Companion"),
            "short_name": _("FACT interviews"),
            "skip": _("Skip to content"),
            "menu": _("Main menu"),
            "participants": _("Participants"),
            "progress": _("Progress"),
            "alerts": _("Alerts"),
            "themes": _("Themes"),
            "exports": _("Exports"),
            "audit": _("Audit log"),
            "my_interviews": _("My interviews"),
            "interviews": _("Interviews"),
            "guides": _("Guides"),
            "log_out": _("Log out"),
            "sync_now": _("Sync now"),
            "url": {
                name: url_for(endpoint)
                for name, endpoint in (
                    ("home", "main.home"),
                    ("participants", "coordinator.participants"),
                    ("progress", "desk.overview"),
                    ("alerts", "alerts.index"),
                    ("themes", "codebook.matrix"),
                    ("exports", "exports.index"),
                    ("audit", "audit.index"),
                    ("interviews", "interviews.mine"),
                    ("guides", "documents.index"),
                    ("logout", "auth.logout"),
                )
            }
            | {
                "css": url_for("static", filename="css/app.css"),
                "desk_css": url_for("static", filename="css/desk.css"),
                # in the page itself: a first visit makes one request fewer (the icon is tiny)
                "icon": _icon_data_url(),
                "touch_icon": url_for("static", filename="icons/icon-180.png"),
                "manifest": url_for("main.manifest"),
                "offline_js": url_for("static", filename="js/offline.js"),
            },
        }
    return kept


def _icon_data_url() -> str:
    """Return the app's icon as a data: address for the page's <link rel=icon>."""
    svg = (Path(current_app.static_folder) / "icons" / "icon.svg").read_text(encoding="utf-8")
    return "data:image/svg+xml," + quote(svg.strip(), safe=" =:/")


def last_check_in(interview: Interview) -> datetime | None:
    """When the interview's last lone-worker check-in was recorded (naive UTC), if ever."""
    return db.session.scalar(
        select(func.max(InterviewEvent.recorded_at)).where(
            InterviewEvent.interview_id == interview.id, InterviewEvent.kind == "check_in"
        )
    )


def consent_context(interview: Interview) -> dict:
    """The interview's consent as the page tells the tablet: one in force, and renewal due.

    `renewal` is the form version the participant is to consent on again before this
    interview goes on (None: none due); the tablet then shows the consent page first.
    """
    due = flow.renewal_of(interview)
    state = participant_consent(interview.participant)
    return {
        "in_force": state is not None and state.consent is not None,
        "renewal": due.version if due else None,
        # the record control is offered only where the consent in force says yes to audio
        "audio": state is not None and state.allows("audio"),
    }


def guide_section_count(interview: Interview) -> int:
    """How many sections the interview's guide has."""
    return len(guide_of(interview.guide_version).sections)


def init_app(app: Flask) -> None:
    """Make the helpers available to templates."""
    app.jinja_env.globals.update(
        tablet_strings_json=tablet_strings_json,
        chrome=chrome,
        consent_context=consent_context,
        last_check_in=last_check_in,
        guide_section_count=guide_section_count,
    )
