"""Bearer tokens: 256 random bits, stored only as a SHA-256 digest.

A token is as strong as a key, so a fast digest is enough to keep the table useless to a reader
(no password-style slow hash is needed); the prefix tells a person what kind of secret they hold
and lets secret scanners recognise a leaked one.
"""

from __future__ import annotations

import hashlib
import secrets

from accounts.model import TokenKind

PREFIX = {TokenKind.SESSION: "fws_", TokenKind.API_KEY: "fwk_"}
HINT_LENGTH = 8  # "fwk_AbCd": enough to tell keys apart in a list, useless to an attacker


def new_token(kind: TokenKind) -> str:
    return PREFIX[kind] + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def hint(token: str) -> str:
    return token[:HINT_LENGTH]
