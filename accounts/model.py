"""Who is calling: the principal behind a bearer token, and the errors of signing in."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from core.domain import Role


class TokenKind(StrEnum):
    SESSION = "session"  # a person signed in with a password; expires after auth.session_ttl_s
    API_KEY = "api_key"  # an integration's long-lived key, issued by an admin


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: a person (via a login session) or an integration (via an API key)."""

    name: str  # the user name, or "key:<name>" for an API key
    roles: frozenset[Role]
    via: TokenKind
    token_id: int
    expires_at: float | None = None
    display_name: str = ""  # e.g. 保卫科 周九: what a signed form shows

    @property
    def signature(self) -> str:
        """How the person signs a form (签字): their display name, else their user name."""
        return self.display_name or self.name

    def may(self, needed: Iterable[str]) -> bool:
        """Holds one of the needed roles. Everyone may view; an admin may do everything."""
        wanted = set(needed)
        if not wanted or Role.VIEWER.value in wanted or Role.ADMIN in self.roles:
            return True
        return any(r.value in wanted for r in self.roles)

    @property
    def role_text(self) -> str:
        order = list(Role)
        return ",".join(r.value for r in sorted(self.roles, key=order.index))


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    display_name: str
    roles: list[Role]
    disabled: bool
    demo: bool
    created_at: float
    password_changed_at: float


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    id: int
    name: str
    roles: list[Role]
    hint: str
    created_at: float
    created_by: str
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None


@dataclass(frozen=True, slots=True)
class Issued:
    """A token just issued: the secret itself is shown this once and never stored."""

    token: str
    token_id: int
    expires_at: float | None


class AuthError(Exception):
    """Not signed in: no token, an unknown, expired or revoked one, or a wrong password (401)."""


class DemoAccountRefusedError(AuthError):
    """A demo account (published password) used outside demo mode (403)."""


class TooManyAttemptsError(AuthError):
    """Too many failed sign-ins from one address (for one account, or for all): wait (429)."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class AccountError(ValueError):
    """A request about accounts that cannot be honoured: a weak password, a duplicate name (422/409)."""


class AccountExistsError(AccountError):
    """The user name is taken (409)."""


class AccountNotFoundError(LookupError):
    """No such user or API key (404)."""
