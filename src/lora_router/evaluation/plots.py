"""Fonts for the pictures the product draws: every label in a font that has its glyphs, never as empty boxes.

matplotlib's default font (DejaVu Sans) has no Chinese, and most Linux servers
have no Chinese font at all. ``find_font`` picks, for the actual text, the
first font that has a glyph for every character: matplotlib's default, then
an installed CJK family, then the Noto Sans CJK SC that the ``mplfonts``
package (``train`` extra) ships inside its wheel, then any installed font.
Where none does, ``drawable_labels`` names the labels L0, L1 ... and gives an
ASCII legend, with a warning that says how to get a font.
"""

from __future__ import annotations

import unicodedata
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib.util import find_spec
from pathlib import Path

# Tried in this order where installed: Linux packages (fonts-noto-cjk, fonts-wqy-*), Windows, macOS.
CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "Source Han Sans CN", "WenQuanYi Zen Hei",
                "WenQuanYi Micro Hei", "Microsoft YaHei", "SimHei", "PingFang SC", "Hiragino Sans GB", "Heiti SC",
                "Noto Sans CJK JP", "Arial Unicode MS")
BUNDLED_FONT = ("mplfonts", "fonts/NotoSansCJKsc-Regular.otf")  # (package, file in it): Noto Sans CJK SC, OFL
INSTALL_HINT = ("pip install 'lora-router[train]' (brings the mplfonts package with Noto Sans CJK SC) or install "
                "a system font (Debian/Ubuntu: apt install fonts-noto-cjk)")


class MissingFontWarning(UserWarning):
    """No installed font draws some text of a picture; it is drawn in ASCII instead."""


@dataclass
class DrawnLabels:
    """Labels as a picture draws them."""

    texts: list[str]  # the labels themselves, or L0, L1 ... for those no font draws
    font: object | None  # a matplotlib FontProperties that draws every text; None: matplotlib's default
    legend: str  # ASCII lines "L0 = ..." for the renamed labels; "" when every label is drawn as itself


def _drawn_chars(text: str) -> set[int]:
    # Spaces and control characters are laid out, not drawn from a glyph.
    return {ord(c) for c in text if not c.isspace() and unicodedata.category(c) != "Cc"}


@cache
def _charset(path: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(FT2Font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):  # a broken or unreadable font file draws nothing
        return frozenset()


def bundled_font_file() -> Path | None:
    """The Noto Sans CJK SC file inside the installed ``mplfonts`` package, or None."""
    spec = find_spec(BUNDLED_FONT[0])
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / BUNDLED_FONT[1]
    return path if path.is_file() else None


def _candidates():
    """Font files in the order they are tried."""
    from matplotlib import font_manager

    yield font_manager.findfont(font_manager.FontProperties(), fallback_to_default=True)
    regular = sorted(font_manager.fontManager.ttflist, key=lambda f: (f.style != "normal", abs(f.weight - 400)
                                                                      if isinstance(f.weight, int) else 1000))
    for family in CJK_FAMILIES:
        yield from (f.fname for f in regular if f.name == family)
    bundled = bundled_font_file()
    if bundled is not None:
        yield str(bundled)
    yield from sorted({f.fname for f in regular})


def find_font(text: str):
    """A matplotlib ``FontProperties`` whose font has a glyph for every character of ``text``, or None.

    Several texts meant for one font can be joined: ``find_font("".join(labels))``.
    """
    from matplotlib import font_manager

    wanted = _drawn_chars(text)
    for path in _candidates():
        if wanted <= _charset(path):
            return font_manager.FontProperties(fname=path)
    return None


def ascii_name(text: str) -> str:
    r"""``text`` in ASCII: characters outside ASCII as ``\uXXXX``, so the name is still exact and copyable."""
    return text.encode("ascii", "backslashreplace").decode("ascii")


def drawable_labels(labels: Sequence[str], what: str = "labels") -> DrawnLabels:
    """Labels a picture can draw: all in one font that covers them, or, for those no font draws,
    ASCII names L0, L1 ... with an ASCII legend and a ``MissingFontWarning`` naming them in full."""
    labels = [str(label) for label in labels]
    font = find_font("".join(labels))
    if font is not None:
        return DrawnLabels(labels, font, "")
    default = find_font("")  # matplotlib's default font: it draws whatever it covers
    covered = _charset(default.get_file()) if default is not None else frozenset()
    texts = [label if _drawn_chars(label) <= covered else f"L{i}" for i, label in enumerate(labels)]
    renamed = [(text, label) for text, label in zip(texts, labels) if text != label]
    warnings.warn(f"no installed font draws the {what} " + ", ".join(f"{t} = {label}" for t, label in renamed)
                  + f"; the picture names them {', '.join(t for t, _ in renamed)}. To draw them: {INSTALL_HINT}",
                  MissingFontWarning, stacklevel=2)
    legend = "\n".join(f"{t} = {ascii_name(label)}" for t, label in renamed)
    return DrawnLabels(texts, default, legend)


def drawable_text(text: str) -> tuple[str, object | None]:
    """``text`` and a font that draws it; where none does, ``ascii_name(text)`` in the default font, and a warning."""
    font = find_font(text)
    if font is not None:
        return text, font
    warnings.warn(f"no installed font draws {text!r}; the picture writes it as {ascii_name(text)!r}. "
                  f"To draw it: {INSTALL_HINT}", MissingFontWarning, stacklevel=2)
    return ascii_name(text), find_font("")
