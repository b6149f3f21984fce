"""Top-level pages and the registration of every part's blueprints."""

from __future__ import annotations

from flask import Blueprint, Flask, jsonify, render_template
from flask_babel import Babel

bp = Blueprint("home", __name__)


@bp.get("/")
def index() -> str:
    return render_template("index.html")


@bp.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    return jsonify({"status": "ok"})


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=lambda: "fr")
    app.register_blueprint(bp)
    from hospiconnect.directory.scim import bp as scim_bp
    from hospiconnect.web.security import csrf

    csrf.exempt(scim_bp)
    app.register_blueprint(scim_bp)
