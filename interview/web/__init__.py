"""Web plumbing every capability shares: errors, language, compression, headers, forms, labels.

Also the home page, `/healthz` and the service worker (`views`). It may import the store
only; every capability builds on it.
"""
