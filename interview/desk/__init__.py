"""The coordinator's desk: progress, alerts, the codebook and theme matrix, exports, rescue,
the audit log.

`views` holds the desk, alerts, codebook, export, rescue-import and audit-log routes. It may
import sync, field, trust, the store and the web plumbing. `audit_log` reads the audit log
for a coordinator's teams (the rule is in its docstring).
"""
