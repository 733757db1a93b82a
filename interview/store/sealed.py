"""Research text sealed at rest: model attributes that read and write AES-GCM columns.

`text = sealed("text_enc", "text")` on a model makes `note.text` plain text in Python and a
sealed blob in the store. The associated data is `table.field.primary key`, so a sealed
value copied to another row or column does not open. In SQL the attribute stands for the
blob column, which is enough for `is_not(None)`; the store cannot search sealed text.
"""

import json
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.ext.hybrid import hybrid_property

from interview.store.crypto import open_sealed, research_key, seal

CACHE = "_sealed_plain"


def context(obj: Any, field: str) -> str:
    """Return the associated data of one sealed field of one row."""
    mapper = inspect(type(obj))
    (pk,) = mapper.primary_key
    return f"{mapper.local_table.name}.{field}.{getattr(obj, pk.key)}"


def _row_context(model: type, field: str, key: Any) -> str:
    return f"{model.__table__.name}.{field}.{key}"


def seal_field(
    model: type, field: str, key: Any, value: Any, *, as_json: bool = False, ring=None
) -> bytes:
    """Return the sealed blob of one row's field as the attribute would store it.

    For rows written without making objects of them (a batch of new notes); `key` is the
    row's primary key, `ring` the research key ring when the caller holds it already.
    """
    plain = json.dumps(value, ensure_ascii=False, sort_keys=True) if as_json else value
    return seal(ring or research_key(), plain, _row_context(model, field, key))


def field_opener(model: type, field: str, *, as_json: bool = False, empty: Any = ""):
    """Return `open(key, blob)`: one row's sealed field in plain, as the attribute reads it.

    For many rows read without loading them as objects; the key ring is read once.
    """
    ring = research_key()
    prefix = f"{model.__table__.name}.{field}."

    def open_(key: Any, blob: bytes | None) -> Any:
        if blob is None:
            return None if as_json else empty
        plain = open_sealed(ring, blob, f"{prefix}{key}")
        return json.loads(plain) if as_json else plain

    return open_


def _ensure_key(obj: Any) -> None:
    mapper = inspect(type(obj))
    (pk,) = mapper.primary_key
    if getattr(obj, pk.key) is None:
        default = pk.default
        if default is None or not callable(getattr(default, "arg", None)):
            raise ValueError(f"{mapper.local_table.name}: set the key before sealed fields")
        # the key is part of the sealed value's associated data, so it is fixed now
        setattr(obj, pk.key, default.arg(None) if _takes_context(default.arg) else default.arg())


def _takes_context(fn) -> bool:
    try:
        return fn.__code__.co_argcount > 0
    except AttributeError:
        return False


def sealed(
    column: str, field: str, *, as_json: bool = False, empty: Any = "", on_set=None
) -> hybrid_property:
    """Return an attribute that seals its value into `column` (text, or JSON with as_json).

    `on_set(obj, value)` runs on every write: the one moment the plain value is at hand, for
    what must be known about it without opening it again (see Note.identifier_kinds).
    """

    def getter(self):
        blob = getattr(self, column)
        if blob is None:
            return None if as_json else empty
        cache = self.__dict__.setdefault(CACHE, {})
        known = cache.get(field)
        if known is not None and known[0] is blob:
            return known[1]
        plain = open_sealed(research_key(), blob, context(self, field))
        value = json.loads(plain) if as_json else plain
        cache[field] = (blob, value)
        return value

    def setter(self, value):
        if on_set is not None:
            on_set(self, value)
        if value is None:
            setattr(self, column, None)
            return
        _ensure_key(self)
        plain = json.dumps(value, ensure_ascii=False, sort_keys=True) if as_json else value
        blob = seal(research_key(), plain, context(self, field))
        setattr(self, column, blob)
        self.__dict__.setdefault(CACHE, {})[field] = (blob, value)

    def expression(cls):
        if not as_json:
            # comparing sealed words in SQL can never match (each seal is unique): say so
            raise TypeError(
                f"{cls.__name__}.{field} is sealed: the store cannot search it; filter in Python"
            )
        return getattr(cls, column)

    return hybrid_property(getter, setter, expr=expression)


class SealedInit:
    """Set a new row's other columns (its key above all) before its sealed fields."""

    SEALED: tuple[str, ...] = ()

    def __init__(self, **kwargs):
        later = {name: kwargs.pop(name) for name in self.SEALED if name in kwargs}
        super().__init__(**kwargs)
        for name, value in later.items():
            setattr(self, name, value)
