"""A duty route that reaches the people on duty (docs/duty.md): the roster decides at send time.

A push addressed to duty roles (the escalation policy's `targets`) goes to the push addresses of
the people on duty in those of the route's roles at the moment it is sent, so a reminder after a
shift change reaches the next shift. Safety first: a role with nobody on duty (a gap in the roster,
or nobody on duty with an address), or a roster that cannot be read, sends the push to the route's
fixed `url` instead, and says so in the log, the `fw_push_roster_gaps` counter and the delivery's
record. With no `url` either, the push fails and stays owed: retried with backoff until someone is
on duty, never dropped into silence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import apprise

from alarms.labels import duty_role_zh
from core.settings import PushRoute
from firewatch.dispatch import DeliveryError, DeliveryNote
from roster.addresses import masked
from roster.service import OnDuty, RosterService

logger = logging.getLogger(__name__)

FALLBACK_ZH = "路由固定地址"


@dataclass(frozen=True)
class _Send:
    url: str
    recipient: dict[str, Any]


def addressed_roles(route: PushRoute, payload: dict[str, Any]) -> list[str]:
    """The route's roles this push is addressed to (an incident step's or a transition's targets),
    in the route's order; all of the route's roles when the payload names none."""
    message = payload.get("incident") or payload.get("transition") or {}
    targets = set(message.get("targets") or ())
    chosen = [r for r in route.roles if r in targets]
    return chosen or list(route.roles)


class RosterChannel:
    def __init__(
        self,
        route: PushRoute,
        roster: RosterService,
        *,
        timeout_s: float = 10.0,
        on_gap: Callable[[str, str], None] | None = None,
    ) -> None:
        self.route = route
        self.roster = roster
        self.timeout_s = timeout_s
        self.on_gap = on_gap
        self.gaps = 0  # pushes (per role) that found nobody on duty

    def deliver(self, payload: dict[str, Any]) -> DeliveryNote:
        roles = addressed_roles(self.route, payload)
        try:
            people = self.roster.on_duty(roles)
            unread = ""
        except Exception as exc:  # the store is failing: the fallback url, never silence
            people, unread = [], f"{type(exc).__name__}: {exc}"
            logger.error("route %r: the roster could not be read: %s", self.route.name, unread)
        sends = [
            _Send(a, {"role": p.role, "user": p.user, "name": p.name, "address": masked(a)})
            for p in people
            for a in p.addresses
        ]
        reached = {s.recipient["role"] for s in sends}
        missing = [r for r in roles if r not in reached]
        for role in missing:
            self.gaps += 1
            if self.on_gap is not None:
                self.on_gap(self.route.name, role)
            logger.warning(
                "route %r: nobody on duty with a push address in role %r; %s",
                self.route.name,
                role,
                "sent to the route's url" if self.route.url else "no url to fall back on: kept owed",
            )
        if missing and self.route.url is not None:
            sends.append(
                _Send(
                    self.route.url,
                    {
                        "role": ",".join(missing),
                        "user": None,
                        "name": FALLBACK_ZH,
                        "address": masked(self.route.url),
                        "fallback": True,
                    },
                )
            )
        gap_text = "、".join(duty_role_zh(r) for r in missing)
        if not sends:
            why = f" (the roster could not be read: {unread})" if unread else ""
            raise DeliveryError(
                f"route {self.route.name!r}: nobody on duty in {', '.join(missing)} and no url to fall "
                f"back on; kept until someone is on duty{why}"
            )
        named = _names(people, reached)
        body = str(payload["body"])
        if named:
            body += f"\n值班人员：{named}"
        if missing:
            body += f"\n注意：{gap_text}当前无人值班，已发往{FALLBACK_ZH}"
        failed = self._notify(str(payload["title"]), body, sends)
        if len(failed) == len(sends):
            raise DeliveryError(f"route {self.route.name!r}: no address on duty accepted the push")
        recipients = [{**s.recipient, "ok": s.url not in failed} for s in sends]
        detail = f"值班人员：{named}" if named else ""
        if missing:
            detail += ("；" if detail else "") + f"{gap_text}无人值班，已发往{FALLBACK_ZH}"
        if unread:
            detail += "（值班表读取失败）"
        if failed:
            detail += f"；{len(failed)} 个地址未送达"
        return DeliveryNote(detail, recipients)

    def _notify(self, title: str, body: str, sends: list[_Send]) -> set[str]:
        """Each address on its own, so one person's broken address does not hold the others'
        push (nor the route's later ones); returns the addresses that did not accept it."""
        failed: set[str] = set()
        for url in dict.fromkeys(s.url for s in sends):
            notifier = apprise.Apprise()
            if not notifier.add(url):
                failed.add(url)
                continue
            for server in notifier:
                server.socket_connect_timeout = self.timeout_s
                server.socket_read_timeout = self.timeout_s
                server.request_rate_per_sec = 0  # no spacing: see AppriseChannel
            if not notifier.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT):
                failed.add(url)
                logger.warning("route %r: a push address did not accept the push", self.route.name)
        return failed


def _names(people: list[OnDuty], reached: set[str]) -> str:
    """The people the push went to, as the body and the delivery log name them: 张三、李四."""
    seen: dict[str, str] = {}
    for p in people:
        if p.role in reached and p.addresses:
            seen.setdefault(p.user, p.name)
    return "、".join(seen.values())
