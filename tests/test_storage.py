"""The state store's schema comes from Alembic migrations that match the models."""

from __future__ import annotations

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from storage.db import migrate, open_store, retryable
from storage.models import Base, TicketRow

# Each store here is migrated from nothing (elsewhere a new store is a copy of a migrated one).
pytestmark = pytest.mark.fresh_migrations


def test_migrations_create_exactly_the_models_schema(store_url: str) -> None:
    engine, _ = open_store(store_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == [], f"models changed without a migration: {diff}"


def test_migrating_twice_is_harmless_and_keeps_the_partial_unique_indexes(store_url: str) -> None:
    engine, _ = open_store(store_url)
    migrate(engine)
    indexes = {ix["name"]: ix for ix in inspect(engine).get_indexes("alarms")}
    assert indexes["uq_alarms_open_key"]["unique"]
    tickets = {ix["name"]: ix for ix in inspect(engine).get_indexes("tickets")}
    assert tickets["uq_tickets_open_key"]["unique"]
    engine.dispose()


def _open_ticket(device_id: str | None, subject: str | None) -> TicketRow:
    return TicketRow(
        number=f"YH-{uuid.uuid4().hex[:8]}",
        source="alarm",
        status="open",
        category="fault",
        hazard_type="device.fault",
        device_id=device_id,
        subject=subject,
        site="s1",
        place="s1",
        inspection_time=0.0,
        problem="x",
        deadline=1.0,
        created_at=0.0,
        updated_at=0.0,
    )


@pytest.mark.parametrize(("device_id", "subject"), [("smk-1", None), (None, "plan:pump-test:s1")])
def test_a_second_open_ticket_of_one_key_is_refused_and_recognised_as_a_lost_race(
    store_url: str, device_id: str | None, subject: str | None
) -> None:
    """Any writer (the alarm path opening a ticket, a person reporting one) that loses the race on a
    key retries its whole transaction: the database's refusal must be recognised as such, whatever
    words the database uses for it."""
    engine, sessions = open_store(store_url)
    with sessions.begin() as s:
        s.add(_open_ticket(device_id, subject))
    with pytest.raises(IntegrityError) as refused, sessions.begin() as s:
        s.add(_open_ticket(device_id, subject))
    assert retryable(refused.value)
    engine.dispose()
