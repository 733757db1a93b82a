"""Who may do what: login and sessions, the route policy, per-object access, audit, keys, backup.

`views` holds the login and logout routes. The domain modules here may import the store and
the web plumbing; the sync, field, desk, participants and documents capabilities import
them (access checks, audit) — never the other way round, except the route policy, which
names every route of the app and so reads the registered views at start-up.
"""
