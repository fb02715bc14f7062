"""Notification emails are off by default, and the SMTP password never shows."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from dialer.runtime.bootstrap import mailer
from dialer.runtime.settings import Settings


def test_email_is_off_without_an_smtp_host() -> None:
    assert mailer(Settings(_env_file=None)) is None


def test_smtp_settings_build_a_mailer_that_hides_its_password() -> None:
    settings = Settings(
        _env_file=None,
        smtp_host="smtp.example.org",
        smtp_port=2525,
        smtp_username="dialer",
        smtp_password=SecretStr("s3cret-smtp-password"),
        smtp_from="Phone bank <phonebank@example.org>",
    )
    built = mailer(settings)
    assert built is not None
    assert built.settings.port == 2525 and built.settings.starttls is True
    assert "s3cret-smtp-password" not in repr(settings)
    assert "s3cret-smtp-password" not in repr(built.settings)


def test_a_from_address_on_several_lines_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, smtp_from="a@example.org\r\nBcc: x@example.org")
