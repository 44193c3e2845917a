"""Registry documents for the registry tests: the reference registry pydantic makes of a document,
and the document written as a registry file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from core.registry import Registry, RegistryFile


def validated(doc: dict[str, Any]) -> Registry:
    """The registry as pydantic validates the document, a model per place and device (the
    reference the columns are checked against)."""
    spec = RegistryFile.model_validate(doc)
    return Registry(spec.sites, spec.devices)


def written(tmp_path: Path, doc: dict[str, Any], suffix: str) -> Path:
    path = tmp_path / f"registry{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path
