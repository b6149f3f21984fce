"""Access to the runtime and the request's database session from Flask views.

One session per request, committed by the view's service call through :func:`commit` or rolled back
at teardown: a request never leaves half an operation behind.
"""

from __future__ import annotations

from flask import current_app, g
from sqlalchemy.orm import Session

from hospiconnect.runtime import Runtime

EXTENSION = "hospiconnect"
#: The access policy holder (hospiconnect.policies_runtime.PolicyHolder; policies_runtime.current_policy()).
POLICY_EXTENSION = "hospiconnect.policy"


def runtime() -> Runtime:
    return current_app.extensions[EXTENSION]


def db_session() -> Session:
    if "db_session" not in g:
        g.db_session = runtime().db.sessionmaker()
    return g.db_session


def close_session(exc: BaseException | None = None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        if exc is not None or session.in_transaction():
            session.rollback()
        session.close()


def client_ip() -> str | None:
    from flask import request

    return request.remote_addr
