"""The OpenAPI document: committed, current, and with stable operation ids."""

from __future__ import annotations

from pathlib import Path


def test_the_committed_openapi_document_is_the_one_the_api_serves() -> None:
    """docs/openapi.json is what clients and reviewers read: it must not go stale."""
    from api.app import openapi_text

    committed = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
    assert committed.read_text(encoding="utf-8") == openapi_text(), (
        "docs/openapi.json is stale: regenerate it with `firewatch openapi --out docs/openapi.json`"
    )


def test_every_operation_has_a_stable_unique_operation_id() -> None:
    from api.app import openapi_document

    ids = [op["operationId"] for path in openapi_document()["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))
    assert all(not i.endswith(("_get", "_post")) for i in ids)  # named, not FastAPI's generated ids


def test_the_roles_table_in_the_api_guide_is_current() -> None:
    """docs/api.md lists who may call each operation; it must say what the API enforces."""
    from api.app import roles_table

    guide = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text(encoding="utf-8")
    assert roles_table() in guide, (
        "the roles table in docs/api.md is stale: replace it with the output of `firewatch openapi --roles`"
    )
