"""Password hashing with argon2id (argon2-cffi's defaults follow RFC 9106), and the policy.

The policy is checked wherever a password is chosen (the organizer screens,
the command line, the demo) through :func:`hash_password`, and its one
maximum length also bounds what sign-in accepts, so a password that could be
set can always be typed back in.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn

from dialer.domain.i18n import _

_hasher = PasswordHasher()

MIN_PASSWORD_LENGTH = 10
# Long enough for any passphrase or password manager; bounded so sign-in
# never hashes megabytes.  Sign-in refuses longer ones unhashed, which is
# consistent only because no account can be given one.
MAX_PASSWORD_LENGTH = 1000
# zxcvbn's estimate: 3 is "safely unguessable" (about 10^10 guesses), which
# refuses dictionary words, keyboard walks, repeats and common passwords such
# as "password12".
MIN_STRENGTH_SCORE = 3
# zxcvbn's matching grows much faster than linearly with the length (about a
# second at 200 characters, minutes at 1,000): it judges this prefix.  A
# longer password is as strong as its prefix at least.
_STRENGTH_PREFIX = 72


class WeakPassword(ValueError):
    """The password breaks the policy; the message says why, in the current language."""


def check_password_policy(password: str, *, user_inputs: Iterable[str] = ()) -> None:
    """Raise :class:`WeakPassword` unless ``password`` may be chosen.

    ``user_inputs`` are words the password must not lean on (the username,
    the person's name).
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(
            _("A password needs at least %(count)s characters.", count=MIN_PASSWORD_LENGTH)
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(
            _("A password may have at most %(count)s characters.", count=MAX_PASSWORD_LENGTH)
        )
    estimate = zxcvbn(
        password[:_STRENGTH_PREFIX],
        user_inputs=[word for word in user_inputs if word],
        max_length=_STRENGTH_PREFIX,
    )
    if int(estimate["score"]) < MIN_STRENGTH_SCORE:
        raise WeakPassword(
            _(
                "This password is too common or too easy to guess; "
                "use a few unrelated words or a password manager."
            )
        )


def hash_password(password: str, *, user_inputs: Iterable[str] = ()) -> str:
    """Check the policy (raises :class:`WeakPassword`), then hash."""
    check_password_policy(password, user_inputs=user_inputs)
    return _hasher.hash(password)


def rehash_password(password: str) -> str:
    """A fresh hash of a password already in use (newer argon2 parameters).

    No policy check: the user just proved they know it, and an older, laxer
    policy must not lock them out at sign-in.
    """
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    # Longer than any password that could have been set: wrong, and not worth hashing.
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def generate_password() -> str:
    return secrets.token_urlsafe(12)
