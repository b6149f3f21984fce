"""Top-level pages and the registration of every part's blueprints."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, jsonify, render_template, request
from flask_babel import Babel

from hospiconnect import appctx, metrics
from hospiconnect.web import readiness

bp = Blueprint("home", __name__)


@bp.get("/")
def index() -> str:
    return render_template("index.html")


@bp.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """Whether this process can serve (hospiconnect.web.readiness): 200 when the database answers with a schema
    this code serves (``degraded`` when Redis does not answer: its counters fall back to the database), else
    503 with ``Retry-After``; the reverse proxy sends traffic only to ready instances."""
    result = readiness.check(appctx.runtime())
    status = ("degraded" if result.degraded else "ready") if result.ready else "not_ready"
    response = jsonify({"status": status, "checks": result.checks})
    if not result.ready:
        response.status_code = 503
        response.headers["Retry-After"] = str(readiness.RETRY_AFTER_SECONDS)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/metrics")
def metrics_page() -> Response:
    """Prometheus metrics of this server (every worker), for clients of HOSPICONNECT_METRICS_ALLOWED_NETWORKS
    only: counts of sign-ins and token grants reveal activity, not for anyone who can reach the port."""
    networks = appctx.runtime().settings.metrics_allowed_networks
    if not metrics.client_allowed(appctx.client_ip(), networks):
        response = jsonify({"error": "forbidden",
                            "message": "Les métriques ne sont accessibles que depuis les réseaux autorisés "
                                       "(HOSPICONNECT_METRICS_ALLOWED_NETWORKS)."})
        response.status_code = 403
    else:
        body, content_type = metrics.exposition(request.headers.get("Accept"))
        response = Response(body, content_type=content_type)
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    Babel(app, locale_selector=lambda: "fr")
    app.register_blueprint(bp)
    from hospiconnect.directory.scim import bp as scim_bp
    from hospiconnect.web.security import csrf

    csrf.exempt(scim_bp)
    app.register_blueprint(scim_bp)
    from hospiconnect.directory import views as directory_views
    from hospiconnect.enrollment.verification import verification_of

    # Registered only outside production: the pages have no sign-in yet. The directory cannot import
    # enrollment (layers): the identity page's verification summary is handed to it here.
    directory_views.init_app(app, verification=verification_of)
    _register_identity_provider(app)
    if app.config["SETTINGS"].env in ("demo", "development"):
        # The demo relying parties (/demo/…): never in production, nor in tests that do not ask for them.
        from hospiconnect.devtools import demo_rp

        demo_rp.init_app(app)
    if app.config["SETTINGS"].fcplus_simulator_enabled:
        # The FranceConnect+ simulator (/simulateur-franceconnect/…): outside production, when no real
        # FranceConnect+ is configured.
        from hospiconnect.devtools import fcplus_simulator

        fcplus_simulator.init_app(app)
    if app.config["SETTINGS"].psc_simulator_enabled:
        # The Pro Santé Connect simulator (/simulateur-psc/…): outside production, when no real PSC is
        # configured.
        from hospiconnect.devtools import psc_simulator

        psc_simulator.init_app(app)


def _register_identity_provider(app: Flask) -> None:
    from hospiconnect.idp.interaction_views import bp as interaction_bp
    from hospiconnect.idp.views import bp as protocol_bp
    from hospiconnect.idp.wellknown import bp as wellknown_bp
    from hospiconnect.web.activation import bp as activation_bp
    from hospiconnect.web.enrollment_api import bp as enrollment_api_bp
    from hospiconnect.web.enrollment_desk import bp as desk_bp
    from hospiconnect.web.psc_pages import bp as psc_bp
    from hospiconnect.web.remote_enrollment import bp as remote_bp
    from hospiconnect.web.security import csrf
    from hospiconnect.web.security_pages import emergency_bp, security_bp
    from hospiconnect.web.self_service import bp as mie_bp
    from hospiconnect.web.trajectory_pages import bp as trajectory_bp

    # Protocol endpoints authenticate clients themselves (no browser form, no CSRF token).
    csrf.exempt(protocol_bp)
    csrf.exempt(wellknown_bp)
    # The enrollment API authenticates every call with a bearer token, never with a cookie.
    csrf.exempt(enrollment_api_bp)
    for blueprint in (wellknown_bp, protocol_bp, interaction_bp, mie_bp, desk_bp, activation_bp, enrollment_api_bp):
        app.register_blueprint(blueprint)
    app.register_blueprint(remote_bp)  # remote enrollment: invitation link, FranceConnect+ round trip
    app.register_blueprint(psc_bp)  # Pro Santé Connect: pairing callback (/psc/retour)
    # Emergency access (/bris-de-glace) and the RSSI's pages (/securite): signed-in officers, with CSRF.
    app.register_blueprint(emergency_bp)
    app.register_blueprint(security_bp)
    app.register_blueprint(trajectory_bp)  # the RSSI's trajectory (/securite/trajectoire), same guard
