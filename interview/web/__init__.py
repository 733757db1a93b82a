"""Web plumbing every capability shares: errors, language, compression, headers, forms, labels.

Also the home page and `/healthz` (`views`). It may import the store; the capabilities'
views import it, and it imports no capability.
"""
