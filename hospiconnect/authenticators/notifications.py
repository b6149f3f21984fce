"""Notifications to people (outbox pattern) and the senders that deliver them.

:func:`notify` only writes a :class:`Notification` row in the caller's session: the message exists if and
only if the change it reports was committed. :func:`deliver_pending` (run by the periodic jobs) sends what
is waiting through a sender and records each attempt. Messages never contain a code, a password or a seed:
they say what changed and when, and whom to call when it was not the person. The one kind of message that
carries a personal link (a remote-enrollment invitation) is queued with ``keys``: its body is then
encrypted at rest (AES-256-GCM under the key-encryption key) and erased once sent.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from hospiconnect import crypto
from hospiconnect.authenticators.models import Notification
from hospiconnect.crypto import InstanceKeys
from hospiconnect.db import utcnow
from hospiconnect.directory.models import Identity
from hospiconnect.settings import Settings, SettingsError

log = logging.getLogger("hospiconnect.notifications")

MAX_ATTEMPTS = 10
# An encrypted body is stored as this prefix followed by the ciphertext of crypto.encrypt.
SEALED_PREFIX = "sealed:"
_SEALED_AAD = b"notification-body"
ERASED_BODY = ""


def notify(session: Session, identity: Identity, subject: str, body: str, *,
           keys: InstanceKeys | None = None) -> Notification | None:
    """Queue a message to the person's professional e-mail in ``session`` (sent after commit by
    :func:`deliver_pending`). Returns the row, or None when the person has no e-mail address.

    With ``keys`` the body is a secret (a personal link): it is stored encrypted and erased once sent."""
    if not identity.email:
        return None
    if keys is not None:
        body = SEALED_PREFIX + crypto.encrypt(keys, body.encode("utf-8"), _SEALED_AAD)
    row = Notification(identity_id=identity.id, recipient=identity.email, subject=subject[:200], body=body,
                       created_at=utcnow(), attempts=0)
    session.add(row)
    session.flush()
    return row


@dataclasses.dataclass(frozen=True)
class OutgoingMessage:
    id: int
    recipient: str
    subject: str
    body: str


class Sender(Protocol):
    """Delivers one message; raises on failure (the error is recorded and the message retried later)."""

    def send(self, message: OutgoingMessage) -> None: ...


class ConsoleSender:
    """Logs a one-line summary (recipient and subject, never the body): for development and demos."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or log

    def send(self, message: OutgoingMessage) -> None:
        self.logger.info("notification #%s à %s : %s", message.id, message.recipient, message.subject)


class FileSender:
    """Writes one ``.eml`` file per message into ``directory`` (tests, or a pickup folder for a relay)."""

    def __init__(self, directory: Path, mail_from: str = "hospiconnect@localhost") -> None:
        self.directory = Path(directory)
        self.mail_from = mail_from

    def send(self, message: OutgoingMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        email = build_email(message, self.mail_from)
        target = self.directory / f"{message.id:08d}.eml"
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(email.as_bytes())
        tmp.replace(target)


class SmtpSender:
    """Sends through SMTP. ``url``: ``smtp://[user:password@]host[:port]`` (STARTTLS when the server offers
    it, required with ``?starttls=required``) or ``smtps://…`` (TLS from the start)."""

    def __init__(self, url: str, mail_from: str, *, timeout: float = 20.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise SettingsError("HOSPICONNECT_SMTP_URL doit être de la forme smtp://hôte:port ou smtps://hôte:port.")
        self.tls = parts.scheme == "smtps"
        self.host = parts.hostname
        self.port = parts.port or (465 if self.tls else 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.starttls_required = parse_qs(parts.query).get("starttls", [""])[0] == "required"
        self.mail_from = mail_from
        self.timeout = timeout

    def send(self, message: OutgoingMessage) -> None:
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if self.tls:
            client = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        with client:
            client.ehlo()
            if not self.tls:
                if client.has_extn("starttls"):
                    client.starttls(context=context)
                    client.ehlo()
                elif self.starttls_required:
                    raise smtplib.SMTPException("le serveur SMTP ne propose pas STARTTLS")
            if self.username:
                client.login(self.username, self.password or "")
            client.send_message(build_email(message, self.mail_from))


def build_email(message: OutgoingMessage, mail_from: str) -> EmailMessage:
    email = EmailMessage()
    email["From"] = mail_from
    email["To"] = message.recipient
    email["Subject"] = message.subject
    email["Date"] = formatdate(localtime=False)
    email["Message-ID"] = make_msgid(domain=mail_from.rpartition("@")[2] or "localhost")
    email.set_content(message.body)
    return email


def make_sender(settings: Settings) -> Sender:
    """Return the sender chosen by ``settings.mail_sender`` (console, file or smtp)."""
    if settings.mail_sender == "console":
        return ConsoleSender()
    if settings.mail_sender == "file":
        return FileSender(settings.instance_path / "outbox", settings.mail_from)
    if settings.mail_sender == "smtp":
        if not settings.smtp_url:
            raise SettingsError("HOSPICONNECT_MAIL_SENDER vaut « smtp » mais HOSPICONNECT_SMTP_URL n'est pas défini.")
        return SmtpSender(settings.smtp_url, settings.mail_from)
    raise SettingsError(f"HOSPICONNECT_MAIL_SENDER doit valoir console, file ou smtp (reçu {settings.mail_sender!r}).")


@dataclasses.dataclass(frozen=True)
class DeliveryReport:
    sent: int
    failed: int

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def is_sealed(row: Notification) -> bool:
    """True when the row's body is encrypted at rest (see :func:`notify`)."""
    return row.body.startswith(SEALED_PREFIX)


def readable_body(row: Notification, keys: InstanceKeys | None) -> str:
    """Return the body as the sender gets it (decrypted with ``keys`` when it is sealed)."""
    if not is_sealed(row):
        return row.body
    if keys is None:
        raise crypto.CryptoError("message chiffré : clés de l'instance nécessaires")
    return crypto.decrypt(keys, row.body[len(SEALED_PREFIX):], _SEALED_AAD).decode("utf-8")


def deliver_pending(session: Session, sender: Sender, limit: int = 100, *,
                    keys: InstanceKeys | None = None) -> DeliveryReport:
    """Send up to ``limit`` unsent messages (oldest first) and mark them sent, or record the error and one
    more attempt; messages that failed :data:`MAX_ATTEMPTS` times are left for an operator. An encrypted
    body is decrypted with ``keys`` for the sender and erased from the row once sent.

    Rows are claimed with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so that two job runs do not send the same
    message twice. The caller commits ``session``. Returns how many were sent and how many failed.
    """
    rows = session.scalars(
        select(Notification)
        .where(Notification.sent_at.is_(None), Notification.attempts < MAX_ATTEMPTS)
        .order_by(Notification.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    sent = failed = 0
    for row in rows:
        row.attempts += 1
        try:
            sender.send(OutgoingMessage(row.id, row.recipient, row.subject, readable_body(row, keys)))
        except Exception as exc:  # any delivery failure is recorded and retried later, never fatal
            row.last_error = f"{exc.__class__.__name__}: {exc}"[:300]
            failed += 1
            log.warning("notification #%s non envoyée : %s", row.id, row.last_error)
        else:
            if is_sealed(row):
                row.body = ERASED_BODY
            row.sent_at = utcnow()
            row.last_error = None
            sent += 1
    session.flush()
    return DeliveryReport(sent, failed)


def _when(moment: dt.datetime | None = None) -> str:
    moment = (moment or utcnow()).astimezone(dt.timezone.utc)
    return moment.strftime("%d/%m/%Y à %H:%M UTC")


_FOOTER = ("\n\nSi vous n'êtes pas à l'origine de cette opération, prévenez sans attendre le support "
           "informatique de votre établissement.\n\n— HospiConnect")

_MIE_TYPES = {"password": "mot de passe", "totp": "application d'authentification (codes à usage unique)",
              "webauthn": "clé de sécurité ou authentificateur de l'appareil",
              "cps": "carte CPS (Pro Santé Connect)", "e-cps": "application e-CPS (Pro Santé Connect)"}

_MIE_EVENTS = {
    "created": ("Nouveau moyen d'identification en cours d'enregistrement",
                "Un nouveau moyen d'identification ({kind}, « {label} ») est en cours d'enregistrement sur votre "
                "compte {user_name}, le {when}."),
    "activated": ("Nouveau moyen d'identification activé",
                  "Le moyen d'identification {kind} « {label} » a été activé sur votre compte {user_name}, le {when}."),
    "suspended": ("Moyen d'identification suspendu",
                  "Le moyen d'identification {kind} « {label} » de votre compte {user_name} a été suspendu "
                  "le {when}."),
    "reactivated": ("Moyen d'identification réactivé",
                    "Le moyen d'identification {kind} « {label} » de votre compte {user_name} a été réactivé "
                    "le {when}."),
    "revoked": ("Moyen d'identification retiré",
                "Le moyen d'identification {kind} « {label} » a été retiré de votre compte {user_name} le {when}."),
    "renamed": ("Moyen d'identification renommé",
                "Un moyen d'identification ({kind}) de votre compte {user_name} a été renommé en « {label} » "
                "le {when}."),
    "password_changed": ("Mot de passe modifié",
                         "Le mot de passe de votre compte {user_name} a été modifié le {when}."),
    "recovery_generated": ("Nouveaux codes de secours",
                           "De nouveaux codes de secours ont été générés pour votre compte {user_name} le {when}. "
                           "Les codes précédents non utilisés ne sont plus valables."),
    "recovery_used": ("Code de secours utilisé",
                      "Un code de secours a été utilisé pour vous connecter à votre compte {user_name} le {when}. "
                      "Il vous reste {remaining} code(s) de secours."),
}


def notify_event(session: Session, identity: Identity, event: str, *, kind: str = "", label: str = "",
                 remaining: int | None = None) -> Notification | None:
    """Queue the standard message for an MIE ``event`` (a key of the table above); returns the row or None."""
    subject, template = _MIE_EVENTS[event]
    body = (f"Bonjour {identity.display_name},\n\n"
            + template.format(kind=_MIE_TYPES.get(kind, kind), label=label, user_name=identity.user_name,
                              when=_when(), remaining=remaining if remaining is not None else "?")
            + _FOOTER)
    return notify(session, identity, f"HospiConnect : {subject}", body)
