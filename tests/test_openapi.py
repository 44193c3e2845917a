"""The OpenAPI document: committed, current, and with stable operation ids."""

from __future__ import annotations

from pathlib import Path

from api.app import create_app


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


def test_apps_made_from_the_same_routes_share_one_document_but_each_caller_gets_its_own_copy() -> None:
    first, second = create_app(None), create_app(None)
    document = first.openapi()
    assert second.openapi() == document
    document["paths"].clear()  # a caller's copy is its own
    assert first.openapi()["paths"]


def test_an_app_with_other_routes_gets_its_own_document() -> None:
    plain, extended = create_app(None), create_app(None)

    @extended.get("/api/v1/extra", operation_id="extra")
    def extra() -> dict[str, int]:
        return {"n": 1}

    assert "/api/v1/extra" in extended.openapi()["paths"]
    assert "/api/v1/extra" not in plain.openapi()["paths"]
