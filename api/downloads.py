"""What the API's file downloads share: the spreadsheet media type and a Content-Disposition that
carries a Chinese file name to every browser."""

from __future__ import annotations

from typing import Literal
from urllib.parse import quote

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def disposition(kind: Literal["inline", "attachment"], filename: str, fallback: str = "") -> str:
    """A Content-Disposition any browser reads: the UTF-8 name (RFC 6266, RFC 5987 `filename*`) and
    a plain ASCII one for those that read only `filename`.

    >>> disposition("inline", "报告-7.pdf", fallback="report-7.pdf")
    'inline; filename="report-7.pdf"; filename*=UTF-8\\'\\'%E6%8A%A5%E5%91%8A-7.pdf'
    """
    fallback = fallback or filename
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in fallback)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
