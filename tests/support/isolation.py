"""Run code in a fresh interpreter where some imports are refused: what the deploy install (no torch) can do."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "peft", "optimum", "sklearn", "scipy", "matplotlib")

_SCRIPT = """
import importlib.abc, json, sys
BANNED = {banned!r}

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BANNED:
            raise ImportError("tried to import " + name)
        return None

if {block}:
    sys.meta_path.insert(0, Refuse())
result = None
{code}
print(json.dumps({{"loaded": sorted(m for m in sys.modules if m.split(".")[0] in BANNED), "result": result}}))
"""


def run_refusing(code: str, banned: tuple[str, ...] = HEAVY, *, args: tuple[str, ...] = (), block: bool = True,
                 timeout: float = 300) -> dict:
    """Run ``code`` (it may set ``result``); ``{"loaded": banned modules it loaded, "result": result}``.

    With ``block`` every import of ``banned`` fails; without, they are only looked for in ``sys.modules``.
    """
    script = _SCRIPT.format(banned=banned, block=block, code=code)
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
