"""Printed documents: guides, consent forms, interview records and progress reports as PDF.

`render` makes the PDFs with WeasyPrint and caches them; `views` serves them. It may import
field (the interview record), desk (the progress figures), trust, the store and the web
plumbing.
"""
