"""In the field: the peer's interview, on the web and on the tablet.

The interview flow (capacity check, pause, distress protocol, stop, complete), notes, what
the interview's pages show beside their forms, the printable record, the tablet's words and
offline manifest. `views` is the `interviews` blueprint. It may import participants, sync,
trust, the web plumbing and the store.
"""
