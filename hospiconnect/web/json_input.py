"""Reading a small JSON object from a request (WebAuthn ceremonies, the JSON API) without surprises."""

from __future__ import annotations

import json
from typing import Any

from flask import request

# A WebAuthn credential in JSON is a few kilobytes; anything far larger is not one.
MAX_JSON_BYTES = 80 * 1024


class JsonInputError(ValueError):
    """Why a request body is not a usable JSON object: ``reason`` is ``too_large``, ``not_json`` or
    ``not_object``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_json_object(max_bytes: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """Return the request's JSON object.

    Raises :class:`JsonInputError` when the body is larger than ``max_bytes`` (declared or actual), is not
    JSON (invalid UTF-8 and absurd nesting included) or is not an object.
    """
    if request.content_length is not None and request.content_length > max_bytes:
        raise JsonInputError("too_large")
    raw = request.get_data(cache=False)
    if len(raw) > max_bytes:
        raise JsonInputError("too_large")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise JsonInputError("not_json") from None
    if not isinstance(body, dict):
        raise JsonInputError("not_object")
    return body


def json_object() -> dict[str, Any] | None:
    """Return the request's JSON object, or None when it is too large, not JSON or not an object."""
    try:
        return read_json_object()
    except JsonInputError:
        return None
