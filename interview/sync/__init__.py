"""Sync: the tablet's API and the rules a change meets on its way into the store.

The envelope and its limits, the merge rules, the appliers per entity, batching, changes
waiting for their record, the update log and `updates since cursor`, tablet stores (devices)
and rescue copies (docs/sync.md). `views` is the `/api/v1` blueprint. It may import the
store, trust and the web plumbing; the field, desk and participants capabilities import its
domain modules (forms send their changes through the same rules).
"""
