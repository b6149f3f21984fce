"""Reading a small JSON object from a browser request (WebAuthn ceremonies) without surprises."""

from __future__ import annotations

import json
from typing import Any

from flask import request

# A WebAuthn credential in JSON is a few kilobytes; anything far larger is not one.
MAX_JSON_BYTES = 80 * 1024


def json_object() -> dict[str, Any] | None:
    """Return the request's JSON object, or None when it is too large, not JSON or not an object."""
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        return None
    raw = request.get_data(cache=False)
    if len(raw) > MAX_JSON_BYTES:
        return None
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None
