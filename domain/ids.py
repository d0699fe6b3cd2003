"""Deterministic aggregate ids: a retried message lands on the same aggregate."""

from functools import lru_cache
from uuid import UUID, uuid5

NAMESPACE = UUID("5b0f7a52-7d0c-4c55-9d7e-2f1e0c3a9b11")


# Cached: every message of a station names it (hashing its id each time was a twentieth of the
# writer's CPU), and a batch names its aggregates twice, to read them ahead and to run.
@lru_cache(maxsize=65536)
def station_uuid(station_id: str) -> UUID:
    return uuid5(NAMESPACE, f"station:{station_id}")


@lru_cache(maxsize=65536)
def transaction_uuid(station_id: str, transaction_key: str) -> UUID:
    return uuid5(NAMESPACE, f"transaction:{station_id}:{transaction_key}")


@lru_cache(maxsize=4096)  # asked for twice in one batch, then rarely again
def transaction_start_uuid(station_id: str, fingerprint: str) -> UUID:
    return uuid5(NAMESPACE, f"transaction-start:{station_id}:{fingerprint}")


@lru_cache(maxsize=65536)
def id_token_uuid(id_token: str) -> UUID:
    return uuid5(NAMESPACE, f"id-token:{id_token}")
