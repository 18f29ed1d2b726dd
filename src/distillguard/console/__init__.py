"""Analyst console: a loopback web app over a scan's output (issue 6).

- :mod:`.store`  the embedded DuckDB store built from a scan directory (accounts, clusters,
  per-account activity, sample exchanges, link keys, score contributions) plus the console's
  own state (users, sessions, labels, appeals, audit log).
- :mod:`.auth`   scrypt password hashes, server-side sessions in signed cookies, CSRF tokens.
- :mod:`.app`    the FastAPI application (Jinja2 templates, autoescaped; SVG charts server-side).
- :mod:`.tune`   analyst labels -> refit of the learned layer, before/after metrics.
- :mod:`.cli`    ``console`` and ``tune`` commands, ready to register on the main Typer app.
"""
