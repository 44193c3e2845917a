"""A scanner for machine text in what Chinese users read: the console, pushes, PDFs and spreadsheets.

Built from the code's own vocabularies, not from a list of today's strings: every StrEnum value of
core/domain.py (and the other enums people see), every alarm type the shipped profiles and the
service can raise, every profile id and channel name; plus the shapes machine text takes (dotted
`device.offline`, snake_case `pre_alarm`) and the detectors' English templates (`device reported`,
`no message for`, `clears below`). Device ids, units, numbers and a few names are allowed.

Point it at any page of the console with `scan_console(page, base_url, routes)`: a view added
later (roster, duty log, drills, floor plans, history) is scanned by naming its route.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from alarms.type_names import ALARM_TYPE_ZH
from core import domain
from device_profiles.loader import load_profiles
from firewatch.faults import Condition

# The detectors' English detail templates and other English that must not reach a Chinese reader.
ENGLISH_TEMPLATES = (
    "device reported",
    "no message for",
    "reporting again",
    "clears below",
    "clears above",
    "limit",
    "silent together",
    "outside its physical range",
    "unchanged for",
    "readings",
    "undefined",
    "null",
    "NaN",
)

# ASCII that is fine in Chinese text: device ids (SD-2F-W-01, b2-f2-z2-corr-smk-1), GB numbers,
# units, the brand, the emergency number, hexadecimal point addresses, the language toggle.
ALLOWED = (
    r"GB(?:/T)? ?\d+(?:\.\d+)*(?:-\d+)?",
    r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+",  # device ids, ticket numbers (YH-20261123-00001)
    r"0x[0-9a-fA-F]+",
    r"dB/m|°C|MPa|%LEL|LEL|mA|dBm|RMS|kPa|A|V|W|m|s|KB|MB|B",
    r"firewatch|InfluxDB|MQTT|English|PDF|XLSX|CSV|Excel|WebSocket|ok|OK",
    r"L[123]|N",  # the phases of a cable
    r"[A-Z]\d*F|B\d+|\d+F",  # floors: 1F, B1
)

# A place path (s1/b1/f1/z1/r101, hosp/inpatient/2F): three or more ASCII parts joined by "/"; a
# person reads the place's names (住院楼 2F 西区 …), never its path. (dB/m and GB/T have two.)
_PATH = re.compile(r"(?<![\w/.-])[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+){2,}(?![\w/-])")
_DOTTED = re.compile(r"(?<![\w.-])[a-z]+(?:\.[a-z_]+)+(?![\w-])")
_SNAKE = re.compile(r"(?<![\w-])[a-z]+_[a-z0-9_]+(?![\w-])")
_HYPHENATED = re.compile(r"(?<![\w-])[a-z][a-z0-9]*(?:-[a-z0-9]+)+(?![\w-])")
_WORD = re.compile(r"(?<![\w.-])[A-Za-z][A-Za-z0-9_.]*(?<!\.)(?![\w-])")


def _enum_values(module: object) -> set[str]:
    return {
        m.value
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, StrEnum) and cls is not StrEnum
        for m in cls
    }


def vocabulary() -> set[str]:
    """Every identifier the code might let through: enum values, alarm types, profiles, channels."""
    words = _enum_values(domain) | {c.value for c in Condition} | set(ALARM_TYPE_ZH)
    for profile in load_profiles().values():
        words |= {profile.id, *profile.channels, *profile.alarm_types()}
        words |= {str(k) for k in profile.events}
    return words


@dataclass
class Scanner:
    """`findings(text)`: the machine text in `text`, each with a little context."""

    vocab: set[str] = field(default_factory=vocabulary)
    allowed: tuple[str, ...] = ALLOWED
    templates: tuple[str, ...] = ENGLISH_TEMPLATES

    def __post_init__(self) -> None:
        self._allowed = re.compile(r"(?<![\w-])(?:" + "|".join(self.allowed) + r")(?![\w-])")
        words = "|".join(re.escape(t) for t in self.templates)
        self._templates = re.compile(rf"(?<![A-Za-z])(?:{words})(?![A-Za-z])", re.IGNORECASE)

    def findings(self, text: str) -> list[str]:
        out: list[str] = []

        def flag(m: re.Match[str], why: str) -> None:
            start, end = max(0, m.start() - 15), min(len(text), m.end() + 15)
            out.append(f"{why} {m.group(0)!r} in …{text[start:end]!r}…")

        for m in self._templates.finditer(text):
            flag(m, "English template")
        for m in _HYPHENATED.finditer(text):  # a profile id is not a device id
            if m.group(0) in self.vocab:
                flag(m, "identifier")
        for m in _PATH.finditer(text):
            flag(m, "place path")
        rest = self._allowed.sub(" ", _PATH.sub(" ", text))
        for m in _DOTTED.finditer(rest):
            flag(m, "dotted identifier")
        for m in _SNAKE.finditer(rest):
            flag(m, "snake_case identifier")
        for m in _WORD.finditer(rest):
            if m.group(0) in self.vocab and not _DOTTED.fullmatch(m.group(0)) and "_" not in m.group(0):
                flag(m, "identifier")
        return out

    def scan_all(self, texts: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
        """Findings per named text (only those with any)."""
        return {name: f for name, text in texts if (f := self.findings(text))}


async def scan_console(
    page: object, base_url: str, routes: Iterable[str], scanner: Scanner | None = None, settle: str = "#app"
) -> dict[str, list[str]]:
    """Open each console route (`board`, `places/<path>`, `device/<id>`, `tickets/<id>`, a view added
    with fw.registerView ...) in a signed-in Playwright page and scan its visible text.
    Returns the findings per route (only routes with any)."""
    from playwright.async_api import Page, expect

    assert isinstance(page, Page)
    scanner = scanner or Scanner()
    texts = []
    for route in routes:
        await page.goto(f"{base_url}/console#/{route}")
        await expect(page.locator(settle)).to_be_visible()
        await page.wait_for_load_state("networkidle")
        texts.append((route, await page.inner_text("body")))
    return scanner.scan_all(texts)
