"""In the field: the peer's interview, on the web and on the tablet.

The interview flow (capacity check, pause, distress protocol, stop, complete), notes, consent
taken in the field, the printable record, the tablet's pages and offline manifest, and kept
pages. `views` is the `interviews` blueprint. It may import sync, trust, the store and the web
plumbing.
"""
