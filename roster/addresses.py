"""People's push addresses: Apprise URLs, checked when saved and shown masked where recorded."""

from __future__ import annotations

import apprise

MAX_ADDRESSES = 10


def unusable(url: str) -> bool:
    """True when Apprise cannot make a notification service of `url`."""
    return apprise.Apprise.instantiate(url) is None


def masked(url: str) -> str:
    """`url` as a record may show it: Apprise's privacy form (passwords and tokens elided), without
    its query string."""
    service = apprise.Apprise.instantiate(url)
    if service is None:
        return url.split(":", 1)[0] + "://…"
    return str(service.url(privacy=True)).split("?", 1)[0]  # type: ignore[no-untyped-call]
