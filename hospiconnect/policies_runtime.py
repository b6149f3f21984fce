"""The access policy of a running process, reloaded without restart when its file changes.

``hospiconnect.policies`` is pure; this module is the part that watches a file. A :class:`PolicyHolder` keeps
the policy in force. At most every ``check_seconds`` (``HOSPICONNECT_POLICY_CHECK_SECONDS``, 5 s by default) it
looks at the file's metadata (modification time, size, inode): when they changed it reads the file again and

* applies it when it is valid and its content (SHA-256 digest) differs from the policy in force — journaled
  once per change, ``admin:policy:reloaded``;
* keeps the policy in force when the new file is invalid or unreadable, logs an error with every problem
  found and journals ``admin:policy:reload_refused`` — once for that version of the file, not at every check.

Every process watches the same file, so all of them converge within one check interval; no signal or
shared state is needed. An editor that writes the file in place may be caught half-way: that version is
refused and the finished one applied at the next check (writing a copy and renaming it over the file avoids
the refusal). The application checks before each request (:func:`install`); the command line reads the file
itself.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

from flask import Flask, current_app

from hospiconnect import appctx
from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.policies import Policy, PolicyError, load_policy

log = logging.getLogger("hospiconnect.policies")

Stamp = tuple[int, int, int, int] | None  # (mtime_ns, size, inode, device); None: the file cannot be seen


@dataclasses.dataclass(frozen=True)
class ReloadEvent:
    """What one check found: ``reloaded`` (``policy`` is the new one) or ``refused`` (``errors`` say why)."""

    outcome: str  # "reloaded" | "refused"
    source: str
    policy: Policy | None = None
    previous_digest: str | None = None
    errors: tuple[str, ...] = ()

    def details(self) -> dict[str, Any]:
        """Return the journal details: file, digests, errors, and which process saw it."""
        data: dict[str, Any] = {"file": self.source, "pid": os.getpid(), "host": socket.gethostname()[:100],
                                "previous_digest": self.previous_digest}
        if self.policy is not None:
            data.update(digest=self.policy.digest, name=self.policy.name)
        if self.errors:
            data["errors"] = list(self.errors[:20])
        return data


def _stamp(path: Path) -> Stamp:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


class PolicyHolder:
    """The policy in force for one process, and the watch of its file.

    ``policy`` is loaded at construction (raises :class:`~hospiconnect.policies.PolicyError` when the file is
    invalid: a process never starts without a valid policy). ``on_change`` is called with each
    :class:`ReloadEvent` (outside the lock; its failures are logged, never raised to the request).
    """

    def __init__(self, path: Path | str, *, check_seconds: float = 5.0,
                 on_change: Callable[[ReloadEvent], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.check_seconds = max(0.0, float(check_seconds))
        self.on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp = _stamp(self.path)
        self._policy = load_policy(self.path)
        self._next_check = clock() + self.check_seconds

    @property
    def policy(self) -> Policy:
        """The policy in force (no check)."""
        return self._policy

    def current(self) -> Policy:
        """Return the policy in force, after checking the file when the check interval has passed."""
        self.check()
        return self._policy

    def check(self, *, force: bool = False) -> ReloadEvent | None:
        """Look at the file when the interval has passed (or ``force``); return what changed, if anything.

        Never raises for a bad file. Another thread already checking: returns None at once (no waiting).
        """
        if not force and self._clock() < self._next_check:
            return None
        if not self._lock.acquire(blocking=False):
            return None
        try:
            self._next_check = self._clock() + self.check_seconds
            event = self._look()
        finally:
            self._lock.release()
        if event is not None:
            self._report(event)
        return event

    def _look(self) -> ReloadEvent | None:
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return None
        self._stamp = stamp  # whatever the outcome, this version of the file is dealt with once
        previous = self._policy
        try:
            loaded = load_policy(self.path)
        except PolicyError as exc:
            return ReloadEvent("refused", str(self.path), previous_digest=previous.digest,
                               errors=tuple(i.render(exc.source) for i in exc.issues))
        if loaded.digest == previous.digest:
            return None  # touched or rewritten identically: nothing to apply
        self._policy = loaded
        return ReloadEvent("reloaded", str(self.path), policy=loaded, previous_digest=previous.digest)

    def _report(self, event: ReloadEvent) -> None:
        if event.outcome == "reloaded" and event.policy is not None:
            log.info("politique d'accès rechargée : %s (%s, empreinte %s)", event.source, event.policy.name,
                     event.policy.digest[:12])
        else:
            log.error("nouvelle version de la politique d'accès refusée, la précédente reste en vigueur :\n%s",
                      "\n".join(event.errors))
        if self.on_change is not None:
            try:
                self.on_change(event)
            except Exception:  # the journal may be unreachable: the policy change stands, the request goes on
                log.exception("journalisation du rechargement de la politique impossible")


def journal_reload(app: Flask, event: ReloadEvent) -> None:
    """Journal ``event`` (``admin:policy:reloaded`` or ``admin:policy:reload_refused``) in its own transaction."""
    runtime = app.extensions[appctx.EXTENSION]  # looked up when the event happens (tests replace it)
    tag = tags.ADMIN_POLICY_RELOADED if event.outcome == "reloaded" else tags.ADMIN_POLICY_RELOAD_REFUSED
    with runtime.db.session() as session:
        audit.record(session, tag, actor="system:policy", subject=f"policy:{event.source[-150:]}",
                     outcome="success" if event.outcome == "reloaded" else "refused", details=event.details())


def install(app: Flask, path: Path | str, check_seconds: float) -> PolicyHolder:
    """Load the policy at ``path`` into ``app`` (raises PolicyError when invalid) and check the file before
    each request; return the holder."""
    holder = PolicyHolder(path, check_seconds=check_seconds, on_change=lambda event: journal_reload(app, event))
    app.extensions[appctx.POLICY_EXTENSION] = holder

    @app.before_request
    def _check_policy_file() -> None:
        holder.check()

    return holder


def holder() -> PolicyHolder:
    """Return the policy holder of the running application (a Flask application context is needed)."""
    return current_app.extensions[appctx.POLICY_EXTENSION]


def current_policy() -> Policy:
    """Return the policy in force in the running application. The file was looked at before the request (never
    in the middle of it: a reload journals in its own transaction, which must not wait for the request's)."""
    return holder().policy
