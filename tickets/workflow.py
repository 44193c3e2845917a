"""The rectification loop as a table (DESIGN §5, the seed's 巡查 -> 发现 -> 报告 -> 记录 -> 整改 -> 复检):
which action moves a ticket from which status to which, and which roles may take it. Pure: the
ticket service applies it inside one transaction with the audit entry.

    open -> assigned -> rectifying -> rectified -> verified -> closed
                            ^              |
                            +-- reject ----+        (re-inspection failed)

>>> permitted(TicketAction.VERIFY, TicketStatus.RECTIFIED, Role.SAFETY)
<TicketStatus.VERIFIED: 'verified'>
>>> permitted(TicketAction.VERIFY, TicketStatus.RECTIFIED, Role.MAINTENANCE)
Traceback (most recent call last):
...
tickets.workflow.RoleNotPermittedError: role 'maintenance' may not verify a ticket (allowed: safety, admin)
"""

from __future__ import annotations

from dataclasses import dataclass

from core.domain import Role, TicketAction, TicketStatus

S = TicketStatus
OPEN_STATUSES = (S.OPEN, S.ASSIGNED, S.RECTIFYING)  # not yet rectified: the deadline runs
NOT_CLOSED = (S.OPEN, S.ASSIGNED, S.RECTIFYING, S.RECTIFIED, S.VERIFIED)


@dataclass(frozen=True)
class Rule:
    sources: tuple[TicketStatus, ...]
    target: TicketStatus | None  # None: the status does not change
    roles: frozenset[Role]


def _roles(*roles: Role) -> frozenset[Role]:
    return frozenset({*roles, Role.ADMIN})


# People's actions. Separation of duties follows the form's three sign-offs: maintenance rectifies
# and signs the feedback, the safety office re-inspects and confirms, the leader closes.
RULES: dict[TicketAction, Rule] = {
    TicketAction.ASSIGN: Rule((S.OPEN, S.ASSIGNED), S.ASSIGNED, _roles(Role.SAFETY, Role.MAINTENANCE)),
    TicketAction.START: Rule((S.ASSIGNED,), S.RECTIFYING, _roles(Role.MAINTENANCE)),
    TicketAction.RECTIFY: Rule((S.RECTIFYING,), S.RECTIFIED, _roles(Role.MAINTENANCE)),
    TicketAction.VERIFY: Rule((S.RECTIFIED,), S.VERIFIED, _roles(Role.SAFETY)),
    TicketAction.REJECT: Rule((S.RECTIFIED,), S.RECTIFYING, _roles(Role.SAFETY)),
    TicketAction.CLOSE: Rule((S.VERIFIED,), S.CLOSED, _roles(Role.LEADER)),
    TicketAction.EXTEND: Rule(OPEN_STATUSES, None, _roles(Role.SAFETY, Role.LEADER)),
    TicketAction.COMMENT: Rule(
        (*NOT_CLOSED, S.CLOSED), None, _roles(Role.OPERATOR, Role.MAINTENANCE, Role.SAFETY, Role.LEADER)
    ),
    TicketAction.ATTACH: Rule(
        NOT_CLOSED, None, _roles(Role.OPERATOR, Role.MAINTENANCE, Role.SAFETY, Role.LEADER)
    ),
    # Correcting what the form says (a wrong department, a clearer description) is the safety
    # office's or the leader's call; the loop's own fields (assignee, deadline, sign-offs) change
    # only through their steps.
    TicketAction.EDIT: Rule(NOT_CLOSED, None, _roles(Role.SAFETY, Role.LEADER)),
}

# Roles that may open a ticket by hand (an inspection) or record a patrol round.
REPORTERS = _roles(Role.OPERATOR, Role.MAINTENANCE, Role.SAFETY, Role.LEADER)


class WorkflowError(ValueError):
    pass


class RoleNotPermittedError(WorkflowError):
    """The actor's role may not take this action (HTTP 403)."""


class WrongStatusError(WorkflowError):
    """The action does not apply to the ticket's current status (HTTP 409)."""


def _names(roles: frozenset[Role]) -> str:
    order = list(Role)
    return ", ".join(r.value for r in sorted(roles, key=order.index))


def permitted(action: TicketAction, status: TicketStatus, role: Role) -> TicketStatus:
    """The status after `action`, or raise why it is not allowed. Role is checked first: a person
    who may never take the action is told so whatever the status."""
    rule = RULES.get(action)
    if rule is None:
        raise WorkflowError(f"{action.value!r} is not an action people take")
    if role not in rule.roles:
        raise RoleNotPermittedError(
            f"role {role.value!r} may not {action.value} a ticket (allowed: {_names(rule.roles)})"
        )
    if status not in rule.sources:
        raise WrongStatusError(
            f"cannot {action.value} a ticket that is {status.value} "
            f"(only when {' or '.join(s.value for s in rule.sources)})"
        )
    return rule.target or status


def check_reporter(role: Role) -> None:
    if role not in REPORTERS:
        raise RoleNotPermittedError(
            f"role {role.value!r} may not report hazards (allowed: {_names(REPORTERS)})"
        )


def allowed_actions(status: TicketStatus, role: Role) -> list[TicketAction]:
    """What this role can do to a ticket in this status now (for the console's buttons)."""
    return [a for a, r in RULES.items() if role in r.roles and status in r.sources]
