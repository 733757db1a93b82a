"""The coordinator's desk: progress, alerts, the codebook and theme matrix, exports, rescue.

`views` holds the desk, alerts, codebook, export and rescue-import routes. It may import
sync, field, trust, the store and the web plumbing.
"""
