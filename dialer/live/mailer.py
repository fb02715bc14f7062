"""Notification emails: the one module that talks to an SMTP server.

Off unless ``DIALER_SMTP_HOST`` is set.  Sending happens in a background
task (see ``dialer.services.notifications.NotificationDispatcher``), never
on a request's path; a failure raises :class:`MailFailed`, whose text
names the server's answer but never the credentials.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from email.message import EmailMessage

import aiosmtplib
from pydantic import SecretStr

log = logging.getLogger(__name__)


class MailFailed(Exception):
    """The SMTP server could not be reached or refused the message."""


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    username: str = ""
    # SecretStr: a repr or a log line of these settings shows "**********".
    password: SecretStr = field(default_factory=lambda: SecretStr(""))
    starttls: bool = False
    timeout: float = 10.0


class Mailer:
    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.sent = 0
        self.failures = 0

    async def send(self, to: str, subject: str, body: str) -> None:
        """Send one plain-text message; raises :class:`MailFailed`."""
        settings = self.settings
        message = EmailMessage()
        message["From"] = settings.sender
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        try:
            await aiosmtplib.send(
                message,
                hostname=settings.host,
                port=settings.port,
                username=settings.username or None,
                password=settings.password.get_secret_value() if settings.username else None,
                # True: STARTTLS required; False: plain (a local relay). Never
                # "opportunistic", which would silently fall back to plain text.
                start_tls=settings.starttls,
                timeout=settings.timeout,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            self.failures += 1
            # The exception's own text can echo the AUTH exchange on some
            # servers: only its type and SMTP code leave this module.
            code = getattr(error, "code", None)
            raise MailFailed(
                f"{type(error).__name__}{f' (SMTP {code})' if code else ''} "
                f"from {settings.host}:{settings.port}"
            ) from None
        self.sent += 1
