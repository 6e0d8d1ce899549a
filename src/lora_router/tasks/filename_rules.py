"""Where a file name begins and ends: the model says which names are there, these rules cut them.

docs/labelling-guide.md §3: a file reference ends with its extension, has a stem, and
keeps the directory path written with it; quotes and brackets around it are
not part of it. A token tagger on its own misses those edges (it stops inside
``Q2_churn_analysis_draft2.docx`` or runs on into ``…parquet和orders.csv合并``),
so decoding snaps what the model marks to the text's own edges, much as spaCy's
``Doc.char_span(alignment_mode="expand")`` snaps a character span to tokens:

* an **ASCII run** (letters, digits, ``._-~=/\\`` and a ``:`` that starts a path,
  as in ``D:\\`` or ``hdfs://``) is indivisible: a name holds all of it or none;
* a name **ends with its extension**: a run ending in ``.ext`` (1-10 letters or
  digits, at least one letter) ends a name; nothing follows the extension;
* leftwards a name takes **other letters** (Chinese, full-width, accented)
  only where the model marks them, and further ASCII runs only where the
  model marks part of them (at the lower ``extend`` score: the name's end is
  already known), and stops at a space, a quote or punctuation;
* two names with only letters between (``….parquet和orders.csv``) part at the
  model's weakest point between them;
* a bracket group inside a stem (``发票明细(5月).xlsx``) belongs to it when the
  model marks it and the stem goes on before it;
* a quoted name (``“Annual Review 2023.pptx”``) is the whole quoted text when
  that text ends with an extension and the model marks where it starts;
* a name never begins with a function word of a request (把, 将, 从, 和 …):
  ``从orders.csv`` names ``orders.csv`` even when a small model marks the 从
  (none of the 450 bundled names, nor any a user is likely to write, starts so);
* a name must have a stem (``.csv`` alone is not one) and at least one
  character the model marks: no name is found without the model.

Pure Python: no numpy, no torch. Scores are per character, in [0, 1]: the
model's probability that the character is inside a file name.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

# Characters of an ASCII run. ":" only where a path follows (D:\, s3://), so
# "ZIP:raw.zip" is two runs.
_ASCII_NAME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-~=/\\")
_PATH_AFTER_COLON = frozenset("/\\")
_EXTENSION = re.compile(r"\.([A-Za-z0-9]{1,10})$")
_TRAILING = "._-~=/\\:"  # what a sentence may leave after an extension: "orders.csv." "a.csv/"
_LEADING = "-=:"
_OPENING_OF = {")": "(", "）": "（"}
_QUOTES = {"《": "》", "“": "”", "「": "」", "『": "』", "‘": "’", "\"": "\"", "'": "'", "`": "`", "【": "】"}
# Besides an ASCII run's characters and letters, what a quoted name may hold ("Q1 report (final).xlsx").
_QUOTED_NAME_EXTRA = frozenset(" :()（）")
_MAX_GROUP = 20  # characters inside a bracket group that may belong to a stem
# Characters that introduce a file in a request ("把a.csv", "从b.xlsx", "a.csv和c.csv") and begin no real name;
# 用/对/在/看/请 are left out on purpose: 用户画像.docx, 对账单.xlsx, 在职名单.xlsx, 看板.csv, 请假记录.xlsx.
_NEVER_STARTS = frozenset("把将从和与及跟让的是给被向")
_MAX_QUOTED = 120

ASCII, LETTER, OTHER = "ascii", "letter", "other"


@dataclass(frozen=True)
class _Unit:
    kind: str
    start: int
    end: int


def _is_ascii_name_char(text: str, i: int) -> bool:
    c = text[i]
    if c == ":":
        return i + 1 < len(text) and text[i + 1] in _PATH_AFTER_COLON
    return c in _ASCII_NAME


def _is_letter(c: str) -> bool:
    """A non-ASCII character a stem may hold: letters, digits and marks of any script (汉字, Ａ, é)."""
    return not c.isascii() and unicodedata.category(c)[0] in "LNM"


def _units(text: str) -> list[_Unit]:
    """Maximal ASCII runs, and every other character on its own."""
    units: list[_Unit] = []
    i = 0
    while i < len(text):
        if _is_ascii_name_char(text, i):
            j = i + 1
            while j < len(text) and _is_ascii_name_char(text, j):
                j += 1
            units.append(_Unit(ASCII, i, j))
            i = j
            continue
        units.append(_Unit(LETTER if _is_letter(text[i]) else OTHER, i, i + 1))
        i += 1
    return units


def extension_end(text: str, start: int, end: int) -> int | None:
    """Where the name in ``text[start:end]`` ends if it ends with an extension (trailing dots etc. dropped)."""
    stripped = text[start:end].rstrip(_TRAILING)
    m = _EXTENSION.search(stripped)
    if m is None or not any(c.isalpha() for c in m.group(1)):
        return None  # "v3.2", "18.20.3": a version, not an extension
    return start + len(stripped)


def has_stem(name: str) -> bool:
    """Whether a name has something before its extension besides path characters (".csv" has not)."""
    m = _EXTENSION.search(name)
    stem = name[: m.start()] if m else name
    return any(c.isalnum() for c in stem)


class _Marks:
    def __init__(self, scores: Sequence[float], threshold: float, extend: float):
        self.scores, self.threshold, self.extend = scores, threshold, extend

    def any(self, start: int, end: int, level: float | None = None) -> bool:
        level = self.threshold if level is None else level
        return any(self.scores[i] >= level for i in range(start, min(end, len(self.scores))))

    def mean(self, start: int, end: int) -> float:
        return sum(self.scores[start:end]) / max(1, end - start)

    def stem(self, start: int, end: int) -> bool:
        """Whether the model keeps a stem going through ``text[start:end]`` (the lower level)."""
        return self.any(start, end, self.extend)


def find_file_names(
    text: str, scores: Sequence[float], threshold: float = 0.5, extend: float = 0.25
) -> list[tuple[int, int]]:
    """Character ranges of the file names in ``text``, in order; ``scores[i]``: P(character i is in a name).

    ``threshold``: the score from which a character counts as marked by the model
    (a name needs one). ``extend``: the lower score that carries a stem on leftwards
    once a name is there, so a stem the model is less sure of is not cut short.
    (0.25 was the best of 0.1 ... 0.5 on a held-out fifth of the bundled train
    split, two splits, demo settings on the tiny base; 0.2 to 0.3 were within 0.02.)
    """
    if len(scores) != len(text):
        raise ValueError(f"scores has {len(scores)} values for a text of {len(text)} characters")
    if not 0.0 <= extend <= threshold <= 1.0:
        raise ValueError(f"need 0 <= extend <= threshold <= 1, got extend={extend}, threshold={threshold}")
    marks = _Marks(scores, threshold, extend)
    units = _units(text)
    names: list[tuple[int, int]] = []
    for k, unit in enumerate(units):
        if unit.kind != ASCII:
            continue
        end = extension_end(text, unit.start, unit.end)
        if end is None:
            continue
        start = _walk_left(text, units, k, marks)
        while start < unit.start and text[start] in _NEVER_STARTS:
            start += 1
        while start < end and text[start] in _LEADING:
            start += 1
        if has_stem(text[start:end]) and marks.any(start, end):
            names.append((start, end))
    return _apply_quotes(text, names, marks)


def _walk_left(text: str, units: list[_Unit], k: int, marks: _Marks) -> int:
    """The first character of the name whose last ASCII run is ``units[k]``."""
    start = units[k].start
    taken: list[_Unit] = []  # what the walk took, right to left
    i = k - 1
    while i >= 0:
        unit = units[i]
        ends_a_name = unit.kind == ASCII and extension_end(text, unit.start, unit.end) is not None
        if ends_a_name and taken:
            # Two names with nothing but letters between ("a.parquet和b.csv"): something there joins
            # them, and the model's weakest point between them is where the second one begins.
            weakest = min(range(len(taken)), key=lambda j: (marks.mean(taken[j].start, taken[j].end), -j))
            return taken[weakest - 1].start if weakest else units[k].start
        if unit.kind != OTHER and not ends_a_name and marks.stem(unit.start, unit.end):
            start = unit.start
            taken.append(unit)
            i -= 1
        elif unit.kind == OTHER and text[unit.start] in _OPENING_OF:
            opening = _bracket_group(text, units, i, marks)
            if opening is None:
                break
            start = units[opening].start
            taken.append(_Unit(OTHER, units[opening].start, unit.end))
            i = opening - 1
        else:
            break
    return start


def _bracket_group(text: str, units: list[_Unit], close: int, marks: _Marks) -> int | None:
    """The unit index of the bracket opening ``units[close]`` when the group belongs to the stem, else None.

    It belongs when it is short, holds only name characters, the model marks
    part of it, and the stem goes on before it (a marked character).
    """
    want = _OPENING_OF[text[units[close].start]]
    i = close - 1
    while i >= 0 and units[close].start - units[i].start <= _MAX_GROUP:
        unit = units[i]
        if unit.kind == OTHER:
            if text[unit.start] != want or i == close - 1:
                return None
            before = units[i - 1] if i > 0 else None
            if before is None or before.kind == OTHER or not marks.stem(before.start, before.end):
                return None
            return i if marks.stem(unit.start, units[close].end) else None
        i -= 1
    return None


def _quoted(text: str) -> list[tuple[int, int]]:
    """Ranges of text between paired quotes or title brackets (《…》 “…” 「…」 '…' ``…``), on one line."""
    out, i = [], 0
    while i < len(text):
        close = _QUOTES.get(text[i])
        if close is not None:
            j = text.find(close, i + 1, i + 2 + _MAX_QUOTED)
            if j > i + 1 and "\n" not in text[i + 1 : j]:
                out.append((i + 1, j))
                i = j + 1
                continue
        i += 1
    return out


def _apply_quotes(text: str, names: list[tuple[int, int]], marks: _Marks) -> list[tuple[int, int]]:
    """A quoted text that is a file name replaces the pieces of it the rules above found."""
    for qs, qe in _quoted(text):
        while qs < qe and text[qs].isspace():
            qs += 1
        while qe > qs and text[qe - 1].isspace():
            qe -= 1
        inner = text[qs:qe]
        if (
            extension_end(text, qs, qe) != qe
            or not has_stem(inner)
            or not all(c in _QUOTED_NAME_EXTRA or c in _ASCII_NAME or _is_letter(c) for c in inner)
            or not marks.any(qs, qs + 1)
        ):
            continue
        names = [(s, e) for s, e in names if e <= qs or s >= qe] + [(qs, qe)]
    return sorted(names)
