"""Reliability under faults and load: simulated tablets, the soak run and the crash run.

`python -m tests.soak.soak` and `python -m tests.soak.crash` (or `make soak`, `make crash`)
start the real app under gunicorn and drive it over HTTP; tests/test_soak_fast.py runs small
versions of both in the normal suite.
"""
