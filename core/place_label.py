"""A place's names along its path, each said once.

A registry often names a zone or a room with its floor in it (`1F 门诊大厅` on floor `1F`, room
`1F诊室01`): joined as they are, a label reads `门诊医技楼 1F 1F 门诊大厅`. Each name here drops what
an enclosing place's name already said at its start, so it reads `门诊医技楼 1F 门诊大厅`; a name
left with nothing of its own (a room named like its zone) is left out.
"""

from __future__ import annotations


def said_once(names: list[str]) -> list[str]:
    """The names of a path from the outside in, each without a leading enclosing name."""
    out: list[str] = []
    for name in names:
        rest = name.strip()
        stripped = True
        while stripped:  # `2F 西区病区走廊` under `2F` and `西区病区`: both go
            stripped = False
            for outer in out:
                if rest.startswith(outer):
                    rest, stripped = rest[len(outer) :].lstrip(" ·-/"), True
        if rest:
            out.append(rest)
    return out
