"""The CJK font that printable exports embed (the ticket form, the incident report): without one,
their Chinese would print as empty boxes. Found among Debian's CJK fonts or configured
(`exports.font_path`), and registered with reportlab once per process."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

# CJK TrueType fonts as Debian installs them, best first, with the face to use in a collection.
KNOWN_CJK_FONTS: tuple[tuple[Path, int], ...] = (
    (Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"), 0),  # fonts-wqy-microhei
    (Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"), 0),  # fonts-wqy-zenhei
    (Path("/usr/share/fonts/truetype/arphic/uming.ttc"), 0),  # fonts-arphic-uming
)
FONT_HINT = "apt-get install fonts-wqy-microhei, or set exports.font_path / FIREWATCH_EXPORTS__FONT_PATH"


class FontUnavailableError(RuntimeError):
    """No CJK font to embed: without one the form's Chinese would print as empty boxes."""


@dataclass(frozen=True, slots=True)
class CjkFont:
    path: Path
    subfont: int = 0


def find_cjk_font(override: Path | None = None) -> CjkFont:
    """The font to embed: the configured one, else the first known Debian CJK font installed."""
    if override is not None:
        if not override.is_file():
            raise FontUnavailableError(f"exports.font_path {override} is not a file: {FONT_HINT}")
        return CjkFont(override)
    for path, subfont in KNOWN_CJK_FONTS:
        if path.is_file():
            return CjkFont(path, subfont)
    known = ", ".join(str(p) for p, _ in KNOWN_CJK_FONTS)
    raise FontUnavailableError(f"no CJK font found (looked for {known}): {FONT_HINT}")


# reportlab keeps registered fonts in a process-wide table; parsing a CJK font takes a moment and
# API requests render in worker threads, so each font is registered once, under a lock.
_registered: dict[CjkFont, str] = {}
_register_lock = threading.Lock()


def font_name(font: CjkFont) -> str:
    """The reportlab name of `font`, registering it on first use."""
    with _register_lock:
        name = _registered.get(font)
        if name is None:
            name = f"firewatch-cjk-{len(_registered)}"
            try:
                pdfmetrics.registerFont(TTFont(name, str(font.path), subfontIndex=font.subfont))
            except Exception as exc:  # reportlab raises TTFError and plain errors for a bad file
                raise FontUnavailableError(f"cannot use font {font.path} ({exc}): {FONT_HINT}") from exc
            _registered[font] = name
        return name


def embedded_font(override: Path | None = None) -> str:
    """The reportlab name of the CJK font to embed (see `find_cjk_font`)."""
    return font_name(find_cjk_font(override))
