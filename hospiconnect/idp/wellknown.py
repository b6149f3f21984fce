"""Public documents of the provider: the discovery document and the JWK Set.

Both are readable from any origin (``Access-Control-Allow-Origin: *``) because browser-based relying
parties fetch them; the authorization endpoint, served by another blueprint, sends no CORS header
(SECURITY.md item 10).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from hospiconnect import appctx
from hospiconnect.idp import discovery, keys

bp = Blueprint("idp_wellknown", __name__)

DISCOVERY_MAX_AGE = 3600
# Short: after a rotation relying parties must see the new key soon (retired keys stay published for
# longer than this, see keys.UNPUBLISH_MARGIN).
JWKS_MAX_AGE = 300


@bp.after_request
def _cors(response: Response) -> Response:
    # Public, credential-free documents: any origin may read them (also answers CORS pre-flights).
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Methods"] = "GET, OPTIONS"
    return response


@bp.get("/.well-known/openid-configuration")
def openid_configuration() -> Response:
    """OpenID Connect Discovery 1.0 §4: the provider metadata."""
    response = jsonify(discovery.openid_configuration(appctx.runtime().settings))
    response.headers["Cache-Control"] = f"public, max-age={DISCOVERY_MAX_AGE}"
    return response


@bp.get("/jwks.json")
def jwks() -> Response:
    """RFC 7517 §5: the public keys, including retired keys not yet past their ``unpublish_after``."""
    response = jsonify(keys.public_jwks(appctx.db_session()))
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE}"
    return response
