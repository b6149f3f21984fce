"""Devtools only: give a past date to the journal events that the demo seed records through the services.

The product dates every journal entry when it is recorded (:func:`hospiconnect.audit.service.record` reads the
clock and takes no date): that is part of what makes the journal evidence, and nothing here changes it. The demo,
though, must show a year of history (:mod:`hospiconnect.devtools.seed_history`), and the trajectory reads part of
that history from the journal (identity status changes, sign-ins). :func:`journal_dated` is the one way the demo
seed dates an event: the services record their events as usual; the events recorded inside the block, which wait
in the session until the transaction commits, get the date given before they are chained. They are then chained
and hashed like every other entry (``seq`` contiguous, ``hospiconnect audit verify`` passes): only their date is
chosen, so in a demo database the order of ``seq`` is not the order of the dates.

Nothing in the product imports this module, and the demo seed that calls it refuses to run in production
(:func:`hospiconnect.devtools.seed.seed_demo`, ``hospiconnect demo``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Iterator

from sqlalchemy.orm import Session

from hospiconnect.audit import service as audit
from hospiconnect.db import utcnow


@contextlib.contextmanager
def journal_dated(session: Session, at: dt.datetime) -> Iterator[None]:
    """Date ``at`` (an aware instant) every journal event recorded in ``session`` inside the block.

    Events recorded before the block keep their date; in nested blocks the innermost date wins (only the events
    stamped by the clock during the block are dated). Raises RuntimeError when the events were written to the
    journal inside the block (something read the journal in the same transaction): they could not be dated.
    """
    if at.tzinfo is None:
        raise ValueError("at must be an aware datetime")
    # The audit service keeps the events of the transaction in this list until the commit (its private key:
    # reading it is what makes this helper devtools-only).
    pending = session.info.setdefault(audit._PENDING, [])
    first = len(pending)
    entered = utcnow()
    yield
    if session.info.get(audit._PENDING) is not pending:
        raise RuntimeError("journal written inside a dated block: its events could not be dated")
    for event in pending[first:]:
        if event.occurred_at >= entered:
            event.occurred_at = at
