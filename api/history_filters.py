"""What the history search (历史查询) adds to the alarm and incident lists: a place that covers its
subtree, words found in the notes and details, and an order by time instead of the board's order."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import Query
from sqlalchemy import ColumnElement, or_

TEXT_MAX = 200


class TimeOrder(StrEnum):
    """A list in time order for looking back (the board's order puts the worst first instead)."""

    NEWEST = "newest"  # latest first alarm first
    OLDEST = "oldest"


Text = Annotated[
    str | None,
    Query(min_length=1, max_length=TEXT_MAX, description="words in the notes or the detail (any case)"),
]
PlacePath = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=400,
        description="a place path (site/building/floor/zone[/room]): at it or under it",
    ),
]
Order = Annotated[
    TimeOrder | None,
    Query(description="newest or oldest first by the first alarm's time; default: the board's order"),
]


def in_subtree(column: Any, place: str) -> ColumnElement[bool]:
    """`column` names `place` or a place below it (a place covers its subtree)."""
    path = place.strip("/")
    return or_(column == path, column.startswith(path + "/", autoescape=True))


def mentions(text: str, *columns: Any) -> ColumnElement[bool]:
    """Any of `columns` holds `text`, ignoring case; LIKE's wildcards in `text` are taken literally."""
    return or_(*(c.icontains(text, autoescape=True) for c in columns))
