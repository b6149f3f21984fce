"""Prometheus metrics of a running process, exposed at ``/metrics`` (hospiconnect.web.views).

What is counted, and where it comes from:

* ``hospiconnect_signins_total{outcome,factor}``: the sign-in steps, read from the audit journal's tags as
  they are recorded (:func:`journal_event`, called by :func:`hospiconnect.audit.service.record`), through
  :data:`SIGNIN_FACTORS`; a completed sign-in (``authn:interaction:completed``) counts with outcome
  ``completed`` and, as factor, what the session got: ``mfa``, ``single_factor`` or ``emergency``;
* ``hospiconnect_token_grants_total{grant_type,outcome}``: every answer of the token endpoint
  (:func:`token_grant`);
* ``hospiconnect_password_hash_validations_total{outcome}`` and
  ``hospiconnect_password_hash_validation_duration_seconds``: every argon2 verification, the ones spent on
  unknown accounts included (:func:`password_validation`);
* ``hospiconnect_http_request_duration_seconds{endpoint,method,status_class}``: every request, keyed by the
  Flask endpoint's name (:func:`instrument`);
* ``hospiconnect_journal_write_failures_total``: appends to the audit journal that raised
  (:func:`journal_write_failed`).

Every label takes its values from a closed list (unknown values become ``other``, an unknown route
``unmatched``), so no request can create new series.

Several processes: gunicorn's workers each count on their own. When ``PROMETHEUS_MULTIPROC_DIR`` is set
(``hospiconnect serve`` sets it, hospiconnect.server), prometheus_client writes every value to a file of that
folder and ``/metrics`` adds up the files of every worker, dead ones included, so a counter never goes back
when a worker is replaced. Otherwise (tests, one process) the values live in this process's registry.
prometheus_client chooses between the two when it is first imported: it is therefore imported here only at
first use, never when this module is (the command line imports it, through the journal, long before
``serve`` has set the folder).
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

if TYPE_CHECKING:
    from flask import Flask
    from prometheus_client import CollectorRegistry, Counter, Histogram

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Tag of a sign-in step journaled by the authenticators → its ``factor`` label. The journal's outcome
#: (``success``, ``failure``, ``refused`` — throttled or locked before any check) is the ``outcome`` label.
#: Strings rather than hospiconnect.audit.tags' names: the journal imports this module, not the reverse
#: (tests/unit/core/test_metrics.py keeps each one a tag of that module or of the WebAuthn module).
SIGNIN_FACTORS: Mapping[str, str] = {
    "authn:password:success": "password",
    "authn:password:failure": "password",
    "authn:totp:success": "totp",
    "authn:totp:failure": "totp",
    "authn:webauthn:success": "webauthn",
    "authn:webauthn:failure": "webauthn",
    "authn:webauthn:counter_regression": "webauthn",
    "authn:recovery_code:used": "recovery_code",
    "authn:recovery_code:failure": "recovery_code",
    "authn:emergency:used": "emergency",
    "authn:emergency:refused": "emergency",
    "authn:psc:success": "psc",
    "authn:psc:failure": "psc",
}
#: The end of a sign-in: the interaction is complete and a session opened (its ``amr`` is in the details).
SIGNIN_COMPLETED_TAG = "authn:interaction:completed"
SIGNIN_OUTCOMES = ("success", "failure", "refused")
COMPLETED = "completed"
COMPLETED_FACTORS = ("mfa", "single_factor", "emergency")

GRANT_TYPES = ("authorization_code", "refresh_token")
#: RFC 6749 §5.2 error codes of the token endpoint; anything else is counted as ``other``.
TOKEN_ERRORS = ("invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
                "unsupported_grant_type", "invalid_scope")
PASSWORD_OUTCOMES = ("match", "mismatch", "invalid_hash")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
OTHER = "other"
UNMATCHED = "unmatched"

#: argon2id at the DESIGN.md parameters takes ~25 ms on one core; waiting for a hashing slot is not included.
PASSWORD_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Where the Flask endpoint of a request is left for the WSGI wrapper, which runs outside the request context.
_ENDPOINT_KEY = "hospiconnect.metrics.endpoint"


def multiprocess_dir() -> str | None:
    """Return the folder shared by the worker processes, or None in single-process mode."""
    return os.environ.get(MULTIPROC_ENV) or None


@dataclasses.dataclass(frozen=True)
class _Instruments:
    registry: "CollectorRegistry"
    signins: "Counter"
    token_grants: "Counter"
    password_validations: "Counter"
    password_duration: "Histogram"
    http_duration: "Histogram"
    journal_failures: "Counter"


_made: _Instruments | None = None
_making = threading.Lock()


def _instruments() -> _Instruments:
    # Made once per process, under a lock: two threads of a worker counting for the first time at once must
    # not make two sets (one would lose its counts, or overwrite the other's in the multiprocess files).
    made = _made
    if made is not None:
        return made
    with _making:
        return _made or _make()


def _make() -> _Instruments:
    global _made
    from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, values

    if multiprocess_dir() is not None and not getattr(values.ValueClass, "_multiprocess", False):
        # Imported before the folder was set: every worker would count alone and /metrics show one of them.
        raise RuntimeError(f"prometheus_client was imported before {MULTIPROC_ENV} was set")
    # The ``*_created`` series (start time of each counter) are not written in multiprocess mode: the same
    # metrics, whatever the mode.
    disable_created_metrics()
    registry = CollectorRegistry(auto_describe=True)
    made = _Instruments(
        registry=registry,
        signins=Counter("hospiconnect_signins_total",
                        "Sign-in steps by factor and outcome, and completed sign-ins (outcome=completed).",
                        ("outcome", "factor"), registry=registry),
        token_grants=Counter("hospiconnect_token_grants_total",
                             "Answers of the token endpoint by grant type and outcome (success or OAuth error).",
                             ("grant_type", "outcome"), registry=registry),
        password_validations=Counter("hospiconnect_password_hash_validations_total",
                                     "argon2 password verifications by outcome.", ("outcome",), registry=registry),
        password_duration=Histogram("hospiconnect_password_hash_validation_duration_seconds",
                                    "Time spent in one argon2 password verification.",
                                    buckets=PASSWORD_BUCKETS, registry=registry),
        http_duration=Histogram("hospiconnect_http_request_duration_seconds",
                                "Time to answer a request, by Flask endpoint, method and status class.",
                                ("endpoint", "method", "status_class"), buckets=HTTP_BUCKETS, registry=registry),
        journal_failures=Counter("hospiconnect_journal_write_failures_total",
                                 "Appends to the audit journal that failed (the operation was not committed).",
                                 registry=registry),
    )
    # Series that exist from the start read 0 rather than nothing, so rates and alerts work from the first scrape.
    for factor in sorted(set(SIGNIN_FACTORS.values())):
        for outcome in SIGNIN_OUTCOMES:
            made.signins.labels(outcome=outcome, factor=factor)
    for factor in COMPLETED_FACTORS:
        made.signins.labels(outcome=COMPLETED, factor=factor)
    for grant_type in GRANT_TYPES:
        made.token_grants.labels(grant_type=grant_type, outcome="success")
        made.token_grants.labels(grant_type=grant_type, outcome="invalid_grant")
    for outcome in PASSWORD_OUTCOMES:
        made.password_validations.labels(outcome=outcome)
    made.journal_failures.inc(0)
    _made = made
    return made


def _one_of(value: object, allowed: Iterable[str]) -> str:
    return value if isinstance(value, str) and value in allowed else OTHER


# --- What the rest of the product reports ---------------------------------------------------------------


def journal_event(tag: str, outcome: str, details: Mapping[str, Any] | None) -> None:
    """Count a journal event that is a sign-in step or a completed sign-in; ignore every other tag.

    Called when the event is recorded, that is before its transaction commits: an event whose transaction
    is then rolled back (which the journal never shows) has been counted. The counters measure attempts
    for dashboards and alerts; the journal stays the record.
    """
    factor = SIGNIN_FACTORS.get(tag)
    if factor is not None:
        if outcome in SIGNIN_OUTCOMES:
            _instruments().signins.labels(outcome=outcome, factor=factor).inc()
        return
    if tag == SIGNIN_COMPLETED_TAG:
        amr = set((details or {}).get("amr") or ())
        kind = "emergency" if "emergency" in amr else "mfa" if "mfa" in amr else "single_factor"
        _instruments().signins.labels(outcome=COMPLETED, factor=kind).inc()


def token_grant(grant_type: str | None, status: int, error: str | None) -> None:
    """Count one answer of the token endpoint: ``success`` for a 200, else its OAuth ``error`` code."""
    outcome = "success" if status == 200 else _one_of(error, TOKEN_ERRORS)
    _instruments().token_grants.labels(grant_type=_one_of(grant_type, GRANT_TYPES), outcome=outcome).inc()


def password_validation(outcome: str, seconds: float) -> None:
    """Count one argon2 verification (``match``, ``mismatch`` or ``invalid_hash``) that took ``seconds``."""
    made = _instruments()
    made.password_validations.labels(outcome=_one_of(outcome, PASSWORD_OUTCOMES)).inc()
    made.password_duration.observe(seconds)


def journal_write_failed() -> None:
    """Count an append to the audit journal that raised (its transaction will not commit)."""
    _instruments().journal_failures.inc()


def observe_request(endpoint: str | None, method: str, status: int, seconds: float) -> None:
    """Record the duration of one request (``endpoint`` None: no route matched)."""
    status_class = f"{status // 100}xx" if 100 <= status <= 599 else OTHER
    _instruments().http_duration.labels(endpoint=endpoint or UNMATCHED, method=_one_of(method, HTTP_METHODS),
                                         status_class=status_class).observe(seconds)


# --- The web application ---------------------------------------------------------------------------------


def instrument(app: "Flask") -> None:
    """Time every request of ``app`` (:func:`observe_request`), from the WSGI call to the response's headers.

    A WSGI wrapper rather than Flask's request hooks: it also sees the requests that an error handler or a
    ``before_request`` function answered. The endpoint is read at the request's teardown, which every
    request reaches; ``None`` there means that no route matched (404, 405).
    """
    from flask import request

    inner = app.wsgi_app

    def timed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started = time.perf_counter()
        status = [500]  # what the server sends when the application raises before starting the response

        def capture(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            try:
                status[0] = int(status_line.split(" ", 1)[0])
            except ValueError:
                status[0] = 0
            return start_response(status_line, headers, exc_info)

        try:
            return inner(environ, capture)
        finally:
            observe_request(environ.get(_ENDPOINT_KEY), environ.get("REQUEST_METHOD", ""), status[0],
                            time.perf_counter() - started)

    @app.teardown_request
    def _remember_endpoint(exc: BaseException | None = None) -> None:
        request.environ[_ENDPOINT_KEY] = request.endpoint

    app.wsgi_app = timed  # type: ignore[method-assign]


def exposition(accept: str | None) -> tuple[bytes, str]:
    """Return the metrics in the text format the scraper asked for (``Accept``) and its content type.

    In multi-process mode the values are those of every worker of this server, read from their files.
    """
    from prometheus_client.exposition import choose_encoder

    registry = _instruments().registry
    folder = multiprocess_dir()
    if folder is not None:
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=folder)
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


@functools.lru_cache(maxsize=8)
def _networks(networks: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(network, strict=False) for network in networks)


def client_allowed(address: str | None, networks: tuple[str, ...]) -> bool:
    """Return True when ``address`` (the request's client) lies in one of ``networks`` (CIDR strings, as
    checked by hospiconnect.settings). An IPv4 client seen through an IPv6 socket (``::ffff:10.0.0.5``) is
    judged by its IPv4 address too; anything that is not an address is refused."""
    if not address:
        return False
    try:
        client = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [client]
    if isinstance(client, ipaddress.IPv6Address) and client.ipv4_mapped is not None:
        candidates.append(client.ipv4_mapped)
    return any(candidate in network for network in _networks(networks) for candidate in candidates
               if candidate.version == network.version)


def sample(name: str, labels: Mapping[str, str] | None = None) -> float:
    """Return the current value of one sample of this process (0 when absent), e.g.
    ``sample("hospiconnect_signins_total", {"outcome": "success", "factor": "totp"})``."""
    value = _instruments().registry.get_sample_value(name, dict(labels or {}))
    return value or 0.0


def mark_process_dead(pid: int) -> None:
    """Tell the multi-process files that worker ``pid`` is gone (gunicorn's ``child_exit`` hook)."""
    folder = multiprocess_dir()
    if folder is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, folder)
