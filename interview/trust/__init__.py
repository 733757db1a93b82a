"""Who may do what: login and sessions, the route policy, per-object access, audit, keys, backup.

`views` holds the login and logout routes. The domain modules here may import the web
plumbing and the store; sync, field, participants, desk and documents import them (access
checks, audit), never the other way round (`.importlinter`).
"""
