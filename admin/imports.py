"""Importing rooms and meters from CSV or XLSX: every row checked first, then all stored or none.

A file is read into rows of {column: text}; each row becomes a typed record or a per-row error
("row 7: area_m2 must be a number"). Rows are then checked against the site (buildings,
gateways, tariffs, duplicates). Only a file without a single error is stored, in one transaction.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from openpyxl import load_workbook
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from devices.profiles import PROFILES
from store.models import Building, Floor, Gateway, Meter, Room, Tariff

MAX_ROWS = 20_000
ROOM_COLUMNS = ("building", "floor", "number", "area_m2", "floor_name")
ROOM_REQUIRED = ("building", "floor", "number")
METER_COLUMNS = ("address", "utility", "model", "protocol", "gateway", "port", "building", "room", "tariff",
                 "is_master")
METER_REQUIRED = ("address", "utility", "model", "protocol")
PROTOCOLS = ("modbus_rtu_tcp", "modbus_tcp", "dlt645_tcp", "mqtt")
UTILITIES = ("electricity", "water")


class ImportRefused(Exception):
    """The file or some of its rows are wrong; `errors` says where, one line each."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors[:5]))
        self.errors = errors


def read_table(filename: str, data: bytes) -> list[dict[str, str]]:
    """Rows of a .csv (UTF-8, with or without BOM, or GB18030) or .xlsx file, keyed by lower-cased header."""
    name = filename.lower()
    if name.endswith(".xlsx"):
        try:
            ws = load_workbook(io.BytesIO(data), read_only=True, data_only=True).active
            raw = [["" if c is None else str(c) for c in row] for row in ws.iter_rows(values_only=True)]
        except Exception as ex:  # openpyxl raises many kinds for a file that is not a workbook
            raise ImportRefused([f"not a readable .xlsx file ({type(ex).__name__})"]) from ex
    elif name.endswith(".csv"):
        for encoding in ("utf-8-sig", "gb18030"):
            try:
                text = data.decode(encoding)
                break
            except UnicodeDecodeError:
                continue
        else:
            raise ImportRefused(["the .csv file is neither UTF-8 nor GB18030 text"])
        raw = list(csv.reader(io.StringIO(text)))
    else:
        raise ImportRefused(["the file must be .csv or .xlsx"])
    raw = [r for r in raw if any(c.strip() for c in r)]
    if not raw:
        raise ImportRefused(["the file is empty"])
    if len(raw) - 1 > MAX_ROWS:
        raise ImportRefused([f"at most {MAX_ROWS} rows per file"])
    header = [h.strip().lower() for h in raw[0]]
    return [{h: (row[i].strip() if i < len(row) else "") for i, h in enumerate(header) if h} for row in raw[1:]]


def _header_errors(rows: list[dict[str, str]], required: tuple[str, ...]) -> list[str]:
    present = set(rows[0]) if rows else set()
    missing = [c for c in required if c not in present]
    return [f"missing column(s): {', '.join(missing)}"] if missing else ([] if rows else ["no data rows"])


@dataclass(frozen=True)
class RoomRow:
    line: int
    building: str
    level: int
    number: str
    area: Decimal
    floor_name: str


def room_rows(rows: list[dict[str, str]]) -> list[RoomRow]:
    if errors := _header_errors(rows, ROOM_REQUIRED):
        raise ImportRefused(errors)
    out, errors, seen = [], [], set()
    for n, r in enumerate(rows, start=2):  # line 1 is the header
        problems = [f"{c} is empty" for c in ROOM_REQUIRED if not r.get(c)]
        try:
            level = int(r.get("floor") or "0")
        except ValueError:
            problems.append("floor must be a whole number")
            level = 0
        try:
            area = Decimal(r.get("area_m2") or "0")
            if not area.is_finite() or area < 0 or area >= Decimal("100000000"):
                raise InvalidOperation
        except InvalidOperation:
            problems.append("area_m2 must be a number of m² (0 or more)")
            area = Decimal(0)
        key = (r.get("building", ""), r.get("number", ""))
        if key in seen:
            problems.append(f"room {key[1]} of building {key[0]} appears twice in the file")
        seen.add(key)
        if len(r.get("number", "")) > 40 or len(r.get("building", "")) > 100:
            problems.append("building or number too long")
        if problems:
            errors.append(f"row {n}: " + "; ".join(problems))
        else:
            out.append(RoomRow(n, key[0], level, key[1], area.quantize(Decimal("0.01")),
                               r.get("floor_name") or f"{level}F"))
    if errors:
        raise ImportRefused(errors)
    return out


async def _place(s: AsyncSession, site_id: int, cache: dict[Any, Any], building: str, level: int | None = None,
                 floor_name: str = "", create: bool = True) -> tuple[Building | None, Floor | None]:
    b = cache.get(building)
    if b is None:
        b = await s.scalar(select(Building).where(Building.site_id == site_id, Building.name == building))
        if b is None and create:
            b = Building(site_id=site_id, name=building)
            s.add(b)
            await s.flush()
        cache[building] = b
    if b is None or level is None:
        return b, None
    f = cache.get((building, level))
    if f is None:
        f = await s.scalar(select(Floor).where(Floor.building_id == b.id, Floor.level == level))
        if f is None:
            f = Floor(building_id=b.id, level=level, name=floor_name[:50] or f"{level}F")
            s.add(f)
            await s.flush()
        cache[(building, level)] = f
    return b, f


async def store_rooms(s: AsyncSession, site_id: int, rows: list[RoomRow]) -> int:
    """Add the rooms (and any buildings/floors they name); a room that exists refuses the whole file."""
    cache: dict[Any, Any] = {}
    errors, new = [], []
    for r in rows:
        b, f = await _place(s, site_id, cache, r.building, r.level, r.floor_name)
        assert b is not None and f is not None
        if await s.scalar(select(Room.id).where(Room.building_id == b.id, Room.number == r.number)) is not None:
            errors.append(f"row {r.line}: room {r.number} of building {r.building} exists already")
            continue
        new.append(Room(site_id=site_id, building_id=b.id, floor_id=f.id, number=r.number, area_m2=r.area))
    if errors:
        raise ImportRefused(errors)
    s.add_all(new)
    await s.flush()
    return len(new)


@dataclass(frozen=True)
class MeterRow:
    line: int
    address: str
    utility: str
    model: str
    protocol: str
    gateway: str
    port: int
    building: str
    room: str
    tariff: str
    is_master: bool


def meter_rows(rows: list[dict[str, str]]) -> list[MeterRow]:
    if errors := _header_errors(rows, METER_REQUIRED):
        raise ImportRefused(errors)
    out, errors, seen = [], [], set()
    for n, r in enumerate(rows, start=2):
        problems = [f"{c} is empty" for c in METER_REQUIRED if not r.get(c)]
        if r.get("utility") and r["utility"] not in UTILITIES:
            problems.append(f"utility must be one of {', '.join(UTILITIES)}")
        if r.get("model") and r["model"] not in PROFILES:
            problems.append(f"unknown model {r['model']!r} (known: {', '.join(sorted(PROFILES))})")
        if r.get("protocol") and r["protocol"] not in PROTOCOLS:
            problems.append(f"protocol must be one of {', '.join(PROTOCOLS)}")
        try:
            port = int(r.get("port") or "1")
            if not 0 <= port <= 65535:
                raise ValueError
        except ValueError:
            problems.append("port must be a whole number 0-65535")
            port = 1
        if bool(r.get("room")) and not r.get("building"):
            problems.append("a room needs its building")
        master = (r.get("is_master") or "").lower() in ("1", "yes", "y", "true", "是")
        key = (r.get("gateway", ""), port, r.get("address", ""))
        if key in seen:
            problems.append(f"meter {key[2]} on gateway {key[0] or '-'} port {port} appears twice in the file")
        seen.add(key)
        if len(r.get("address", "")) > 32:
            problems.append("address longer than 32 characters")
        if problems:
            errors.append(f"row {n}: " + "; ".join(problems))
        else:
            out.append(MeterRow(n, r["address"], r["utility"], r["model"], r["protocol"], r.get("gateway", ""),
                                port, r.get("building", ""), r.get("room", ""), r.get("tariff", ""), master))
    if errors:
        raise ImportRefused(errors)
    return out


async def store_meters(s: AsyncSession, site_id: int, rows: list[MeterRow]) -> int:
    """Add the meters; unknown gateway, room or tariff names and taken addresses refuse the whole file."""
    gateways = {g.code: g for g in await s.scalars(select(Gateway).where(Gateway.site_id == site_id))}
    tariffs = {t.name: t for t in await s.scalars(select(Tariff).where(Tariff.site_id == site_id))}
    cache: dict[Any, Any] = {}
    errors, new = [], []
    for r in rows:
        problems = []
        gw = gateways.get(r.gateway) if r.gateway else None
        if r.gateway and gw is None:
            problems.append(f"no gateway {r.gateway!r} at this site")
        tariff = tariffs.get(r.tariff) if r.tariff else None
        if r.tariff and (tariff is None or tariff.utility != r.utility):
            problems.append(f"no {r.utility} tariff named {r.tariff!r} at this site")
        room_id = None
        if r.room:
            b, _ = await _place(s, site_id, cache, r.building, create=False)
            room_id = b and await s.scalar(select(Room.id).where(Room.building_id == b.id, Room.number == r.room))
            if room_id is None:
                problems.append(f"no room {r.room} in building {r.building}")
        if gw is not None and await s.scalar(select(Meter.id).where(
                Meter.gateway_id == gw.id, Meter.port == r.port, Meter.address == r.address)) is not None:
            problems.append(f"meter {r.address} on gateway {r.gateway} port {r.port} exists already")
        if problems:
            errors.append(f"row {r.line}: " + "; ".join(problems))
            continue
        new.append(Meter(site_id=site_id, room_id=room_id, gateway_id=gw.id if gw else None, port=r.port,
                         address=r.address, utility=r.utility, model=r.model, protocol=r.protocol,
                         tariff_id=tariff.id if tariff else None, is_master=r.is_master))
    if errors:
        raise ImportRefused(errors)
    s.add_all(new)
    await s.flush()
    return len(new)
