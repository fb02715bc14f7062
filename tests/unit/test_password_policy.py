"""The password policy (dialer/domain/passwords.py): one minimum, one maximum,
and no password an attacker would try early."""

from __future__ import annotations

import secrets
import time

import pytest

from dialer.domain.passwords import (
    MAX_PASSWORD_LENGTH,
    WeakPassword,
    check_password_policy,
    generate_password,
    hash_password,
    rehash_password,
    verify_password,
)


@pytest.mark.parametrize(
    "password",
    [
        "aaaaaaaaaa",
        "password12",
        "1234567890",
        "qwertyuiop",
        "iloveyou2024",
        "Password123!",
        "a" * 500,
        "password12" * 20,
    ],
)
def test_common_and_guessable_passwords_are_refused(password: str) -> None:
    with pytest.raises(WeakPassword, match="too common or too easy to guess"):
        check_password_policy(password)


def test_a_password_may_not_lean_on_the_username() -> None:
    check_password_policy("olivia-phonebank")
    with pytest.raises(WeakPassword):
        check_password_policy("olivia-phonebank", user_inputs=["olivia-phonebank"])


@pytest.mark.parametrize(
    "password", ["correct horse battery staple", "volunteer-demo", "Zq9-xK2!pLm4"]
)
def test_strong_passwords_pass(password: str) -> None:
    check_password_policy(password)


def test_generated_passwords_always_pass() -> None:
    for _ in range(50):
        check_password_policy(generate_password())


def test_one_minimum_and_one_maximum() -> None:
    with pytest.raises(WeakPassword, match="at least 10 characters"):
        check_password_policy("Zq9-xK2!p")
    longest = secrets.token_urlsafe(MAX_PASSWORD_LENGTH)[:MAX_PASSWORD_LENGTH]
    started = time.monotonic()
    check_password_policy(longest)
    # The strength estimate reads a bounded prefix: the longest costs no more.
    assert time.monotonic() - started < 1
    with pytest.raises(WeakPassword, match=f"at most {MAX_PASSWORD_LENGTH} characters"):
        hash_password(longest + "x")


def test_verify_refuses_what_no_account_can_have_without_hashing() -> None:
    longest = secrets.token_urlsafe(MAX_PASSWORD_LENGTH)[:MAX_PASSWORD_LENGTH]
    stored = hash_password(longest)
    assert verify_password(stored, longest)
    assert not verify_password(stored, longest + "x")
    assert not verify_password(stored, longest[:-1])


def test_a_rehash_at_sign_in_ignores_a_newer_policy() -> None:
    # Set before the policy tightened; its owner must still get in.
    stored = rehash_password("password12")
    assert verify_password(stored, "password12")
