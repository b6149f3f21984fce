"""Outbox notifications and their senders."""

from __future__ import annotations

import dataclasses
import email
import logging
import smtplib

import pytest

from hospiconnect.authenticators import notifications as notif
from hospiconnect.authenticators.models import Notification
from hospiconnect.settings import SettingsError
from tests.factories import create_identity
from tests.unit.authenticators._mie_helpers import notifications  # noqa: F401


def test_notify_writes_the_outbox_in_the_callers_transaction(session):
    person = create_identity(session)
    row = notif.notify(session, person, "Sujet", "Corps")
    assert row is not None and row.recipient == person.email and row.sent_at is None
    session.rollback()
    assert notifications(session) == []


def test_no_email_no_row(session):
    assert notif.notify(session, create_identity(session, email=""), "Sujet", "Corps") is None


def test_standard_messages_are_french_and_name_the_account(session):
    person = create_identity(session)
    row = notif.notify_event(session, person, "activated", kind="totp", label="Téléphone")
    assert row.subject == "HospiConnect : Nouveau moyen d'identification activé"
    assert person.user_name in row.body and "« Téléphone »" in row.body and "support" in row.body


class Recorder:
    def __init__(self, fail_on: set[int] | None = None) -> None:
        self.sent: list[notif.OutgoingMessage] = []
        self.fail_on = fail_on or set()

    def send(self, message):
        if message.id in self.fail_on:
            raise ConnectionError("relais injoignable")
        self.sent.append(message)


def test_deliver_pending_marks_sent_and_records_errors(session):
    person = create_identity(session)
    rows = [notif.notify(session, person, f"Sujet {i}", "Corps") for i in range(3)]
    session.commit()
    sender = Recorder(fail_on={rows[1].id})
    report = notif.deliver_pending(session, sender, limit=10)
    session.commit()
    assert report.as_dict() == {"sent": 2, "failed": 1}
    assert [m.subject for m in sender.sent] == ["Sujet 0", "Sujet 2"]
    session.expire_all()
    failed = session.get(Notification, rows[1].id)
    assert failed.sent_at is None and failed.attempts == 1 and "relais injoignable" in failed.last_error
    # a second run retries only what failed
    report = notif.deliver_pending(session, Recorder(), limit=10)
    assert report.as_dict() == {"sent": 1, "failed": 0}
    assert notif.deliver_pending(session, Recorder()).as_dict() == {"sent": 0, "failed": 0}


def test_messages_failing_too_often_are_left_alone(session):
    person = create_identity(session)
    row = notif.notify(session, person, "Sujet", "Corps")
    row.attempts = notif.MAX_ATTEMPTS
    session.commit()
    assert notif.deliver_pending(session, Recorder()).sent == 0


def test_limit(session):
    person = create_identity(session)
    for i in range(5):
        notif.notify(session, person, f"S{i}", "C")
    assert notif.deliver_pending(session, Recorder(), limit=2).sent == 2


def test_console_sender_logs_a_summary_without_the_body(caplog):
    with caplog.at_level(logging.INFO, logger="hospiconnect.notifications"):
        notif.ConsoleSender().send(notif.OutgoingMessage(7, "a@b.fr", "Sujet", "CORPS-SECRET"))
    assert "a@b.fr" in caplog.text and "Sujet" in caplog.text and "CORPS-SECRET" not in caplog.text


def test_file_sender_writes_one_eml_per_message(tmp_path):
    sender = notif.FileSender(tmp_path / "outbox", "hc@chu.fr")
    sender.send(notif.OutgoingMessage(3, "a@b.fr", "Mot de passe modifié", "Bonjour,\nÉtape faite."))
    [path] = list((tmp_path / "outbox").iterdir())
    assert path.name == "00000003.eml"
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["To"] == "a@b.fr" and message["From"] == "hc@chu.fr"
    assert message["Subject"] == "Mot de passe modifié"
    assert "Étape faite." in message.get_content()


class FakeSMTP:
    instances: list["FakeSMTP"] = []

    def __init__(self, host, port, timeout=None, context=None):
        self.host, self.port, self.calls = host, port, []
        FakeSMTP.instances.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def ehlo(self):
        self.calls.append("ehlo")

    def has_extn(self, name):
        return name == "starttls" and self.port != 2525

    def starttls(self, context=None):
        self.calls.append("starttls")

    def login(self, user, password):
        self.calls.append(f"login:{user}:{password}")

    def send_message(self, message):
        self.calls.append(f"send:{message['To']}")


def test_smtp_sender(monkeypatch):
    FakeSMTP.instances.clear()
    monkeypatch.setattr(smtplib, "SMTP", FakeSMTP)
    monkeypatch.setattr(smtplib, "SMTP_SSL", FakeSMTP)
    message = notif.OutgoingMessage(1, "a@b.fr", "S", "C")
    notif.SmtpSender("smtp://relay.chu.fr:587", "hc@chu.fr").send(message)
    notif.SmtpSender("smtps://u%40x:p%3Ass@relay.chu.fr", "hc@chu.fr").send(message)
    plain, tls = FakeSMTP.instances
    assert (plain.host, plain.port, plain.calls) == ("relay.chu.fr", 587, ["ehlo", "starttls", "ehlo", "send:a@b.fr"])
    assert (tls.port, tls.calls) == (465, ["ehlo", "login:u@x:p:ss", "send:a@b.fr"])
    with pytest.raises(smtplib.SMTPException):
        notif.SmtpSender("smtp://relay:2525?starttls=required", "hc@chu.fr").send(message)
    with pytest.raises(SettingsError):
        notif.SmtpSender("http://relay", "hc@chu.fr")


def test_make_sender(settings, tmp_path):
    assert isinstance(notif.make_sender(dataclasses.replace(settings, mail_sender="console")), notif.ConsoleSender)
    file_sender = notif.make_sender(dataclasses.replace(settings, mail_sender="file", instance_path=tmp_path))
    assert isinstance(file_sender, notif.FileSender) and file_sender.directory == tmp_path / "outbox"
    smtp = notif.make_sender(dataclasses.replace(settings, mail_sender="smtp", smtp_url="smtp://relay:25"))
    assert isinstance(smtp, notif.SmtpSender)
    with pytest.raises(SettingsError):
        notif.make_sender(dataclasses.replace(settings, mail_sender="smtp", smtp_url=""))
    with pytest.raises(SettingsError):
        notif.make_sender(dataclasses.replace(settings, mail_sender="pigeon"))


def test_a_secret_body_is_encrypted_at_rest_sent_readable_then_erased(session, rt):
    person = create_identity(session)
    link = "http://localhost/activation/invitation/jeton-personnel-secret"
    row = notif.notify(session, person, "Invitation", f"Votre lien : {link}", keys=rt.keys)
    assert row is not None and notif.is_sealed(row)
    assert "jeton-personnel-secret" not in row.body
    # Without the keys the message cannot be read: it is kept and retried, never sent garbled.
    assert notif.deliver_pending(session, Recorder()).as_dict() == {"sent": 0, "failed": 1}
    assert row.sent_at is None and "CryptoError" in row.last_error
    sender = Recorder()
    assert notif.deliver_pending(session, sender, keys=rt.keys).sent == 1
    assert [m.body for m in sender.sent] == [f"Votre lien : {link}"]
    assert row.sent_at is not None and row.body == notif.ERASED_BODY


def test_a_plain_body_stays_as_written_after_sending(session, rt):
    person = create_identity(session)
    row = notif.notify(session, person, "Sujet", "Corps")
    assert notif.deliver_pending(session, Recorder(), keys=rt.keys).sent == 1
    assert row.body == "Corps" and not notif.is_sealed(row)
