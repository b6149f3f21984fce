"""SQLAlchemy 2 engine, sessions and the declarative base shared by every model."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Iterator

from sqlalchemy import MetaData, create_engine, event, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import DateTime, TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: object) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: use utcnow()")
        return value.astimezone(dt.timezone.utc)

    def process_result_value(self, value: dt.datetime | None, dialect: object) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


#: How long opening a PostgreSQL connection may take. libpq's default is to wait for ever: a database host
#: that is down (no answer at all, rather than a refusal) would hold every request until the server's
#: worker timeout; with this, such requests get the 503 of a database outage.
POSTGRESQL_CONNECT_TIMEOUT_SECONDS = 5


def make_engine(url: str, **kwargs: object) -> Engine:
    """Return an engine for ``url``; SQLite gets foreign keys, WAL and a busy timeout.

    PostgreSQL connections are checked before each use (``pool_pre_ping``): after a restart of the database,
    the pooled connections it closed are replaced on the spot instead of failing the requests that draw
    them; and opening one gives up after :data:`POSTGRESQL_CONNECT_TIMEOUT_SECONDS`.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if "connect_timeout" not in make_url(url).query and "connect_args" not in kwargs:
        # (a connect_timeout in the URL's query, an operator's choice, is kept)
        kwargs["connect_args"] = {"connect_timeout": POSTGRESQL_CONNECT_TIMEOUT_SECONDS}
    return create_engine(url, pool_pre_ping=True, **kwargs)


class Database:
    """An engine and its session factory."""

    def __init__(self, url: str, **engine_kwargs: object) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends normally, rolled back otherwise."""
        session = self.sessionmaker()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
