"""The store: what is kept and how (models, the two databases, sealed values, guide content).

Owns the SQLAlchemy models, the engines and their pragmas, sealing at rest (`crypto`,
`sealed`), the identifier guard the note model runs on every text, and the guide, consent and
codebook content read from `guides/`. It imports nothing else of the app: every capability
builds on it.
"""
