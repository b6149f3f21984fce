"""Access to the runtime and the request's database session from Flask views.

One session per request, committed by the view's service call through :func:`commit` or rolled back
at teardown: a request never leaves half an operation behind.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, g
from sqlalchemy import event
from sqlalchemy.orm import Session

from hospiconnect.runtime import Runtime

EXTENSION = "hospiconnect"
#: The access policy holder (hospiconnect.policies_runtime.PolicyHolder; policies_runtime.current_policy()).
POLICY_EXTENSION = "hospiconnect.policy"


def runtime() -> Runtime:
    return current_app.extensions[EXTENSION]


# The session's identity map holds objects weakly: an object loaded by one function and dropped is read again
# by the next one that asks for it (the same identity three or four times in one sign-in request). A request's
# session keeps what it loaded until the request ends.
_LOADED = "hospiconnect.loaded"


@event.listens_for(Session, "loaded_as_persistent")
def _keep_loaded(session: Session, instance: Any) -> None:
    kept = session.info.get(_LOADED)
    if kept is not None:
        kept.append(instance)


def db_session() -> Session:
    if "db_session" not in g:
        session = runtime().db.sessionmaker()
        session.info[_LOADED] = []
        g.db_session = session
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
