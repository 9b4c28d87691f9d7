"""The administrator's routes: API keys (shown once) and users."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from signet.portal.accounts.models import ApiKey, Role
from signet.portal.accounts.service import DEFAULT_SCOPES, PortalScope
from signet.portal.envelopes.contracts import Email, PlainText
from signet.portal.http.deps import PortalDep, PrincipalDep

router = APIRouter(prefix="/api/v1", tags=["admin"])


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: PlainText
    scopes: list[PortalScope] = Field(default_factory=lambda: sorted(DEFAULT_SCOPES))
    #: the user the key acts for (default: the caller)
    user_id: str | None = Field(default=None, pattern=r"^[0-9a-f-]{36}$")


class KeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    user_id: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls(
            id=key.id, name=key.name, prefix=key.prefix, scopes=key.scopes, user_id=key.user_id,
            created_at=key.created_at, last_used_at=key.last_used_at, revoked_at=key.revoked_at,
        )  # fmt: skip


class NewKeyOut(BaseModel):
    id: str
    name: str
    scopes: list[str]
    #: the key: shown this once, never again (the portal keeps only its hash)
    key: str


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: Email
    name: PlainText
    role: Role = Role.SENDER


class UserOut(BaseModel):
    id: str
    email: str
    name: str
    role: str


@router.post("/keys", status_code=201, response_model=NewKeyOut)
async def create_key(portal: PortalDep, principal: PrincipalDep, body: KeyIn) -> NewKeyOut:
    made = await run_in_threadpool(
        lambda: portal.accounts.create_key(principal, body.name, body.scopes, user_id=body.user_id)
    )
    return NewKeyOut(id=made.id, name=made.name, scopes=sorted(made.scopes), key=made.secret)


@router.get("/keys", response_model=list[KeyOut])
async def list_keys(portal: PortalDep, principal: PrincipalDep) -> list[KeyOut]:
    return [KeyOut.of(k) for k in await run_in_threadpool(portal.accounts.list_keys, principal)]


@router.post("/keys/{key_id}/revoke", response_model=KeyOut)
async def revoke_key(portal: PortalDep, principal: PrincipalDep, key_id: str) -> KeyOut:
    return KeyOut.of(await run_in_threadpool(portal.accounts.revoke_key, principal, key_id))


@router.post("/users", status_code=201, response_model=UserOut)
async def add_user(portal: PortalDep, principal: PrincipalDep, body: UserIn) -> UserOut:
    user = await run_in_threadpool(
        portal.accounts.add_user, principal, body.email, body.name, body.role
    )
    return UserOut(id=user.id, email=user.email, name=user.name, role=user.role)
