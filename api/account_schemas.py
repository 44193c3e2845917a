"""Request and response bodies of sign-in, users, API keys and the audit trail."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StrictBool

from accounts.model import TokenKind
from accounts.service import NAME_RE
from core.domain import Role


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(_In):
    username: str = Field(min_length=1, max_length=64)
    password: SecretStr = Field(min_length=1, max_length=256)


class MeOut(BaseModel):
    name: str
    display_name: str = ""
    roles: list[Role]
    via: TokenKind
    expires_at: float | None = Field(description="epoch seconds; null for a key that never expires")


class LoginOut(BaseModel):
    token: str = Field(description="send as `Authorization: Bearer <token>`; shown only now")
    token_type: str = "bearer"
    expires_at: float
    user: MeOut


class PasswordChangeIn(_In):
    current: SecretStr = Field(min_length=1, max_length=256)
    new: SecretStr = Field(min_length=1, max_length=256)


class UserIn(_In):
    name: str = Field(pattern=NAME_RE, description="the sign-in name")
    display_name: str = Field(default="", max_length=100, description="e.g. 张伟 (消控室)")
    roles: list[Role] = Field(min_length=1, max_length=len(Role))
    password: SecretStr = Field(min_length=1, max_length=256)


class UserPatch(_In):
    display_name: str | None = Field(default=None, max_length=100)
    roles: list[Role] | None = Field(default=None, min_length=1, max_length=len(Role))
    disabled: StrictBool | None = Field(default=None, description="true ends the user's sessions at once")
    password: SecretStr | None = Field(default=None, min_length=1, max_length=256)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
    display_name: str
    roles: list[Role]
    disabled: bool
    demo: bool = Field(description="a demo account (published password): refused outside demo mode")
    created_at: float
    password_changed_at: float


class ApiKeyIn(_In):
    name: str = Field(pattern=NAME_RE, description="what integration holds it, e.g. bms-gateway")
    roles: list[Role] = Field(min_length=1, max_length=len(Role))
    expires_at: float | None = Field(default=None, ge=0, le=1e11, description="epoch seconds; null: never")


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    roles: list[Role]
    hint: str = Field(description="the key's first characters, to tell keys apart")
    created_at: float
    created_by: str
    expires_at: float | None
    last_used_at: float | None
    revoked_at: float | None


class ApiKeyIssuedOut(BaseModel):
    key: ApiKeyOut
    token: str = Field(description="the key itself: shown only now, store it in the integration")


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    ts: float
    actor: str
    role: str = Field(description="the actor's roles, comma-separated")
    action: str = Field(description="the operation, e.g. acknowledge_alarm")
    subject: str = Field(description="what it acted on: the request path, or e.g. maintenance:3")
    source: str = Field(description="the client's address")
    detail: dict[str, Any]
