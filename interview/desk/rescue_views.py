"""The desk's rescue page: a coordinator imports a tablet's rescue copy (a thin view on rescue)."""

from flask import Blueprint, current_app, render_template
from flask_babel import format_decimal
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired

from interview.store.extensions import db
from interview.sync import rescue
from interview.trust.access import roles_required
from interview.trust.study_key import StudyKeyError
from interview.web.errors import accepts_upload

bp = Blueprint("rescue", __name__, url_prefix="/desk/rescue")

COORDINATING = ("coordinator", "admin")


class RescueForm(FlaskForm):
    """One rescue file from a tablet."""

    file = FileField(
        _l("Rescue file"),
        validators=[FileRequired(message=_l("Choose the rescue file the tablet saved."))],
    )


@accepts_upload(rescue.MAX_FILE_BYTES)
@roles_required(*COORDINATING)
def index():
    """Show the upload form; import a rescue file and show what became of its changes."""
    form = RescueForm()
    report = error = None
    status = 200
    if form.is_submitted():
        if not form.validate():
            status = 400
        else:
            try:
                raw = form.file.data.read(rescue.MAX_FILE_BYTES + 1)
                report = rescue.import_file(
                    db.session, current_user._get_current_object(), raw, current_app.secret_key
                )
            except rescue.RescueRefused as refused:
                db.session.rollback()
                error, status = refused.message, refused.status
            except StudyKeyError:
                db.session.rollback()
                current_app.logger.error("the study key file is missing or unusable")
                error = _l("The study key is not available just now: no rescue file can be opened.")
                status = 503
    return render_template(
        "desk/rescue.html",
        form=form,
        report=report,
        error=error,
        statuses=rescue.STATUSES,
        max_mb=rescue.MAX_FILE_BYTES // (1024 * 1024),
        max_changes=format_decimal(rescue.MAX_RESCUE_CHANGES),
    ), status


bp.add_url_rule("/", view_func=index, methods=["GET", "POST"])
