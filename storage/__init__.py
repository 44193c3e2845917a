"""Persistence: the SQL state store (SQLAlchemy + Alembic) and the local telemetry store."""
