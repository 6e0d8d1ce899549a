"""Torch-side model pieces: the base encoder and the task heads.

Not in STYLE.md's list: training, the router and export all need the same base
loading, fingerprint and heads, and ``adapters/`` is about files on disk.
"""

from .base import DEFAULT_BASE_MODEL, RandomBaseWarning, fingerprint, init_base, is_random, load_base

__all__ = ["DEFAULT_BASE_MODEL", "RandomBaseWarning", "fingerprint", "init_base", "is_random", "load_base"]
