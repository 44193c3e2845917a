"""Password hashing and the rules a password must meet.

Hashes are Argon2id through pwdlib (a maintained library; argon2-cffi underneath), the algorithm
OWASP's Password Storage Cheat Sheet recommends first. A stored hash made with older parameters is
re-hashed on the next successful sign-in (`verify` returns the new hash).
"""

from __future__ import annotations

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from accounts.model import AccountError

MIN_LENGTH = 10  # NIST SP 800-63B §5.1.1.2 asks for at least 8; a control room can afford 10
MAX_LENGTH = 256

# The password `firewatch demo` gives its accounts. It is printed on the demo's console and in the
# README, so it is refused everywhere else.
DEMO_PASSWORD = "firewatch-demo"

# Passwords that ship with devices or appear at the top of breach lists (NIST SP 800-63B asks to
# refuse "commonly-used, expected, or compromised" values). Compared case-insensitively.
_REFUSED = frozenset(
    {
        DEMO_PASSWORD,
        "firewatch",
        "password",
        "password1",
        "password123",
        "passw0rd",
        "admin",
        "admin123",
        "admin@123",
        "administrator",
        "changeme",
        "changeit",
        "default",
        "letmein",
        "welcome",
        "welcome1",
        "qwerty",
        "qwertyuiop",
        "1q2w3e4r",
        "1qaz2wsx",
        "123456",
        "12345678",
        "123456789",
        "1234567890",
        "0123456789",
        "111111",
        "000000",
        "88888888",
        "66666666",
        "a123456",
        "abc123",
        "abcd1234",
        "root",
        "toor",
        "guest",
    }
)


class Passwords:
    """Argon2id hashing. The defaults are argon2-cffi's (RFC 9106's second recommended option:
    64 MiB, 3 passes, about 0.1 s here); tests may ask for cheaper parameters."""

    def __init__(self, *, time_cost: int | None = None, memory_cost: int | None = None) -> None:
        # both or neither: one tuned alone would silently keep the other at its default
        argon = (
            Argon2Hasher()
            if time_cost is None or memory_cost is None
            else Argon2Hasher(time_cost=time_cost, memory_cost=memory_cost)
        )
        self._hasher = PasswordHash((argon,))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password: str, stored: str) -> tuple[bool, str | None]:
        """Whether the password matches, and a fresh hash when the stored one should be upgraded
        (made with other parameters)."""
        try:
            return self._hasher.verify_and_update(password, stored)
        except Exception:  # an unreadable stored hash: treat as a mismatch, never as a match
            return False, None


def check_password(password: str, user: str) -> None:
    """Refuse a password that is short, known, or the user's own name (AccountError says which)."""
    if len(password) < MIN_LENGTH:
        raise AccountError(f"the password must have at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise AccountError(f"the password may have at most {MAX_LENGTH} characters")
    lowered = password.lower()
    if lowered in _REFUSED or lowered.strip("!.@#0123456789") in _REFUSED:
        raise AccountError("that password is a default or commonly used one: choose another")
    if user and user.lower() in lowered:
        raise AccountError("the password must not contain the user name")
