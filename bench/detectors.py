"""Throughput of the detection engine alone, over a large registry with the shipped profiles.

    python3 -m bench.detectors [--devices 100000] [--batch 5000] [--readings 3000000]

A registry of `--devices` devices is generated with the shipped profiles in a hospital-like mix;
each batch holds `--batch` telemetry messages from distinct random devices (ingest's default
batch_max), every channel of each plus battery and RSSI, around the simulated devices' own normal
values with their noise. Decoding is done beforehand: only `Engine.process` is timed. Reported:
readings/s (channel values), messages/s, each bank's share of the time, state memory per device,
and a check that a fire value placed in a batch is raised by that same batch (batching adds no
delay beyond one batch interval).
"""

from __future__ import annotations

import argparse
import platform
import random
import time
from datetime import UTC, datetime

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from core.domain import AlarmCategory
from core.registry import BuildingSpec, Device, FloorSpec, Registry, SiteSpec, ZoneSpec
from detectors.engine import Engine
from detectors.samples import Samples
from device_profiles.loader import load_profiles
from ingest.decode import DecodedBatch
from ingest.index import DeviceIndex
from simulators.devices import SimDevice

# Share of devices per profile in a hospital: smoke detectors dominate (DESIGN §2).
MIX = {
    "smoke-photoelectric": 0.55,
    "heat-a1r": 0.12,
    "water-pressure": 0.05,
    "electrical-fire": 0.10,
    "combustible-gas": 0.06,
}
T0 = 1_800_000_000.0


def registry(n: int, seed: int = 0) -> Registry:
    profiles = load_profiles()
    mix = {p: w for p, w in MIX.items() if p in profiles}
    rest = [p for p in profiles if p not in mix]
    for p in rest:  # the other shipped kinds (oxygen, doors, sockets, tanks) share what is left
        mix[p] = (1.0 - sum(MIX.values())) / len(rest)
    rng = random.Random(seed)
    names, weights = list(mix), list(mix.values())
    per_zone = 20
    zones = [ZoneSpec(id=f"z{z}", name=f"{z}区") for z in range(n // per_zone + 1)]
    floors = [
        FloorSpec(id=f"f{f}", name=f"{f}F", zones=zones[f * 50 : (f + 1) * 50])
        for f in range(len(zones) // 50 + 1)
    ]
    site = SiteSpec(id="s", name="bench", buildings=[BuildingSpec(id="b", name="bench", floors=floors)])
    devices = [
        Device(
            id=f"d{i:06d}",
            profile=rng.choices(names, weights)[0],
            place=f"s/b/f{(i // per_zone) // 50}/z{i // per_zone}",
        )
        for i in range(n)
    ]
    return Registry([site], devices)


def baselines(index: DeviceIndex, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per slot: the simulated device's normal value and its noise (one resolution step or more)."""
    rng = random.Random(seed)
    base = np.zeros(index.n_slots)
    noise = np.zeros(index.n_slots)
    for dev, profile in enumerate(index.profiles):
        model = SimDevice(index.device_ids[dev], index.sites[dev], profile, rng)
        for name, offset in index.channel_offsets[dev].items():
            slot = int(index.slot_base[dev]) + offset
            base[slot] = model.baseline[name]
            noise[slot] = profile.channels[name].resolution
    return base, noise


def make_batch(
    index: DeviceIndex,
    devs: np.ndarray,
    t: float,
    base: np.ndarray,
    noise: np.ndarray,
    rng: np.random.Generator,
) -> DecodedBatch:
    counts = np.array([len(index.profiles[d].channels) for d in devs.tolist()])
    slot = (
        np.repeat(index.slot_base[devs], counts)
        + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    ).astype(np.int32)
    ts = np.full(slot.size, t) + rng.uniform(0, 1, slot.size)
    value = base[slot] + rng.normal(0, 1, slot.size) * noise[slot]
    value = np.clip(value, index.slot_lo[slot], index.slot_hi[slot])
    n = devs.size
    return DecodedBatch(
        sample_slot=slot,
        sample_ts=ts,
        sample_value=value,
        reading_dev=devs.astype(np.int32),
        reading_seq=np.arange(n, dtype=np.int64),
        reading_ts=np.full(n, t),
        reading_batt=rng.uniform(60, 100, n),
        reading_rssi=rng.uniform(-90, -60, n),
        seen_dev=devs.astype(np.int32),
        seen_at=np.full(n, t),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5_000, help="telemetry messages per batch")
    parser.add_argument("--readings", type=int, default=3_000_000, help="channel readings to time")
    args = parser.parse_args()
    console = Console()

    with console.status("building the registry and the engine"):
        reg = registry(args.devices)
        index = DeviceIndex.build(reg, load_profiles())
        engine = Engine(index, start=T0)
        base, noise = baselines(index)
    rng = np.random.default_rng(1)
    batches: list[DecodedBatch] = []
    t = T0
    total = 0
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("generating batches", total=args.readings)
        while total < args.readings:
            devs = rng.choice(index.n_devices, size=min(args.batch, index.n_devices), replace=False)
            b = make_batch(index, np.sort(devs), t, base, noise, rng)
            batches.append(b)
            total += b.n_samples
            t += 1.0
            bar.update(task, completed=total)

    # Warm up (first batches allocate), then time only Engine.process.
    for b in batches[:3]:
        engine.process(b)
    events = 0
    started = time.perf_counter()
    for b in batches[3:]:
        events += len(engine.process(b))
    elapsed = time.perf_counter() - started
    timed = batches[3:]
    readings = sum(b.n_samples for b in timed)
    messages = sum(int(b.reading_dev.size) for b in timed)

    # Where the time goes: each bank alone over the same batches.
    share = []
    for bank in engine.banks:
        det = bank.detector.clone()
        s0 = time.perf_counter()
        for b in timed:
            stream = engine._streams(b)[bank.stream]
            det.update(stream)
        share.append((bank.name, det.n_units, time.perf_counter() - s0, det.state_bytes()))

    # A fire value in a batch is raised by that batch.
    smoke = next(d for d in range(index.n_devices) if index.profiles[d].kind.value == "smoke")
    fire_slot = index.slot(index.device_ids[smoke], "smoke")
    probe = engine.process_samples(
        Samples(np.array([fire_slot], np.int32), np.array([t + 10]), np.array([1.0]))
    )
    same_batch = any(
        e.category is AlarmCategory.FIRE and e.device_id == index.device_ids[smoke] for e in probe
    )

    state = engine.state_bytes()
    table = Table(title=f"detection engine, {index.n_devices:,} devices, {engine.n_units:,} detector units")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("readings timed", f"{readings:,}")
    table.add_row("batches x messages", f"{len(timed)} x {args.batch:,}")
    table.add_row("readings/s (one core)", f"{readings / elapsed:,.0f}")
    table.add_row("messages/s", f"{messages / elapsed:,.0f}")
    table.add_row("mean batch time", f"{elapsed / len(timed) * 1000:.1f} ms")
    table.add_row("events raised/cleared", f"{events:,}")
    table.add_row("state memory", f"{state / 1e6:.1f} MB ({state / index.n_devices:,.0f} B per device)")
    table.add_row("fire value raised by its own batch", "yes" if same_batch else "NO")
    console.print(table)
    banks = Table(title="time per bank (each alone over the same batches)")
    for col in ("bank", "units", "share of engine time", "state"):
        banks.add_column(col, justify="left" if col == "bank" else "right")
    for name, units, secs, nbytes in sorted(share, key=lambda r: -r[2]):
        banks.add_row(name, f"{units:,}", f"{secs / elapsed:.0%}", f"{nbytes / 1e6:.1f} MB")
    console.print(banks)
    console.print(
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}, {datetime.now(UTC):%Y-%m-%d}"
    )


if __name__ == "__main__":
    main()
