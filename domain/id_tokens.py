"""Id tokens (RFID cards, app ids, contract ids) and the decision on one presented at a station."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from eventsourcing.domain import Aggregate

from domain.ids import id_token_uuid


class TokenStatus(StrEnum):
    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    UNKNOWN = "Unknown"  # not registered, and the policy refuses unknown tokens


class IdToken(Aggregate):
    """A token an operator registered; its value is unique whatever its type."""

    class Registered(Aggregate.Created):
        id_token: str
        token_type: str | None
        parent_id_token: str | None  # 1.6 parentIdTag
        group_id_token: str | None  # 2.x groupIdToken
        expires_at: datetime | None
        registered_by: str

    class Blocked(Aggregate.Event):
        by: str

        def apply(self, token: IdToken) -> None:
            token.blocked = True

    class Unblocked(Aggregate.Event):
        by: str

        def apply(self, token: IdToken) -> None:
            token.blocked = False

    class ExpirySet(Aggregate.Event):
        expires_at: datetime | None
        by: str

        def apply(self, token: IdToken) -> None:
            token.expires_at = self.expires_at

    def __init__(
        self,
        id_token: str,
        token_type: str | None,
        parent_id_token: str | None,
        group_id_token: str | None,
        expires_at: datetime | None,
        registered_by: str,
    ) -> None:
        self.id_token = id_token
        self.token_type = token_type
        self.parent_id_token = parent_id_token
        self.group_id_token = group_id_token
        self.expires_at = expires_at
        self.registered_by = registered_by
        self.blocked = False

    @classmethod
    def register(
        cls,
        id_token: str,
        token_type: str | None,
        parent_id_token: str | None,
        group_id_token: str | None,
        expires_at: datetime | None,
        registered_by: str,
        at: datetime,
    ) -> IdToken:
        return cls._create(
            cls.Registered,
            id=id_token_uuid(id_token),
            timestamp=at,
            id_token=id_token,
            token_type=token_type,
            parent_id_token=parent_id_token,
            group_id_token=group_id_token,
            expires_at=expires_at,
            registered_by=registered_by,
        )

    def status_at(self, at: datetime) -> TokenStatus:
        if self.blocked:
            return TokenStatus.BLOCKED
        if self.expires_at is not None and self.expires_at <= at:
            return TokenStatus.EXPIRED
        return TokenStatus.ACCEPTED


@dataclass(frozen=True)
class TokenDecision:
    status: TokenStatus
    parent_id_token: str | None = None
    group_id_token: str | None = None
    expires_at: datetime | None = None
