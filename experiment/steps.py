"""Resumable steps. Each step's result is one JSON file ``OUT/steps/<name>.json`` written atomically
(temporary file + rename) and holding the key of its inputs: the file *is* the DONE marker
(``lmcot.keyed``, the scheme every resumable piece of lmcot uses). A rerun
with the same inputs reads it instead of running the step; changed inputs run it again. LM calls
inside a step that was interrupted are served by DSPy's disk cache, so none is paid twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from lmcot.keyed import Marker


class Steps:
    def __init__(self, out: str | Path, say: Callable[[str], None]):
        self.dir = Path(out) / "steps"
        self.say = say

    def path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def done(self, name: str, key: str) -> dict[str, Any] | None:
        doc = Marker(self.path(name)).found(key)
        return doc["result"] if doc is not None else None

    def run(self, name: str, key: str, fn: Callable[[], dict[str, Any]], index: str = "") -> dict[str, Any]:
        found = self.done(name, key)
        if found is not None:
            self.say(f"{index}{name}: done earlier, skipped")
            return found
        self.say(f"{index}{name}: running")
        result = fn()
        Marker(self.path(name)).write(key, result=result)
        return result
