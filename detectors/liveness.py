"""Offline detection: no message for `offline_after` x the profile's heartbeat (per device).

The watchdog decides, not the retained status topic: a broker can hold a stale `online` for a
device whose power is long gone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.device_columns import Values
from core.domain import AlarmCategory, DetectorEvent, DetectorEventKind
from ingest.index import DeviceIndex

OFFLINE = "device.offline"
OUTAGE = "device.outage"  # many devices of one place silent together: one alarm, keyed by the place
OUTAGE_KEY_PREFIX = "outage:"
OUTAGE_LISTED = 20  # device ids named in an outage alarm's detail; the rest are counted
# The levels an outage can cover, highest first: it rolls up to the highest that qualifies. The
# place levels, then the gateway (core/registry.py Device.gateway): a gateway, switch or panel lost
# takes its devices with it, wherever they are, often too few of a place's to make the place out.
LEVELS = ("site", "building", "floor", "zone", "gateway")
PLACE_LEVELS = 4
# A gateway's path: site/@gateway-id. Not a place: its outage is shown where its devices are.
GATEWAY_MARK = "@"
_KEY_MAX = 64  # the alarm store's device id column


@dataclass(frozen=True)
class OutagePolicy:
    """When silent devices are one outage rather than one offline alarm each (site policy).

    A place (site, building, floor or zone) is out when at least `min_devices` of its devices have
    gone quiet recently (no message for `quiet_heartbeats` of their heartbeat, and not offline on
    their own already) and at least `min_fraction` of all its devices are quiet. A device past its
    offline limit under a place that is out joins that place's outage instead of raising its own
    offline alarm. Where enough devices are quiet but the fraction is not reached yet, a device past
    its limit waits up to `hold_heartbeats` of its heartbeat for the others (they cross their own
    limits within about one heartbeat of each other); a device silent alone never waits.
    """

    min_devices: int = 10
    min_fraction: float = 0.5
    quiet_heartbeats: float = 1.5
    hold_heartbeats: float = 1.0
    update_s: float = 30.0  # an open outage's count is re-reported at most this often
    grace_s: float = 0.0  # after a start or resume: at least this long before anyone is offline


@dataclass
class Outage:
    key: str
    path: str
    level: int
    code: int
    place: str = ""  # where it is: the place itself, or the place holding a gateway's devices
    label: str = ""  # the place (and gateway) in words
    raised: bool = False
    reported: int = 0  # the member count last reported
    reported_at: float = -np.inf
    keep_until: float = -np.inf  # restored from the store: not cleared before its members can rejoin


def outage_key(path: str) -> str:
    """The alarm key of a place's outage: `outage:<place path>`, or a digest where too long."""
    key = OUTAGE_KEY_PREFIX + path
    if len(key) <= _KEY_MAX:
        return key
    return OUTAGE_KEY_PREFIX + "#" + hashlib.sha1(path.encode()).hexdigest()[:24]


class LivenessWatch:
    def __init__(self, index: DeviceIndex, start: float, policy: OutagePolicy | None = None) -> None:
        self.index = index
        self.policy = policy or OutagePolicy()
        # A device never heard from gets a full grace period from start-up before it counts as silent.
        self.last_seen = np.full(index.n_devices, start, dtype=np.float64)
        self.offline = np.zeros(index.n_devices, dtype=bool)  # offline on its own: its alarm is raised
        self.limit = index.heartbeat_s * index.offline_after
        self.quiet_after = np.minimum(self.limit, index.heartbeat_s * self.policy.quiet_heartbeats)
        self.hold_for = index.heartbeat_s * self.policy.hold_heartbeats
        # Past the limit, waiting to see whether its place is out (then it joins the outage).
        self.held = np.zeros(index.n_devices, dtype=bool)
        self.held_since = np.zeros(index.n_devices, dtype=np.float64)
        self.not_before = start  # nobody is called offline before this (`grace`)
        # Per level, each device's place as an integer code, and each place's device count: made
        # per distinct place and spread with dictionary lookups (a million devices, five levels).
        self.paths: list[list[str]] = []
        codes = []
        for column in [*self._place_paths(), self._gateway_paths()]:
            table = Values()
            codes.append(table.encode(column, index.n_devices).astype(np.int32))  # fewer places than 2**31
            self.paths.append(table.items)
        self.code = codes
        # Each place's watched devices: a fire alarm panel's points are not (their transmission
        # device is, profiles without liveness), so they neither go quiet nor count against the
        # share of a place's devices that must be quiet for an outage.
        watched = np.isfinite(index.heartbeat_s).astype(np.int64)
        self.size = [
            np.bincount(c, weights=watched, minlength=len(p)).astype(np.int64)
            for c, p in zip(codes, self.paths, strict=True)
        ]
        # Groups that are never an outage: devices with no gateway known (path "").
        self.never = [np.array([p == "" for p in paths], dtype=bool) for paths in self.paths]
        self.places = [list(paths) for paths in self.paths[:PLACE_LEVELS]]
        self.places.append(self._gateway_places(codes[PLACE_LEVELS]))
        self.place_of_key = {
            outage_key(path): (level, code)
            for level, paths in enumerate(self.paths)
            for code, path in enumerate(paths)
        }
        # Outages by id; `member[dev]` is the id of the outage a device belongs to (-1: none).
        self.outages: dict[int, Outage] = {}
        self.member = np.full(index.n_devices, -1, dtype=np.int64)
        self._next_id = 0

    def _place_paths(self) -> list[list[str]]:
        """Every device's place cut to each level (site, building, floor, zone): cut once per
        distinct path, from the zone up (a place is a zone or a room)."""
        places = self.index.places
        zone_of = {p: "/".join(p.split("/")[:PLACE_LEVELS]) for p in set(places)}
        levels = [list(map(zone_of.__getitem__, places))]
        for _ in range(PLACE_LEVELS - 1):
            parent = {p: p.rsplit("/", 1)[0] for p in set(levels[0])}
            levels.insert(0, list(map(parent.__getitem__, levels[0])))
        return levels

    def _gateway_paths(self) -> list[str]:
        """Every device's gateway group ('': no gateway known)."""
        index = self.index
        return [
            f"{site}/{GATEWAY_MARK}{g}" if g else ""
            for site, g in zip(index.sites, index.gateways, strict=True)
        ]

    def _gateway_places(self, code: npt.NDArray[np.int32]) -> list[str]:
        """Per gateway, the deepest place holding all its devices (where its outage is shown)."""
        common: dict[int, list[str]] = {}
        # The group of devices with no gateway known is never an outage.
        for c, place in sorted(
            {
                (c, p)
                for c, p, g in zip(code.tolist(), self.index.places, self.index.gateways, strict=True)
                if g
            }
        ):
            parts = place.split("/")
            have = common.setdefault(c, parts)
            n = 0
            while n < min(len(have), len(parts)) and have[n] == parts[n]:
                n += 1
            common[c] = have[:n]
        return ["/".join(common.get(c, [])) for c in range(len(self.paths[PLACE_LEVELS]))]

    def seen(self, dev: npt.NDArray[np.int32], at: npt.NDArray[np.float64]) -> list[DetectorEvent]:
        if not dev.size:
            return []
        np.maximum.at(self.last_seen, dev, at)
        self.held[dev] = False
        # A member reporting again leaves its outage; the count is updated at the next check.
        self.member[dev] = -1
        back = np.unique(dev[self.offline[dev]])
        self.offline[back] = False
        return [self._event(int(d), DetectorEventKind.CLEAR, float(self.last_seen[d])) for d in back.tolist()]

    def own(self, mine: npt.NDArray[np.bool_], gained: npt.NDArray[np.bool_], now: float) -> None:
        """Watch only the devices `mine` (a clustered worker's partitions, docs/scale.md): another
        worker hears the rest, so their silence here says nothing. They count as heard forever
        (never quiet, so they neither go offline nor make their places look out: a site is one
        partition, so a place's devices are all one worker's) and are not offline here. The devices
        `gained` (just taken over) count their silence afresh from `now`; whether they are offline
        already is the store's to say (`restore_offline`)."""
        self.last_seen[~mine] = np.inf
        self.offline[~mine] = False
        self.held[~mine] = False
        self.last_seen[gained] = now
        self.offline[gained] = False
        self.held[gained] = False
        self.member[gained] = -1

    def grace(self, now: float) -> None:
        """Start every device's silence count afresh at `now` (the service starting, or ingest
        resuming): while the service was not listening, nobody knows whether a device was quiet.
        Each device gets at least its own offline window, and everyone at least `grace_s`."""
        np.maximum(self.last_seen, now, out=self.last_seen)
        self.not_before = max(self.not_before, now + self.policy.grace_s)
        # Outages open from before keep their alarm until their devices can have been heard again.
        keep = now + max(self.policy.grace_s, float(self.limit.max(initial=0.0)))
        for outage in self.outages.values():
            outage.keep_until = max(outage.keep_until, keep)

    def pause(self, gap: float) -> None:
        """Ingest was not listening for `gap` seconds (the MQTT connection was down): that time is
        not counted as anyone's silence. A connection that keeps dropping therefore delays offline
        alarms by the time it was down, not indefinitely, as a fresh grace period each time would."""
        self.last_seen += gap

    def check(self, now: float) -> list[DetectorEvent]:
        if now < self.not_before:
            return []
        policy = self.policy
        silence = now - self.last_seen
        alone = self.offline
        in_outage = self.member >= 0
        quiet = silence > self.quiet_after
        recent = quiet & ~alone
        fresh = ~alone & ~in_outage & ~self.held & (silence > self.limit)
        self.held[fresh] = True
        self.held_since[fresh] = now
        # Which outage each held device joins: an open one over it, else the highest place that is out.
        target = np.full(self.index.n_devices, -1, dtype=np.int64)
        suspect = np.zeros(self.index.n_devices, dtype=bool)
        open_at = self._open_places()
        recent_at = []
        for level in range(len(LEVELS)):
            code, size = self.code[level], self.size[level]
            n_recent = np.bincount(code[recent], minlength=size.size)
            n_quiet = np.bincount(code[quiet], minlength=size.size)
            recent_at.append(n_recent)
            enough = (n_recent >= policy.min_devices) & ~self.never[level]
            out = enough & (n_quiet >= policy.min_fraction * size)
            suspect |= enough[code]
            free = target < 0
            known = open_at[level]
            if known.size:
                is_open = np.full(size.size, -1, dtype=np.int64)
                is_open[known[:, 0]] = known[:, 1]
                hit = free & (is_open[code] >= 0)
                target[hit] = is_open[code[hit]]
                free &= ~hit
            hit = free & out[code] & self.held
            if hit.any():
                places = np.unique(code[hit])
                new_id = np.full(size.size, -1, dtype=np.int64)
                new_id[places] = [self._new_outage(level, p) for p in places.tolist()]
                target[hit] = new_id[code[hit]]
        joins = self.held & (target >= 0)
        self.member[joins] = target[joins]
        self.held[joins] = False
        # Held devices under no outage: alone at once unless their place looks like one forming.
        waited = now - self.held_since >= self.hold_for
        alone_now = np.flatnonzero(self.held & (~suspect | waited))
        self.held[alone_now] = False
        self.offline[alone_now] = True
        events = [self._event(int(d), DetectorEventKind.RAISE, now) for d in alone_now.tolist()]
        return events + self._outage_events(now, recent_at)

    def _open_places(self) -> list[npt.NDArray[np.int64]]:
        """Per level, (place code, outage id) rows of the outages open there."""
        rows: list[list[tuple[int, int]]] = [[] for _ in LEVELS]
        for oid, o in self.outages.items():
            rows[o.level].append((o.code, oid))
        return [np.array(r, dtype=np.int64).reshape(-1, 2) for r in rows]

    def _new_outage(self, level: int, code: int) -> int:
        oid = self._next_id
        self._next_id += 1
        path = self.paths[level][code]
        place = self.places[level][code]
        label = self.index.place_label(place)
        if level >= PLACE_LEVELS:
            label = f"{label} 网关 {path.rsplit(GATEWAY_MARK, 1)[1]}".strip()
        self.outages[oid] = Outage(outage_key(path), path, level, code, place, label)
        return oid

    def _outage_events(self, now: float, recent_at: list[npt.NDArray[np.int64]]) -> list[DetectorEvent]:
        if not self.outages:
            return []
        policy = self.policy
        counts = np.bincount(self.member[self.member >= 0], minlength=self._next_id)
        events = []
        for oid, o in list(self.outages.items()):
            n = int(counts[oid])
            place_recent = int(recent_at[o.level][o.code])
            if n < policy.min_devices and place_recent < policy.min_devices and now >= o.keep_until:
                # Most are back: the outage is over; whoever is still silent is offline on their own.
                rest = np.flatnonzero(self.member == oid)
                self.member[rest] = -1
                self.offline[rest] = True
                events += [self._event(int(d), DetectorEventKind.RAISE, now) for d in rest.tolist()]
                if o.raised:
                    events.append(self._outage_event(o, DetectorEventKind.CLEAR, now, rest))
                del self.outages[oid]
                continue
            if n and (not o.raised or (n != o.reported and now - o.reported_at >= policy.update_s)):
                o.raised, o.reported, o.reported_at = True, n, now
                events.append(
                    self._outage_event(o, DetectorEventKind.RAISE, now, np.flatnonzero(self.member == oid))
                )
        return events

    def _outage_event(
        self, o: Outage, kind: DetectorEventKind, ts: float, members: npt.NDArray[np.intp]
    ) -> DetectorEvent:
        n, total = int(members.size), int(self.size[o.level][o.code])
        label = o.label
        if kind is DetectorEventKind.RAISE:
            ids = [self.index.device_ids[d] for d in members[:OUTAGE_LISTED].tolist()]
            more = f" and {n - len(ids)} more" if n > len(ids) else ""
            detail = (
                f"通信中断 / outage: {n} of {total} devices of {label} ({LEVELS[o.level]}) silent together: "
                f"{', '.join(ids)}{more}"
            )
        else:
            detail = f"{label} reporting again" + (f"; {n} still silent, each raised offline" if n else "")
        return DetectorEvent(
            device_id=o.key,
            alarm_type=OUTAGE,
            kind=kind,
            category=AlarmCategory.FAULT,
            ts=ts,
            value=float(n) if kind is DetectorEventKind.RAISE else None,
            detail=detail,
            basis=(
                "site policy (detection.outage_*): many devices of one place silent together are one "
                "communication or power outage, not one fault each"
            ),
            extra={"site": o.path.split("/", 1)[0], "place": o.place, "devices": n, "registered": total},
            members=(
                tuple(self.index.device_ids[d] for d in members.tolist())
                if kind is DetectorEventKind.RAISE
                else ()
            ),
        )

    def outage_members(self) -> dict[str, list[str]]:
        """Every open outage's key and the ids of the devices it holds (the full list)."""
        return {
            o.key: [self.index.device_ids[d] for d in np.flatnonzero(self.member == oid).tolist()]
            for oid, o in self.outages.items()
        }

    def restore_outages(self, keys: set[str], now: float) -> None:
        """Outage alarms open in the store: kept open until their devices can have been heard again;
        devices still silent then rejoin them."""
        self.outages.clear()
        self.member[:] = -1
        self.held[:] = False
        for key in keys:
            hit = self.place_of_key.get(key)
            if hit is not None and not any(o.key == key for o in self.outages.values()):
                oid = self._new_outage(*hit)
                o = self.outages[oid]
                o.raised = True
                o.keep_until = now + max(self.policy.grace_s, float(self.limit.max(initial=0.0)))

    def adopt_outages(self, keys: set[str], devices: npt.NDArray[np.bool_], now: float) -> None:
        """A clustered worker taking a partition over (docs/scale.md): the outage alarms open in the
        store for places of the devices `devices` become this worker's, as on a restart — kept open
        until their devices can have been heard again, so the new owner clears them when the place
        is back, and its devices still silent rejoin them instead of each raising offline. The store
        is the truth: an outage this worker held for those places already is replaced."""
        if not devices.any():
            return
        for oid, o in list(self.outages.items()):
            if devices[self.code[o.level] == o.code].any():
                self.member[self.member == oid] = -1
                del self.outages[oid]
        keep = now + max(self.policy.grace_s, float(self.limit.max(initial=0.0)))
        for key in sorted(keys):
            hit = self.place_of_key.get(key)
            if hit is None or not devices[self.code[hit[0]] == hit[1]].any():
                continue  # a place of another partition (a site is one partition) or unknown
            if any(o.key == key for o in self.outages.values()):
                continue
            o = self.outages[self._new_outage(*hit)]
            o.raised = True
            o.keep_until = keep

    def forget_outage(self, key: str) -> None:
        """A person cleared or closed the outage alarm: its devices, if still silent, are judged anew."""
        for oid, o in list(self.outages.items()):
            if o.key == key:
                rest = self.member == oid
                self.member[rest] = -1
                self.held[rest] = True
                self.held_since[rest] = -np.inf  # no second wait: an outage again if still out, else alone
                del self.outages[oid]

    def carry_outages(
        self, old: LivenessWatch, dst: npt.NDArray[np.int64], src: npt.NDArray[np.int64]
    ) -> None:
        """Move `old`'s held devices and outages over (a changed registry), by device and place."""
        self.held[dst] = old.held[src]
        self.held_since[dst] = old.held_since[src]
        self.not_before = old.not_before
        ids: dict[int, int] = {}
        for oid, o in old.outages.items():
            hit = self.place_of_key.get(o.key)
            if hit is None:
                continue
            ids[oid] = self._new_outage(*hit)
            mine = self.outages[ids[oid]]
            mine.raised, mine.reported, mine.reported_at, mine.keep_until = (
                o.raised,
                o.reported,
                o.reported_at,
                o.keep_until,
            )
        was = old.member[src]
        moved = np.array([ids.get(int(m), -1) for m in was.tolist()], dtype=np.int64)
        self.member[dst] = moved
        self.held[dst[(was >= 0) & (moved < 0)]] = True  # its outage's place is gone: judged anew

    def _event(self, dev: int, kind: DetectorEventKind, ts: float) -> DetectorEvent:
        silent_for = ts - float(self.last_seen[dev])
        return DetectorEvent(
            device_id=self.index.device_ids[dev],
            alarm_type=OFFLINE,
            kind=kind,
            category=self.index.profiles[dev].watch.category,
            ts=ts,
            value=round(silent_for, 1) if kind is DetectorEventKind.RAISE else None,
            detail=(
                f"no message for {silent_for:.0f} s (limit {self.limit[dev]:.0f} s)"
                if kind is DetectorEventKind.RAISE
                else "reporting again"
            ),
            basis=self.index.profiles[dev].watch.basis,
        )

    def restore_offline(self, device_ids: set[str]) -> None:
        for device_id in device_ids:
            dev = self.index.dev_of.get(device_id)
            if dev is not None:
                self.offline[dev] = True


class ChannelWatch:
    """Per-channel staleness, for devices that relay several sensors (a gateway, a multi-channel
    electrical-fire monitor): the device keeps reporting, one of its channels has stopped.

    Only profiles with `liveness.channel_offline_after` take part; a channel is stale after that many
    report intervals without a reading of it, and fresh again at its next reading.
    """

    def __init__(self, index: DeviceIndex, start: float) -> None:
        self.index = index
        limit = np.full(index.n_slots, np.inf)
        for dev, profile in enumerate(index.profiles):
            k = profile.watch.channel_offline_after
            if k is not None:
                base = int(index.slot_base[dev])
                limit[base : base + len(profile.channels)] = k * profile.report_interval_s
        self.limit = limit
        self.watched = np.isfinite(limit)
        self.last = np.full(index.n_slots, start, dtype=np.float64)
        self.stale = np.zeros(index.n_slots, dtype=bool)

    def seen(
        self, slot: npt.NDArray[np.int32], ts: npt.NDArray[np.float64], now: float
    ) -> list[DetectorEvent]:
        if not slot.size or not self.watched.any():
            return []
        # Receipt time, not the device's timestamp: a device clock that is off must not make a
        # channel look stale or fresh.
        self.last[slot] = np.maximum(self.last[slot], now)
        back = np.unique(slot[self.stale[slot]])
        self.stale[back] = False
        return [self._event(int(s), DetectorEventKind.CLEAR, now) for s in back.tolist()]

    def grace(self, now: float) -> None:
        """As LivenessWatch.grace: the service starting knows nothing of the time it was down."""
        np.maximum(self.last, now, out=self.last)

    def own(self, mine: npt.NDArray[np.bool_], gained: npt.NDArray[np.bool_], now: float) -> None:
        """As LivenessWatch.own, per channel slot of the devices."""
        slot_mine, slot_gained = mine[self.index.slot_device], gained[self.index.slot_device]
        self.last[~slot_mine] = np.inf
        self.stale[~slot_mine] = False
        self.last[slot_gained] = now

    def pause(self, gap: float) -> None:
        """As LivenessWatch.pause: time not listening is no channel's silence."""
        self.last += gap

    def check(self, now: float) -> list[DetectorEvent]:
        silent = np.flatnonzero(self.watched & ~self.stale & (now - self.last > self.limit))
        self.stale[silent] = True
        return [self._event(int(s), DetectorEventKind.RAISE, now) for s in silent.tolist()]

    def _event(self, slot: int, kind: DetectorEventKind, ts: float) -> DetectorEvent:
        dev = int(self.index.slot_device[slot])
        channel = self.index.slot_channel[slot]
        profile = self.index.profiles[dev]
        silent_for = ts - float(self.last[slot])
        return DetectorEvent(
            device_id=self.index.device_ids[dev],
            alarm_type=f"{channel}.stale",
            kind=kind,
            category=profile.watch.category,
            ts=ts,
            value=round(silent_for, 1) if kind is DetectorEventKind.RAISE else None,
            channel=channel,
            detail=(
                f"no {channel} reading for {silent_for:.0f} s (limit {self.limit[slot]:.0f} s)"
                if kind is DetectorEventKind.RAISE
                else f"{channel} reporting again"
            ),
            basis="site policy: a channel silent behind a live device cannot report its hazard",
        )

    def restore_stale(self, keys: set[tuple[str, str]]) -> None:
        for device_id, alarm_type in keys:
            channel, _, suffix = alarm_type.partition(".")
            dev = self.index.dev_of.get(device_id)
            if suffix == "stale" and dev is not None and channel in self.index.channel_offsets[dev]:
                self.stale[int(self.index.slot_base[dev]) + self.index.channel_offsets[dev][channel]] = True
