"""Helpers to drive the FranceConnect+ simulator (hospiconnect.devtools.fcplus_simulator) from tests.

``wsgi_fetch(app)`` is the ``fetch`` our FranceConnect+ client (hospiconnect.enrollment.fcplus) takes: each
request goes through ``app.test_client()`` instead of the network. ``choose_identity`` plays the person on the
simulator's page (a browser: a Flask test client with its cookies) and returns the callback's parameters.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

from hospiconnect.enrollment import fcplus

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
HIDDEN_RE = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def _path_and_query(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def wsgi_fetch(app: Any) -> Callable[[fcplus.HttpRequest], fcplus.HttpResponse]:
    """Return a ``fetch`` that performs each request through ``app.test_client()`` (scheme and host of the
    URL are dropped; method, headers and body are passed on; response header names are lower case)."""
    client = app.test_client()

    def fetch(request: fcplus.HttpRequest) -> fcplus.HttpResponse:
        response = client.open(_path_and_query(request.url), method=request.method,
                               headers=dict(request.headers), data=request.body)
        return fcplus.HttpResponse(response.status_code, {k.lower(): v for k, v in response.headers.items()},
                                   response.get_data())

    return fetch


def query_params(location: str) -> dict[str, str]:
    """Return the query parameters of a redirect ``Location``."""
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


def choose_identity(browser: Any, authorization_url: str, identity: str = "camille", *,
                    behaviour: str = "normal", cancel: bool = False) -> dict[str, str]:
    """Open the simulator's page at ``authorization_url``, pick ``identity`` with ``behaviour`` (or cancel),
    and return the parameters of the redirect back to the client (``code``/``error``, ``state``, ``iss``).

    ``browser`` is a Flask test client (it keeps the session cookie that the page's CSRF token needs).
    Raises AssertionError when the page or the redirect is not what a working simulator answers.
    """
    page = browser.get(_path_and_query(authorization_url))
    assert page.status_code == 200, page.get_data(as_text=True)[:500]
    text = page.get_data(as_text=True)
    form = {name: html.unescape(value) for name, value in HIDDEN_RE.findall(text)}
    form["csrf_token"] = CSRF_RE.search(text).group(1)
    if cancel:
        form["action"] = "cancel"
    else:
        form.update(identity=identity, behaviour=behaviour)
    answer = browser.post(_path_and_query(authorization_url.split("?", 1)[0]), data=form)
    assert answer.status_code == 303, answer.get_data(as_text=True)[:500]
    return query_params(answer.headers["Location"])

