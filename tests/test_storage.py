"""The state store's schema comes from Alembic migrations that match the models."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from storage.db import migrate, open_store
from storage.models import Base


def test_migrations_create_exactly_the_models_schema(tmp_path: Path) -> None:
    engine, _ = open_store(f"sqlite:///{tmp_path / 'state.sqlite'}")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models changed without a migration: {diff}"


def test_migrating_twice_is_harmless_and_keeps_the_partial_unique_indexes(tmp_path: Path) -> None:
    engine, _ = open_store(f"sqlite:///{tmp_path / 'state.sqlite'}")
    migrate(engine)
    indexes = {ix["name"]: ix for ix in inspect(engine).get_indexes("alarms")}
    assert indexes["uq_alarms_open_key"]["unique"]
    tickets = {ix["name"]: ix for ix in inspect(engine).get_indexes("tickets")}
    assert tickets["uq_tickets_open_key"]["unique"]
