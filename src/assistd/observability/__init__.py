"""Watching assistd: request ids and log context, logs, Prometheus metrics, readiness, traces.

Everything an operator sees is defined here; the rest of the code calls a few small functions
(``runs.py`` for the run engine, ``http.py`` as an ASGI layer) so the instrumentation is one seam.
"""
