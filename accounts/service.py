"""Accounts in the state store: users, sign-in, bearer tokens, API keys.

Sessions follow the user: disabling a user or changing their roles takes effect on their next
request (within `CACHE_S`). Token expiry uses the wall clock, never the simulation clock.
"""

from __future__ import annotations

import contextlib
import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from accounts import passwords, tokens
from accounts.model import (
    AccountError,
    AccountExistsError,
    AccountNotFoundError,
    ApiKeyInfo,
    AuthError,
    DemoAccountRefusedError,
    Issued,
    Principal,
    TokenKind,
    TooManyAttemptsError,
    UserInfo,
)
from accounts.shared_throttle import SharedSignInThrottle
from accounts.throttle import SignInThrottle
from core.domain import Role
from storage.db import IMMEDIATE
from storage.models import TokenRow, UserRow

CACHE_S = 5.0  # a resolved token is trusted this long before the store is asked again
CACHE_MAX = 10_000  # cached tokens at most (the live ones of a large site fit many times over)
TOUCH_S = 60.0  # last_used_at is written at most this often per token (no write per request)
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"

# The demo's accounts, one per role, all with passwords.DEMO_PASSWORD.
DEMO_ACCOUNTS: dict[str, tuple[str, Role]] = {
    "viewer": ("值班查看 Viewer", Role.VIEWER),
    "operator": ("消控室值班员 Operator", Role.OPERATOR),
    "maintenance": ("维保人员 Maintenance", Role.MAINTENANCE),
    "safety": ("保卫科 Safety office", Role.SAFETY),
    "leader": ("分管领导 Leader", Role.LEADER),
    "admin": ("系统管理员 Admin", Role.ADMIN),
}


@dataclass(frozen=True, slots=True)
class _Cached:
    principal: Principal
    checked: float


class AccountService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        session_ttl_s: float = 12 * 3600.0,
        demo_mode: bool = False,
        max_failures: int = 5,
        max_failures_per_address: int = 50,
        lockout_s: float = 60.0,
        lockout_max_s: float = 900.0,
        clock: Callable[[], float] = time.time,
        hasher: passwords.Passwords | None = None,
        clustered: bool = False,
    ) -> None:
        """`clustered`: several workers share this store (docs/scale.md), and count failed
        sign-ins together in it (accounts/shared_throttle.py); otherwise in this process's memory."""
        self.sessions = sessions
        self.passwords = hasher or passwords.Passwords()
        self.session_ttl_s = session_ttl_s
        self.demo_mode = demo_mode
        self.clock = clock
        local = SignInThrottle(
            per_account=max_failures,
            per_address=max_failures_per_address,
            first_wait_s=lockout_s,
            max_wait_s=lockout_max_s,
        )
        self.throttle: SignInThrottle | SharedSignInThrottle = (
            SharedSignInThrottle(sessions, local) if clustered else local
        )
        self._cache: dict[str, _Cached] = {}

    # -- users -----------------------------------------------------------------------------------

    def create_user(
        self,
        name: str,
        password: str,
        roles: Iterable[Role],
        *,
        display_name: str = "",
        demo: bool = False,
    ) -> UserInfo:
        roles = _roles(roles)
        if not re.fullmatch(NAME_RE, name):
            raise AccountError(
                f"user name {name!r}: use letters, digits and . _ @ - (at most 64); "
                "put the person's full name in display_name"
            )
        if not demo:
            passwords.check_password(password, name)
        now = self.clock()
        with self._writing() as s:
            if s.get(UserRow, name) is not None:
                raise AccountExistsError(f"user {name!r} already exists")
            row = UserRow(
                name=name,
                display_name=display_name,
                roles=[r.value for r in roles],
                password_hash=self.passwords.hash(password),
                disabled=False,
                demo=demo,
                created_at=now,
                password_changed_at=now,
            )
            s.add(row)
            s.flush()
            return _user_info(row)

    def get_user(self, name: str) -> UserInfo:
        with self.sessions() as s:
            return _user_info(self._user(s, name))

    def list_users(self) -> list[UserInfo]:
        with self.sessions() as s:
            return [_user_info(u) for u in s.scalars(select(UserRow).order_by(UserRow.name))]

    def update_user(
        self,
        name: str,
        *,
        roles: Iterable[Role] | None = None,
        display_name: str | None = None,
        disabled: bool | None = None,
    ) -> UserInfo:
        with self._writing() as s:
            row = self._user(s, name)
            if roles is not None:
                row.roles = [r.value for r in _roles(roles)]
            if display_name is not None:
                row.display_name = display_name
            if disabled is not None:
                row.disabled = disabled
                if disabled:
                    self._revoke_sessions(s, name)
            info = _user_info(row)
        self._forget(user=name)
        return info

    def set_password(self, name: str, password: str) -> None:
        """A new password (checked); the account stops being a demo account; other sessions end."""
        passwords.check_password(password, name)
        with self._writing() as s:
            row = self._user(s, name)
            row.password_hash = self.passwords.hash(password)
            row.password_changed_at = self.clock()
            row.demo = False
            self._revoke_sessions(s, name)
        self._forget(user=name)

    def change_own_password(self, name: str, current: str, new: str) -> None:
        with self.sessions() as s:
            row = self._user(s, name)
            ok, _ = self.passwords.verify(current, row.password_hash)
        if not ok:
            raise AccountError("the current password is wrong")
        self.set_password(name, new)

    def ensure_demo_accounts(self) -> list[str]:
        """Create the demo's accounts that do not exist yet; returns the names created."""
        created = []
        with self.sessions() as s:
            existing = set(s.scalars(select(UserRow.name)))
        for name, (display, role) in DEMO_ACCOUNTS.items():
            if name not in existing:
                self.create_user(name, passwords.DEMO_PASSWORD, [role], display_name=display, demo=True)
                created.append(name)
        return created

    def demo_accounts(self) -> list[str]:
        with self.sessions() as s:
            return list(s.scalars(select(UserRow.name).where(UserRow.demo.is_(True)).order_by(UserRow.name)))

    def has_users(self) -> bool:
        with self.sessions() as s:
            return s.scalar(select(UserRow.name).limit(1)) is not None

    # -- sign-in and tokens ----------------------------------------------------------------------

    def login(self, name: str, password: str, address: str = "") -> tuple[Issued, Principal]:
        """A session token for a right password. The error never says whether the user exists.
        `address` is the client's: failures are throttled per (name, address) and per address
        (accounts/throttle.py), so a guesser elsewhere cannot lock this person out."""
        now = self.clock()
        roles, display, upgraded = self._check_password(name, password, address, now)
        token = tokens.new_token(TokenKind.SESSION)
        expires = now + self.session_ttl_s
        with self._writing() as s:
            if upgraded is not None:
                s.execute(update(UserRow).where(UserRow.name == name).values(password_hash=upgraded))
            row_t = TokenRow(
                digest=tokens.digest(token),
                kind=TokenKind.SESSION.value,
                user=name,
                name="login",
                roles=[],
                hint=tokens.hint(token),
                created_at=now,
                created_by=name,
                expires_at=expires,
                last_used_at=now,
            )
            s.add(row_t)
            s.flush()
            token_id = row_t.id
        principal = Principal(name, roles, TokenKind.SESSION, token_id, expires, display)
        return Issued(token, token_id, expires), principal

    def check_credentials(self, name: str, password: str, address: str = "") -> Principal:
        """Who signs with this user name and password, without signing them in (no token): a person
        countersigning at someone else's screen (a handover). Throttled and refused exactly as
        `login` is; the principal's token id is 0 (there is no token)."""
        roles, display, _ = self._check_password(name, password, address, self.clock())
        return Principal(name, roles, TokenKind.SESSION, 0, None, display)

    def _check_password(
        self, name: str, password: str, address: str, now: float
    ) -> tuple[frozenset[Role], str, str | None]:
        """The user's roles, display name and upgraded hash (if the hash needs upgrading) for a
        right password; raises as `login` documents."""
        refusal = self.throttle.begin(name, address, now)
        if refusal is not None:
            raise TooManyAttemptsError(refusal.reason, retry_after_s=refusal.retry_after_s)
        with self.sessions() as s:
            row = s.get(UserRow, name)
            stored = row.password_hash if row is not None else self._dummy_hash
            ok, upgraded = self.passwords.verify(password, stored)
            if row is None or not ok or row.disabled:
                raise AuthError("wrong user name or password, or the account is disabled")
            if row.demo and not self.demo_mode:
                raise DemoAccountRefusedError(
                    f"{name!r} is a demo account with the published demo password, refused outside "
                    f"demo mode: set a password with `firewatch users passwd {name}`"
                )
            roles = _roles(Role(r) for r in row.roles)
            display = row.display_name
        self.throttle.succeeded(name, address)
        return roles, display, upgraded

    def resolve(self, token: str) -> Principal:
        """The principal behind a bearer token, or AuthError saying why not."""
        key = tokens.digest(token)
        now = self.clock()
        cached = self._cache.get(key)
        if cached is not None and now - cached.checked < CACHE_S:
            p = cached.principal
            if p.expires_at is not None and now >= p.expires_at:
                raise AuthError("the token has expired: sign in again")
            return p
        try:
            principal, stale = self._look_up(key, now)
        except (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError):
            # The state store is down: a token this process has already seen keeps working (the
            # control room must keep its board while the store is out, docs/reliability.md).
            # Revocations made before the outage are known to it; none can be made during it.
            if cached is not None and (
                cached.principal.expires_at is None or now < cached.principal.expires_at
            ):
                return cached.principal
            raise
        if stale:
            with self._writing() as s:
                s.execute(update(TokenRow).where(TokenRow.id == principal.token_id).values(last_used_at=now))
        if len(self._cache) >= CACHE_MAX:  # forget stale entries rather than grow without bound
            self._cache = {k: c for k, c in self._cache.items() if now - c.checked < CACHE_S}
        self._cache[key] = _Cached(principal, now)
        return principal

    def _look_up(self, key: str, now: float) -> tuple[Principal, bool]:
        """The principal of a token digest from the store, and whether its last use is worth noting."""
        with self.sessions() as s:
            row = s.scalar(select(TokenRow).where(TokenRow.digest == key))
            if row is None:
                raise AuthError("unknown token: sign in again, or ask an admin for an API key")
            if row.revoked_at is not None:
                raise AuthError("the token was revoked: sign in again")
            if row.expires_at is not None and now >= row.expires_at:
                raise AuthError("the token has expired: sign in again")
            if row.kind == TokenKind.SESSION.value:
                user = s.get(UserRow, row.user) if row.user else None
                if user is None or user.disabled:
                    raise AuthError("the account is disabled")
                if user.demo and not self.demo_mode:
                    raise DemoAccountRefusedError("demo accounts are refused outside demo mode")
                principal = Principal(
                    user.name,
                    _roles(Role(r) for r in user.roles),
                    TokenKind.SESSION,
                    row.id,
                    row.expires_at,
                    user.display_name,
                )
            else:
                principal = Principal(
                    f"key:{row.name}",
                    _roles(Role(r) for r in row.roles),
                    TokenKind.API_KEY,
                    row.id,
                    row.expires_at,
                )
            stale = row.last_used_at is None or now - row.last_used_at >= TOUCH_S
        return principal, stale

    def logout(self, token_id: int) -> None:
        self._revoke(token_id)

    def create_api_key(
        self, name: str, roles: Iterable[Role], *, by: str, expires_at: float | None = None
    ) -> tuple[Issued, ApiKeyInfo]:
        roles = _roles(roles)
        token = tokens.new_token(TokenKind.API_KEY)
        now = self.clock()
        if expires_at is not None and expires_at <= now:
            raise AccountError("expires_at is in the past")
        with self._writing() as s:
            taken = s.scalar(
                select(TokenRow.id).where(
                    TokenRow.kind == TokenKind.API_KEY.value,
                    TokenRow.name == name,
                    TokenRow.revoked_at.is_(None),
                )
            )
            if taken is not None:
                raise AccountExistsError(f"an API key named {name!r} exists: revoke it first")
            row = TokenRow(
                digest=tokens.digest(token),
                kind=TokenKind.API_KEY.value,
                user=None,
                name=name,
                roles=[r.value for r in roles],
                hint=tokens.hint(token),
                created_at=now,
                created_by=by,
                expires_at=expires_at,
            )
            s.add(row)
            s.flush()
            return Issued(token, row.id, expires_at), _key_info(row)

    def list_api_keys(self, *, include_revoked: bool = False) -> list[ApiKeyInfo]:
        with self.sessions() as s:
            q = select(TokenRow).where(TokenRow.kind == TokenKind.API_KEY.value)
            if not include_revoked:
                q = q.where(TokenRow.revoked_at.is_(None))
            return [_key_info(r) for r in s.scalars(q.order_by(TokenRow.id))]

    def revoke_api_key(self, key_id: int) -> ApiKeyInfo:
        with self.sessions() as s:
            row = s.get(TokenRow, key_id)
            if row is None or row.kind != TokenKind.API_KEY.value:
                raise AccountNotFoundError(f"API key {key_id} does not exist")
        self._revoke(key_id)
        with self.sessions() as s:
            row = s.get(TokenRow, key_id)
            assert row is not None
            return _key_info(row)

    # -- internals -------------------------------------------------------------------------------

    @functools.cached_property
    def _dummy_hash(self) -> str:
        """Verifying against a real hash when the user does not exist keeps both answers equally
        slow, so response time does not tell which user names exist. Made at the first sign-in,
        not at start-up (a hash costs about 0.1 s)."""
        return self.passwords.hash("no-such-user-placeholder-password")

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Session]:
        """A write transaction that takes SQLite's write lock at BEGIN (waiting up to the busy
        timeout behind the pipeline) instead of failing at once when a read turns into a write."""
        with self.sessions.begin() as s:
            s.connection(execution_options=IMMEDIATE)
            yield s

    def _user(self, s: Session, name: str) -> UserRow:
        row = s.get(UserRow, name)
        if row is None:
            raise AccountNotFoundError(f"user {name!r} does not exist")
        return row

    def _revoke(self, token_id: int) -> None:
        with self._writing() as s:
            s.execute(
                update(TokenRow)
                .where(TokenRow.id == token_id, TokenRow.revoked_at.is_(None))
                .values(revoked_at=self.clock())
            )
        self._forget(token_id=token_id)

    def _revoke_sessions(self, s: Session, user: str) -> None:
        s.execute(
            update(TokenRow)
            .where(TokenRow.user == user, TokenRow.revoked_at.is_(None))
            .values(revoked_at=self.clock())
        )

    def _forget(self, *, user: str | None = None, token_id: int | None = None) -> None:
        """Drop cached principals so a revocation or a role change applies on the next request."""
        for key, cached in list(self._cache.items()):
            p = cached.principal
            if (user is not None and p.name == user and p.via is TokenKind.SESSION) or p.token_id == token_id:
                self._cache.pop(key, None)


def _roles(roles: Iterable[Role]) -> frozenset[Role]:
    out = frozenset(roles)
    if not out:
        raise AccountError("give at least one role")
    return out


def _user_info(row: UserRow) -> UserInfo:
    order = list(Role)
    return UserInfo(
        name=row.name,
        display_name=row.display_name,
        roles=sorted((Role(r) for r in row.roles), key=order.index),
        disabled=row.disabled,
        demo=row.demo,
        created_at=row.created_at,
        password_changed_at=row.password_changed_at,
    )


def _key_info(row: TokenRow) -> ApiKeyInfo:
    order = list(Role)
    return ApiKeyInfo(
        id=row.id,
        name=row.name,
        roles=sorted((Role(r) for r in row.roles), key=order.index),
        hint=row.hint,
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )
