"""Development data, apart from the runtime: the demo study and the benchmark's study at scale.

Fictional throughout. Used by `flask seed-demo` / `flask seed-scale`, the tests and `bench/`;
the app itself never imports it outside those commands.
"""
