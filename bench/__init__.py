"""Hearth benchmark harness: load generator, baseline servers, runner and report.

Run it with ``python -m bench.run`` from the project root; see ``bench/README.md``.
"""
