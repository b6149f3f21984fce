"""Login pages of the OpenID provider (``/connexion/<interaction_id>``).

Placeholder until the real pages exist: it tells the person, in French, that signing in is required. The
pages call the services of hospiconnect.idp.interactions (``get_interaction``, ``record_login``,
``record_second_factor``, ``complete``) and then redirect (303) to ``/authorize/resume/<id>``; every
response must carry :func:`hospiconnect.idp.interactions.content_security_policy` of its interaction.
"""

from __future__ import annotations

from flask import Blueprint, Response, render_template, render_template_string

from hospiconnect import appctx
from hospiconnect.errors import HospiConnectError
from hospiconnect.idp import interactions

bp = Blueprint("idp_interaction_views", __name__)

_INFO_TEMPLATE = """{% extends "base.html" %}
{% block title %}{{ title }}{% endblock %}
{% block content %}
<section aria-labelledby="titre-info">
  <h1 id="titre-info">{{ title }}</h1>
  {% for paragraph in paragraphs %}<p>{{ paragraph }}</p>{% endfor %}
</section>
{% endblock %}"""


def info_page(title: str, *paragraphs: str, status: int = 200) -> Response:
    """Return a simple French page (a title, paragraphs) with ``status``."""
    return Response(render_template_string(_INFO_TEMPLATE, title=title, paragraphs=paragraphs), status=status)


@bp.get("/connexion/<interaction_id>")
def show(interaction_id: str) -> Response:
    """Say that signing in is required (the login form comes with the real pages)."""
    session = appctx.db_session()
    try:
        interaction = interactions.get_interaction(session, interaction_id)
    except HospiConnectError as exc:
        response = Response(render_template("error.html", status=exc.http_status, title="Connexion impossible",
                                            message=exc.message), status=exc.http_status)
        response.headers["Content-Security-Policy"] = interactions.content_security_policy(None)
        response.headers["Cache-Control"] = "no-store"
        return response
    view = interactions.describe(session, interaction)
    response = info_page("Connexion requise", f"Connexion à « {view.client_name} ».",
                         *(view.messages or ("Identifiez-vous pour accéder à l'application.",)))
    response.headers["Content-Security-Policy"] = interactions.content_security_policy(interaction)
    response.headers["Cache-Control"] = "no-store"
    return response
