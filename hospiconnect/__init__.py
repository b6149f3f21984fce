"""HospiConnect: identity directory, MFA and OpenID Connect gateway for health establishments."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask

from hospiconnect.settings import Settings

__version__ = "0.1.0"


def create_app(config: Settings | dict[str, Any] | None = None) -> Flask:
    """Build the Flask application. ``config`` is a :class:`Settings` or overrides of the environment."""
    from hospiconnect import appctx
    from hospiconnect.runtime import Runtime
    from hospiconnect.web import init_app as init_web

    if isinstance(config, Settings):
        settings = config
    else:
        settings = Settings.from_env(**(config or {}))
    app = Flask(__name__, template_folder="web/templates", static_folder="web/static",
                instance_path=str(settings.instance_path))
    runtime = Runtime(settings)
    app.extensions[appctx.EXTENSION] = runtime
    from hospiconnect import policies_runtime

    # Validated at start-up: an invalid policy file stops the start with its errors (line by line). Then the
    # file is watched: a valid new version applies without restart, an invalid one is refused (journaled).
    policies_runtime.install(app, settings.policy_file, settings.policy_check_seconds)
    from hospiconnect.idp import psc_delegation

    # Likewise the amr mapping of the delegation by Pro Santé Connect: an invalid file stops the start.
    psc_delegation.load_amr_mapping(settings.psc_delegation_amr_file)
    app.config.update(
        SETTINGS=settings,
        SECRET_KEY=runtime.keys.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production,
        SESSION_COOKIE_NAME="__Host-session" if settings.is_production else "hc_session",
        MAX_CONTENT_LENGTH=20 * 1024 * 1024,
        JSON_SORT_KEYS=False,
    )
    logger = logging.getLogger("hospiconnect")
    level = logging.getLevelName((settings.log_level or "INFO").upper())
    if isinstance(level, int):  # HOSPICONNECT_LOG_LEVEL: DEBUG, INFO, WARNING, ERROR
        logger.setLevel(level)
    else:
        logger.warning("HOSPICONNECT_LOG_LEVEL inconnu (%r) : niveau INFO", settings.log_level[:20])
        logger.setLevel(logging.INFO)
    for message in settings.insecure_defaults():
        logger.warning("configuration non sûre : %s", message)
    app.teardown_appcontext(appctx.close_session)
    init_web(app)
    from hospiconnect import metrics

    metrics.instrument(app)
    if settings.trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # Behind reverse proxies, the client's address, scheme and host are the ones they forwarded, believed
        # for as many hops as configured and no more: a client's own X-Forwarded-For is never taken as its
        # address (per-address throttling and the journal's addresses depend on it).
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    return app
