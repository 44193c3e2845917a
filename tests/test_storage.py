"""The state store's schema comes from Alembic migrations that match the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from storage.db import migrate, open_store
from storage.models import Base


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


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
