"""The audit log: who did what and when, never content or identity data."""

from flask_login import current_user

from interview.store.extensions import db
from interview.store.models import AuditEvent


def record(action: str, obj_type: str | None = None, obj_id=None, user_id=None, **detail) -> None:
    """Add an audit event to the current transaction (the caller commits)."""
    if user_id is None and current_user and current_user.is_authenticated:
        user_id = current_user.id
    db.session.add(
        AuditEvent(
            user_id=user_id,
            action=action,
            object_type=obj_type,
            object_id=None if obj_id is None else str(obj_id),
            detail=detail,
        )
    )
