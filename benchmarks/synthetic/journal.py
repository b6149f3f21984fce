"""Bulk writing: table rows, and journal events with their hash chain.

Rows go in with PostgreSQL ``COPY`` (psycopg) on PostgreSQL and with Core ``insert()`` executemany elsewhere
(SQLite, for the tests). The journal is written with a **real** hash chain continuing the database's head:
``seq`` contiguous, each ``hash`` computed exactly as :func:`hospiconnect.audit.service.compute_hash` does, so
that ``hospiconnect audit verify`` passes on the generated database. The millions of sign-in events are
hashed from a string template (3.6 µs instead of 5.8 µs an event through ``compute_hash``); the template is
checked against ``compute_hash`` on the first sign-in of every day (:class:`JournalWriter`), and the tests
verify the whole chain of a small generation (:mod:`benchmarks.synthetic.check`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any, Iterable, Sequence

from sqlalchemy import Connection, Table, select, text, update

from hospiconnect.audit.models import GENESIS_HASH, AuditEvent, AuditHead
from hospiconnect.audit.service import compute_hash

CHUNK = 5_000
AUDIT_COLUMNS = ("id", "seq", "occurred_at", "tag", "actor", "subject", "client_ip", "outcome", "details",
                 "prev_hash", "hash")
SIGNIN_TAG = "oidc:code:issued"


def is_postgresql(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _copy_text(value: str) -> str:
    """Escape ``value`` for PostgreSQL's COPY text format."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def insert_rows(conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Write ``rows`` (tuples in the order of ``columns``) into ``table``; return how many."""
    count = 0
    if is_postgresql(conn):
        raw = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
        return count
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(dict(zip(columns, row)))
        if len(batch) >= CHUNK:
            conn.execute(table.insert(), batch)
            count += len(batch)
            batch = []
    if batch:
        conn.execute(table.insert(), batch)
        count += len(batch)
    return count


def reset_sequences(conn: Connection, tables: Iterable[Table]) -> None:
    """After rows were written with explicit ids, move each table's id sequence past them (PostgreSQL)."""
    if not is_postgresql(conn):
        return
    for table in tables:
        conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                          f"coalesce((SELECT max(id) FROM {table.name}), 0) + 1, false)"))


class _Row:
    """The attributes :func:`compute_hash` reads, without the cost of an ORM object."""

    __slots__ = AUDIT_COLUMNS


class JournalWriter:
    """Appends events to the journal after its current head, in the order given (times must not go back)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        head = conn.execute(select(AuditHead.seq, AuditHead.last_hash).where(AuditHead.id == 1)).first()
        if head is None:
            conn.execute(AuditHead.__table__.insert().values(id=1, seq=0, last_hash=GENESIS_HASH))
            head = (0, GENESIS_HASH)
        self.seq, self.prev = int(head[0]), str(head[1])
        self.next_id = int(conn.scalar(text("SELECT coalesce(max(id), 0) FROM audit_events")) or 0) + 1
        self.written = 0
        self.signins = 0
        self._pg = is_postgresql(conn)
        self._lines: list[str] = []
        self._rows: list[dict[str, Any]] = []
        self._copy_cm: Any = None
        self._copy: Any = None
        self._dropped: list[tuple[str, str]] = []

    # -- set up and finish -------------------------------------------------------------------------------

    def __enter__(self) -> "JournalWriter":
        if self._pg:
            # Secondary indexes are built once at the end (several times faster than maintaining them row by
            # row for millions of rows); the primary key and unique constraints stay.
            self._dropped = [(r.indexname, r.indexdef) for r in self.conn.execute(text(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = 'audit_events' "
                "AND i.schemaname = current_schema() AND NOT EXISTS "
                "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"))]
            for name, _definition in self._dropped:
                self.conn.execute(text(f'DROP INDEX "{name}"'))
            raw = self.conn.connection.driver_connection
            self._cursor = raw.cursor()
            self._copy_cm = self._cursor.copy(f"COPY audit_events ({', '.join(AUDIT_COLUMNS)}) FROM STDIN")
            self._copy = self._copy_cm.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.flush()
        if self._pg:
            self._copy_cm.__exit__(exc_type, exc, tb)
            self._cursor.close()
            if exc_type is None:
                self.conn.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))
                for _name, definition in self._dropped:
                    self.conn.execute(text(definition))
        if exc_type is None:
            self.conn.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=self.seq, last_hash=self.prev))
            reset_sequences(self.conn, [AuditEvent.__table__])

    def flush(self) -> None:
        if self._pg and self._lines:
            self._copy.write("".join(self._lines))
            self._lines = []
        elif self._rows:
            self.conn.execute(AuditEvent.__table__.insert(), self._rows)
            self._rows = []

    # -- appending ---------------------------------------------------------------------------------------

    def _store(self, values: tuple[Any, ...]) -> None:
        if self._pg:
            ident, seq, iso, tag, actor, subject, ip, outcome, details, prev, digest = values
            self._lines.append(f"{ident}\t{seq}\t{iso}\t{_copy_text(tag)}\t{_copy_text(actor)}\t"
                               f"{_copy_text(subject) if subject is not None else chr(92) + 'N'}\t"
                               f"{ip if ip is not None else chr(92) + 'N'}\t{outcome}\t{_copy_text(details)}\t"
                               f"{prev}\t{digest}\n")
            if len(self._lines) >= 20_000:
                self.flush()
        else:
            row = dict(zip(AUDIT_COLUMNS, values))
            row["occurred_at"] = dt.datetime.fromisoformat(values[2])
            self._rows.append(row)
            if len(self._rows) >= CHUNK:
                self.flush()

    def append(self, at: dt.datetime, tag: str, actor: str, subject: str | None, client_ip: str | None,
               outcome: str, details: dict[str, Any]) -> None:
        """Append one event (any tag), hashed by the product's own :func:`compute_hash`."""
        row = _Row()
        self.seq += 1
        row.seq, row.occurred_at, row.tag, row.actor, row.subject = self.seq, at, tag, actor[:200], subject
        row.client_ip, row.outcome, row.prev_hash = client_ip, outcome, self.prev
        row.details = json.dumps(details, sort_keys=True, ensure_ascii=False, default=str)
        digest = compute_hash(row)  # type: ignore[arg-type]
        self._store((self.next_id, self.seq, at.isoformat(timespec="microseconds"), tag, row.actor, subject,
                     client_ip, outcome, row.details, self.prev, digest))
        self.prev = digest
        self.next_id += 1
        self.written += 1

    def append_signin(self, at: dt.datetime, public_id: str, client_ip: str, details: str, check: bool) -> None:
        """Append an ``oidc:code:issued`` event whose ``details`` JSON is already serialised as the product does
        (``json.dumps(..., sort_keys=True, ensure_ascii=False)``, ASCII only, no backslash)."""
        self.seq += 1
        iso = at.isoformat(timespec="microseconds")
        quoted = details.replace('"', '\\"')  # json.dumps of a string without backslashes or control characters
        canonical = (f'{{"actor":"{public_id}","client_ip":"{client_ip}","details":"{quoted}",'
                     f'"occurred_at":"{iso}","outcome":"success","prev_hash":"{self.prev}","seq":{self.seq},'
                     f'"subject":"{public_id}","tag":"{SIGNIN_TAG}"}}')
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        if check:
            row = _Row()
            row.seq, row.occurred_at, row.tag, row.actor, row.subject = self.seq, at, SIGNIN_TAG, public_id, public_id
            row.client_ip, row.outcome, row.details, row.prev_hash = client_ip, "success", details, self.prev
            if compute_hash(row) != digest:  # type: ignore[arg-type]
                raise AssertionError("the sign-in hash template no longer matches audit.compute_hash")
        if self._pg:
            self._lines.append(f"{self.next_id}\t{self.seq}\t{iso}\t{SIGNIN_TAG}\t{public_id}\t{public_id}\t"
                               f"{client_ip}\tsuccess\t{details}\t{self.prev}\t{digest}\n")
            if len(self._lines) >= 20_000:
                self.flush()
        else:
            self._store((self.next_id, self.seq, iso, SIGNIN_TAG, public_id, public_id, client_ip, "success",
                         details, self.prev, digest))
        self.prev = digest
        self.next_id += 1
        self.written += 1
        self.signins += 1
