"""Participants: registration, assignment to peers, the identity key, withdrawal.

`views` is the coordinator's participant pages. It may import sync (a withdrawal refuses what
still waits), trust, the store and the web plumbing.
"""
