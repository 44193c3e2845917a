"""`firewatch simulate building`: generate a simulated hospital's registry at any size."""

from __future__ import annotations

import dataclasses
import re
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.registry import ID_RE, Device, SiteSpec
from simulators.hospital import (
    HospitalSize,
    HospitalSizeError,
    hospital_for_devices,
    write_registry,
)

SHOW_BUILDINGS = 8  # rows of the building table before the rest are summed into one
PROGRESS_FROM = 10_000  # devices; smaller hospitals are written before a bar would show
DEMO = HospitalSize()


def building(
    out: Annotated[Path, typer.Option("--out", "-o", help="registry YAML to write (replaced if it exists)")],
    devices: Annotated[
        int | None,
        typer.Option(help="about this many devices: picks the size options to match (not with them)"),
    ] = None,
    inpatient_buildings: Annotated[
        int | None,
        typer.Option(help="inpatient buildings, 0 for a clinic", show_default=str(DEMO.inpatient_buildings)),
    ] = None,
    ward_floors: Annotated[
        int | None,
        typer.Option(help="ward floors per inpatient building", show_default=str(DEMO.ward_floors)),
    ] = None,
    zones_per_floor: Annotated[
        int | None,
        typer.Option(help="nursing units (zones) per ward floor", show_default=str(DEMO.zones_per_floor)),
    ] = None,
    rooms_per_zone: Annotated[
        int | None,
        typer.Option(
            help="wards per nursing unit, rooms per department", show_default=str(DEMO.rooms_per_zone)
        ),
    ] = None,
    medtech_floors: Annotated[
        int | None,
        typer.Option(
            help="floors of the outpatient and medical-technology building",
            show_default=str(DEMO.medtech_floors),
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="the same seed gives the same registry")] = 0,
    site_id: Annotated[
        str, typer.Option(help="site id, the first level of every place path and topic")
    ] = "sxzyy",
    site_name: Annotated[str, typer.Option(help="the site's name")] = "绍兴市中医院",
) -> None:
    """Write the registry of a generated hospital: its place tree and its devices.

    The hospital has an outpatient and medical-technology building (plant rooms in B1, the fire
    control room, pharmacy, laboratory, pathology, imaging), inpatient buildings of ward floors (the
    first with the kitchen) and an e-bike charging shed. Every room has its detectors, every device
    a position in metres on its floor's plan; docs/simulators.md has the placement rules.

    Size it with --devices (from a one-room clinic of a dozen devices up to 1,000,000) or with the
    size options; with neither you get the demo hospital. Then run it with
    `firewatch simulate devices --registry FILE`.
    """
    console = Console()
    err = Console(stderr=True)

    def refuse(message: str) -> typer.Exit:
        err.print(f"[red]{escape(message)}[/]")
        return typer.Exit(2)

    explicit = {
        "inpatient_buildings": inpatient_buildings,
        "ward_floors": ward_floors,
        "zones_per_floor": zones_per_floor,
        "rooms_per_zone": rooms_per_zone,
        "medtech_floors": medtech_floors,
    }
    given = [f"--{k.replace('_', '-')}" for k, v in explicit.items() if v is not None]
    if not re.match(ID_RE, site_id):
        raise refuse(f"--site-id {site_id!r} is not an id: letters, digits, '_', '.', '-', up to 64")
    try:
        if devices is not None:
            if given:
                raise refuse(f"--devices picks the size itself: leave out {', '.join(given)}")
            size = hospital_for_devices(devices)
        else:
            size = dataclasses.replace(DEMO, **{k: v for k, v in explicit.items() if v is not None})
            size.validate()
    except HospitalSizeError as exc:
        raise refuse(str(exc)) from None
    # Progress for big hospitals only; wards dominate, about one device per ward and a few per unit.
    wards = size.inpatient_buildings * size.ward_floors * size.zones_per_floor * (size.rooms_per_zone + 4)
    expected = devices if devices is not None else wards

    started = time.perf_counter()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=expected < PROGRESS_FROM,
    ) as bar:
        task = bar.add_task("generating buildings", total=None)
        hospital = size.generate(
            site_id=site_id,
            site_name=site_name,
            seed=seed,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
        n = len(hospital.devices)
        bar.update(task, description="writing", completed=0, total=None)
        try:
            write_registry(
                out,
                hospital.sites,
                hospital.devices,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        except OSError as exc:
            err.print(f"[red]cannot write {escape(str(out))}: {escape(str(exc))}[/]")
            raise typer.Exit(1) from None
    elapsed = time.perf_counter() - started

    for table in _summary(hospital.sites, hospital.devices):
        console.print(table)
    s = hospital.size
    console.print(
        f"[green]wrote {n:,} devices[/] to {escape(str(out))} in {elapsed:.1f} s: "
        f"{s.inpatient_buildings} inpatient building(s) of {s.ward_floors} ward floor(s), "
        f"{s.zones_per_floor} zone(s) per floor, {s.rooms_per_zone} room(s) per zone, "
        f"{s.medtech_floors} medical-technology floor(s); seed {seed}"
    )


def _summary(sites: list[SiteSpec], devices: list[Device]) -> list[Table]:
    """Devices by profile, by building, and the rooms holding hazardous chemicals."""
    from device_profiles.loader import load_profiles

    try:
        names = {pid: p.name_zh for pid, p in load_profiles().items()}
    except Exception:  # the summary must not fail over a profile problem; ids still say enough
        names = {}
    by_profile = Counter(d.profile for d in devices)
    wireless = Counter(d.profile for d in devices if "wireless" in d.tags)
    profiles = Table(title="devices by profile")
    profiles.add_column("profile")
    profiles.add_column("设备")
    profiles.add_column("devices", justify="right")
    profiles.add_column("wireless", justify="right")
    for pid, count in sorted(by_profile.items(), key=lambda kv: (-kv[1], kv[0])):
        profiles.add_row(pid, names.get(pid, ""), f"{count:,}", f"{wireless[pid]:,}" if wireless[pid] else "")
    profiles.add_row("[bold]total[/]", "", f"[bold]{len(devices):,}[/]", f"{sum(wireless.values()):,}")

    by_building = Counter(d.place.split("/", 2)[1] for d in devices)
    buildings = Table(title="devices by building")
    buildings.add_column("building")
    buildings.add_column("名称")
    buildings.add_column("floors", justify="right")
    buildings.add_column("devices", justify="right")
    hazmat_rooms: list[tuple[str, str, str]] = []
    rows: list[tuple[str, str, str, int]] = []
    for site in sites:
        for b in site.buildings:
            rows.append((b.id, b.name, str(len(b.floors)), by_building[b.id]))
            for f in b.floors:
                for z in f.zones:
                    for r in z.rooms:
                        if "hazmat" in r.tags:
                            path = f"{site.id}/{b.id}/{f.id}/{z.id}/{r.id}"
                            hazmat_rooms.append((r.department or z.department, r.name, path))

    if len(rows) > SHOW_BUILDINGS:  # a campus of many alike towers: the first few, the rest summed
        hidden = rows[SHOW_BUILDINGS - 2 : -2]
        rows = [
            *rows[: SHOW_BUILDINGS - 2],
            ("…", f"{len(hidden)} more", "", sum(r[3] for r in hidden)),
            *rows[-2:],
        ]
    for bid, name, floors, count in rows:
        buildings.add_row(bid, name, floors, f"{count:,}")

    hazmat_paths = {path for _, _, path in hazmat_rooms}
    in_room = Counter(d.place for d in devices if d.place in hazmat_paths)
    hazmat = Table(title="hazardous chemicals (危化品)")
    hazmat.add_column("科室")
    hazmat.add_column("room")
    hazmat.add_column("place")
    hazmat.add_column("devices", justify="right")
    for dept, room, path in hazmat_rooms:
        hazmat.add_row(dept, room, path, str(in_room[path]))
    return [profiles, buildings, hazmat]
