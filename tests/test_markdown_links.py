"""The Markdown in the repository stands alone: a clone has nothing beside it.

Every relative link must name a file or folder inside the repository that exists, and no link or
quoted path may point outside it (`../shared/...` was such a pointer: it worked only on the
machine the docs were written on)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = {".git", ".venv", "build", "dist", "data", "node_modules"} | {
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
}
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
QUOTED_UP = re.compile(r"`(\.\./[^`\s]*)`")
EXTERNAL = ("http://", "https://", "mailto:", "tel:")


def markdown_files() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.md") if not SKIP.intersection(p.relative_to(ROOT).parts[:-1]))


def _inside(path: Path) -> bool:
    return path.resolve().is_relative_to(ROOT)


def test_the_repository_has_markdown_to_check() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in markdown_files()}
    assert {"README.md", "docs/api.md", "docs/simulators.md"} <= names


def test_every_relative_link_in_the_markdown_names_a_file_inside_the_repository_that_exists() -> None:
    problems = []
    for md in markdown_files():
        text = md.read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            for target in LINK.findall(line):
                if target.startswith(EXTERNAL) or target.startswith("#"):
                    continue
                path = (md.parent / target.split("#", 1)[0]).resolve()
                where = f"{md.relative_to(ROOT)}:{number}: {target}"
                if not _inside(path):
                    problems.append(f"{where} leaves the repository")
                elif not path.exists():
                    problems.append(f"{where} does not exist")
    assert problems == []


def test_no_markdown_quotes_a_path_outside_the_repository() -> None:
    problems = []
    for md in markdown_files():
        for number, line in enumerate(md.read_text(encoding="utf-8").splitlines(), 1):
            for quoted in QUOTED_UP.findall(line):
                if not _inside(md.parent / quoted):
                    problems.append(f"{md.relative_to(ROOT)}:{number}: {quoted}")
    assert problems == []
