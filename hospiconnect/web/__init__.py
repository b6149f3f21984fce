"""The web layer: French pages, error handling and security headers. Wires every part's views."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from hospiconnect.web import errors, security, views

    security.init_app(app)
    errors.init_app(app)
    views.init_app(app)
