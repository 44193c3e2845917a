"""The closed vocabularies of firewatch and the small value types that cross stage boundaries.

Categories follow the facility states of GB 26875 (火警 fire, 预警 pre-alarm, 故障 fault,
监管 supervisory) plus the hazard (隐患) category of the rectification workflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class DeviceKind(StrEnum):
    """What a sensor model measures; one profile belongs to exactly one kind."""

    SMOKE = "smoke"
    HEAT = "heat"
    SMOKE_HEAT = "smoke_heat"
    WATER_PRESSURE = "water_pressure"
    WATER_LEVEL = "water_level"
    ELECTRICAL_FIRE = "electrical_fire"
    COMBUSTIBLE_GAS = "combustible_gas"
    OXYGEN_PRESSURE = "oxygen_pressure"
    FIRE_DOOR = "fire_door"
    CHARGING_SOCKET = "charging_socket"
    # Reached through a fire alarm panel and its transmission device (GB/T 26875.3, docs/gb26875.md).
    TRANSMISSION_DEVICE = "transmission_device"  # 用户信息传输装置
    FIRE_ALARM_PANEL = "fire_alarm_panel"  # 火灾报警控制器 (a facility system)
    MANUAL_CALL_POINT = "manual_call_point"  # 手动火灾报警按钮, 消火栓按钮
    MODULE = "module"  # input/output modules, pumps, valves, dampers: linkage and supervision


class SystemType(StrEnum):
    """The facility system a device belongs to (GB 26875.3 system types, abridged).

    Gas alarms are displayed apart from fire alarms (GB 50116-2013 §8.1.4), so every alarm carries
    its system and every listing can separate them.
    """

    FIRE_ALARM = "fire_alarm"
    COMBUSTIBLE_GAS = "combustible_gas"
    ELECTRICAL_FIRE = "electrical_fire"
    WATER_SUPPLY = "water_supply"
    MEDICAL_GAS = "medical_gas"
    FIRE_DOOR = "fire_door"


class AlarmCategory(StrEnum):
    FIRE = "fire"  # 火警 (for the gas system: the alarm level of a gas detector)
    PRE_ALARM = "pre_alarm"  # 预警
    FAULT = "fault"  # 故障
    SUPERVISORY = "supervisory"  # 监管
    # 屏蔽: a point taken out of service at its fire alarm panel (GB/T 26875.3 status bit 3). It
    # cannot report a fire while disabled, so it is tracked as its own alarm until re-enabled,
    # never hidden as a fault or left out of the listings.
    DISABLED = "disabled"
    HAZARD = "hazard"  # 隐患


class Severity(StrEnum):
    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    WARNING = "warning"


# Severity follows from the category: a fire is always critical; a supervisory signal (valve closed,
# pressure low) disables protection, so it ranks with a pre-alarm above a plain device fault.
SEVERITY_OF: dict[AlarmCategory, Severity] = {
    AlarmCategory.FIRE: Severity.CRITICAL,
    AlarmCategory.PRE_ALARM: Severity.MAJOR,
    AlarmCategory.SUPERVISORY: Severity.MAJOR,
    AlarmCategory.FAULT: Severity.MINOR,
    AlarmCategory.DISABLED: Severity.MINOR,
    AlarmCategory.HAZARD: Severity.WARNING,
}

# Order for "worst first" listings and propagation: lower is worse.
CATEGORY_RANK: dict[AlarmCategory, int] = {
    AlarmCategory.FIRE: 0,
    AlarmCategory.PRE_ALARM: 1,
    AlarmCategory.SUPERVISORY: 2,
    AlarmCategory.FAULT: 3,
    AlarmCategory.DISABLED: 4,
    AlarmCategory.HAZARD: 5,
}

# Categories whose alarms open a hazard-rectification ticket automatically (DESIGN §5).
TICKETED_CATEGORIES: frozenset[AlarmCategory] = frozenset(
    {AlarmCategory.FAULT, AlarmCategory.SUPERVISORY, AlarmCategory.DISABLED, AlarmCategory.HAZARD}
)


class AlarmState(StrEnum):
    """Alarm lifecycle (DESIGN §4). Active and cleared each come acknowledged or not; a cleared and
    acknowledged alarm is closed by a person or by policy after a quiet period, and only then is
    its key free for a new alarm. Until it is closed, a recurrence re-opens the same alarm."""

    ACTIVE_UNACKNOWLEDGED = "active_unacknowledged"
    ACTIVE_ACKNOWLEDGED = "active_acknowledged"
    CLEARED_UNACKNOWLEDGED = "cleared_unacknowledged"
    CLEARED_ACKNOWLEDGED = "cleared_acknowledged"
    CLOSED = "closed"

    @property
    def is_active(self) -> bool:
        return self in (AlarmState.ACTIVE_UNACKNOWLEDGED, AlarmState.ACTIVE_ACKNOWLEDGED)

    @property
    def is_acknowledged(self) -> bool:
        return self in (AlarmState.ACTIVE_ACKNOWLEDGED, AlarmState.CLEARED_ACKNOWLEDGED)

    @property
    def is_open(self) -> bool:
        return self is not AlarmState.CLOSED


def latches(category: AlarmCategory) -> bool:
    """Whether an alarm of this category stays active until it is reset (复位), whatever the reading
    does meanwhile: a fire alarm, as on a fire alarm control panel (GB 4717: the fire alarm state is
    kept until a manual reset)."""
    return category is AlarmCategory.FIRE


ACTIVE_STATES = (AlarmState.ACTIVE_UNACKNOWLEDGED.value, AlarmState.ACTIVE_ACKNOWLEDGED.value)
UNACKNOWLEDGED_STATES = (AlarmState.ACTIVE_UNACKNOWLEDGED.value, AlarmState.CLEARED_UNACKNOWLEDGED.value)


class AlarmAction(StrEnum):
    """What happened to an alarm in one transition (the alarm event log's vocabulary)."""

    RAISED = "raised"  # new, or active again after clearing
    REPEATED = "repeated"  # another occurrence while still active
    CLEARED = "cleared"
    ACKNOWLEDGED = "acknowledged"
    CLOSED = "closed"
    SHELVED = "shelved"  # a person silenced its notifications until a time (never a fire alarm)
    UNSHELVED = "unshelved"  # by a person, or because the shelving expired
    ESCALATED = "escalated"  # nobody acknowledged in time: the next duty role is told
    REMINDED = "reminded"  # still unacknowledged: the roles told so far are told again
    FLAPPING = "flapping"  # too many raise/clear cycles: notifications held, a hazard ticket opened
    STEADY = "steady"  # quiet again after flapping: notifications resume
    RELEASED = "released"  # maintenance ended while the alarm was still unacknowledged: now notified
    # A latched fire alarm's reading fell back (读数恢复): recorded, the alarm stays (GB 4717 latching)
    NORMAL = "normal"
    RESET = "reset"  # 复位: a person, or the device itself, ended a latched fire alarm
    SUPERSEDED = "superseded"  # 已升级为火警: a pre-alarm ended because its device's fire alarm was raised


class IncidentKind(StrEnum):
    """What one incident (火情/事件) is about. Alarms are grouped by kind, place and time; a fire
    incident holds the fire and pre-alarms of the fire alarm system, gas incidents are kept apart
    (GB 50116-2013 §8.1.4), and devices lost together are one communication outage."""

    FIRE = "fire"
    GAS = "gas"
    OUTAGE = "outage"
    SUPERVISORY = "supervisory"
    FAULT = "fault"
    DISABLED = "disabled"  # points disabled (屏蔽) at a panel, grouped like faults
    HAZARD = "hazard"


class IncidentState(StrEnum):
    """OPEN while any of its alarms is active or it is unacknowledged; ENDED once every alarm has
    ended (reset or cleared) but nobody has acknowledged; CLOSED when ended and acknowledged."""

    OPEN = "open"
    ENDED = "ended"
    CLOSED = "closed"


class Verification(StrEnum):
    """Confirmation on the duty clock (GB 25506-2010 §4.2.2: confirm an alarm at once by the
    fastest means; a real fire: call 119, start the plan, report to the person in charge)."""

    PENDING = "pending"  # 待核实
    VERIFYING = "verifying"  # 核实中: someone went to check
    CONFIRMED = "confirmed"  # 真实火警
    FALSE_ALARM = "false_alarm"  # 误报 (with a cause)
    TEST = "test"  # 测试

    @property
    def decided(self) -> bool:
        return self in (Verification.CONFIRMED, Verification.FALSE_ALARM, Verification.TEST)


class FalseAlarmCause(StrEnum):
    """Why a false alarm happened: what the safety office counts and acts on (clean, move, replace)."""

    DUST = "dust"  # 灰尘/污染
    STEAM = "steam"  # 水汽/蒸汽
    COOKING = "cooking"  # 油烟
    WORKS = "works"  # 施工/动火作业
    DEVICE = "device"  # 设备故障
    HUMAN = "human"  # 人为误触
    OTHER = "other"  # 其他（写明）


class IncidentAction(StrEnum):
    """What happened to an incident in one step of its timeline (the incident event log)."""

    OPENED = "opened"  # its first alarm
    JOINED = "joined"  # another alarm joined (no push: the board shows the count)
    UPGRADED = "upgraded"  # it became worse (a pre-alarm incident became a fire)
    SPREAD = "spread"  # a new zone or floor joined
    ACKNOWLEDGED = "acknowledged"
    VERIFYING = "verifying"  # someone went to check
    CONFIRMED = "confirmed"  # a real fire
    FALSE_ALARM = "false_alarm"
    TEST = "test"
    CALLED_119 = "called_119"
    ESCALATED = "escalated"
    REMINDED = "reminded"
    VERIFY_OVERDUE = "verify_overdue"  # not confirmed within the verification limit
    REOPENED = "reopened"  # alarming again after it ended (a confirmed fire coming back: 复燃)
    RESET = "reset"  # a person reset its fire alarms (复位)
    ENDED = "ended"  # its last active alarm ended
    CLOSED = "closed"


# What a push route without duty roles hears of incidents by default: the first notice, a fire, a
# spread, the verdict and the end (alarms/incidents.py says which of these are never delayed).
SUBSCRIBED_INCIDENT_ACTIONS: tuple[IncidentAction, ...] = (
    IncidentAction.OPENED,
    IncidentAction.UPGRADED,
    IncidentAction.SPREAD,
    IncidentAction.REOPENED,
    IncidentAction.CONFIRMED,
    IncidentAction.FALSE_ALARM,
    IncidentAction.TEST,
    IncidentAction.RESET,
    IncidentAction.ENDED,
)


class DetectorEventKind(StrEnum):
    RAISE = "raise"
    CLEAR = "clear"
    RESET = "reset"  # the device was reset on site: its latched fire alarms end (any alarm type)


class DeviceEventKind(StrEnum):
    """Device-side state changes published on `.../event` (DESIGN §2)."""

    ALARM = "alarm"
    ALARM_CLEAR = "alarm_clear"
    FAULT = "fault"
    FAULT_CLEAR = "fault_clear"
    TAMPER = "tamper"
    TAMPER_CLEAR = "tamper_clear"
    TEST = "test"
    RESET = "reset"
    # Reported by fire alarm panels through GB/T 26875.3 (ingest/gb26875/): the component state bits
    # 监管 (supervisory), 屏蔽 (disabled) and 电源故障 (power fault), each set and cleared.
    SUPERVISORY = "supervisory"
    SUPERVISORY_CLEAR = "supervisory_clear"
    DISABLED = "disabled"
    DISABLED_CLEAR = "disabled_clear"
    POWER_FAULT = "power_fault"
    POWER_FAULT_CLEAR = "power_fault_clear"
    # A point its transmission device reported that the registry does not know: raised on the
    # transmission device (its alarms are held there meanwhile), it opens an onboarding ticket.
    UNREGISTERED = "unregistered"
    # Recorded in the device's event log, raising nothing (GB/T 26875.3 through its panel): linkage
    # started or stopped (status bit 5), its feedback (bit 6), a delay running (bit 7), and an
    # operation at the panel or the transmission device (types 4, 24: 消音, 手动报警, 自检, 确认 …;
    # its flags as the code, the operator number as the channel).
    LINKAGE_START = "linkage_start"
    LINKAGE_STOP = "linkage_stop"
    FEEDBACK = "feedback"
    FEEDBACK_CLEAR = "feedback_clear"
    DELAY = "delay"
    DELAY_CLEAR = "delay_clear"
    OPERATION = "operation"
    # An upload of a type not acted on (versions, configurations, clocks, a vendor's own type): its
    # type identifier as the code, kept with its frame.
    UPLOAD = "upload"
    # The device is alive and has nothing to report (a transmission device's empty upload): it
    # counts for liveness and raises nothing.
    HEARTBEAT = "heartbeat"


# What a fire alarm panel reports that is kept in its points' event logs and shown on an incident,
# raising nothing (GB/T 26875.3 status bits 5-7 and operation records).
PANEL_LOG_EVENTS: frozenset[DeviceEventKind] = frozenset(
    {
        DeviceEventKind.LINKAGE_START,
        DeviceEventKind.LINKAGE_STOP,
        DeviceEventKind.FEEDBACK,
        DeviceEventKind.FEEDBACK_CLEAR,
        DeviceEventKind.DELAY,
        DeviceEventKind.DELAY_CLEAR,
        DeviceEventKind.OPERATION,
    }
)


class RejectReason(StrEnum):
    """Why an inbound message was not accepted. Each is counted and the raw bytes are kept."""

    BAD_TOPIC = "bad_topic"
    UNKNOWN_DEVICE = "unknown_device"
    SITE_MISMATCH = "site_mismatch"
    TOO_LARGE = "too_large"
    BAD_JSON = "bad_json"
    BAD_PAYLOAD = "bad_payload"  # valid JSON of the wrong shape or types
    UNKNOWN_CHANNEL = "unknown_channel"
    NON_FINITE = "non_finite"
    OUT_OF_RANGE = "out_of_range"
    FUTURE_TIMESTAMP = "future_timestamp"
    BAD_TIMESTAMP = "bad_timestamp"  # not finite, before 2000, or older than ingest.max_past_s
    UNKNOWN_EVENT = "unknown_event"
    # The message broke something the service did not foresee (a bug): kept with its bytes for a
    # developer, and the rest of its batch goes on (poison isolation, docs/reliability.md).
    UNPROCESSABLE = "unprocessable"


class TicketStatus(StrEnum):
    """The rectification loop 发现 -> 报告 -> 记录 -> 整改 -> 复检 (DESIGN §5)."""

    OPEN = "open"
    ASSIGNED = "assigned"
    RECTIFYING = "rectifying"
    RECTIFIED = "rectified"
    VERIFIED = "verified"
    CLOSED = "closed"


class TicketAction(StrEnum):
    """What happened to a ticket (the ticket event log's vocabulary). People act through the
    workflow (tickets/workflow.py); the rest is firewatch's own doing."""

    OPENED = "opened"
    RECURRED = "recurred"  # the same hazard again on the open ticket
    ASSIGN = "assign"  # open/assigned -> assigned: who rectifies, by when
    START = "start"  # assigned -> rectifying
    RECTIFY = "rectify"  # rectifying -> rectified: feedback, the responsible person's sign-off
    VERIFY = "verify"  # rectified -> verified: re-inspection passed, confirmation sign-off
    REJECT = "reject"  # rectified -> rectifying: re-inspection failed
    CLOSE = "close"  # verified -> closed: the supervising leader's sign-off
    EXTEND = "extend"  # a new deadline, with the reason
    COMMENT = "comment"
    ATTACH = "attach"  # evidence (a photo or file)
    EDIT = "edit"  # the form's description corrected (problem, measures, department, ...)
    OVERDUE = "overdue"  # past its deadline unrectified: flagged and escalated
    READY = "ready"  # telemetry shows the condition normal long enough: ready for re-inspection
    NOT_READY = "not_ready"  # the condition came back


class Role(StrEnum):
    """Who may do what (DESIGN §7). The three sign-offs of the seed form belong to different
    people: the responsible person's feedback (maintenance), the confirmation after re-inspection
    (the safety office, 保卫科) and the supervising leader's (分管领导). An admin may do all."""

    VIEWER = "viewer"
    OPERATOR = "operator"  # control room: acknowledges alarms
    MAINTENANCE = "maintenance"  # works tickets
    SAFETY = "safety"  # safety office: assigns, verifies, extends
    LEADER = "leader"  # supervising leader: closes
    ADMIN = "admin"


class TicketSource(StrEnum):
    ALARM = "alarm"
    PATROL = "patrol"
    INSPECTION = "inspection"
    MAINTENANCE = "maintenance"
    STAFF_REPORT = "staff_report"  # 随手拍: staff or visitors scanned a place's or device's QR code


@dataclass(frozen=True, slots=True)
class DetectorEvent:
    """A detector's decision about one (device, alarm type): raise or clear, with the evidence.

    Detectors emit these; the alarm service turns them into alarm transitions.
    """

    device_id: str
    alarm_type: str
    kind: DetectorEventKind
    category: AlarmCategory
    ts: float
    value: float | None = None
    channel: str | None = None
    detail: str = ""
    basis: str = ""
    extra: dict[str, float | str] = field(default_factory=dict)
    # An outage's devices (detectors/liveness.py): every device silent in it, for its incident.
    members: tuple[str, ...] = ()
