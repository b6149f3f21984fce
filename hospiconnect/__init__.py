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
    for message in settings.insecure_defaults():
        logger.warning("configuration non sûre : %s", message)
    app.teardown_appcontext(appctx.close_session)
    init_web(app)
    return app
