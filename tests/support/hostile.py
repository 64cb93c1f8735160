"""What a hostile program folder or cache ships, for the trust-boundary tests (not part of lmcot).

* :class:`Payload`: an object whose pickle, when loaded, creates a marker file (the proof that
  unpickling ran code; it runs nothing else).
* :func:`poison_pickle_cache`: DSPy's own pickle cache (diskcache) in a folder, every entry replaced by
  a :class:`Payload`: what an earlier lmcot wrote under ``cache_dir/dspy``, turned hostile.
* :func:`edit_program`: rewrite a folder's ``program.json`` through a function.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Payload:
    """Unpickling this calls ``open(marker, "w")``: the marker file appears if and only if it ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def pickle_cache(folder: Path):
    """DSPy's own disk cache (diskcache + pickle) in ``folder``, memory tier off."""
    from dspy.clients.cache import Cache

    return Cache(enable_disk_cache=True, enable_memory_cache=False, disk_cache_dir=str(folder))


def poison_pickle_cache(cache, marker: Path, extra_keys: tuple[str, ...] = ()) -> int:
    """Replace every entry of a DSPy pickle ``cache`` (and ``extra_keys``) with a :class:`Payload`."""
    keys = [*list(cache.disk_cache), *extra_keys]
    for key in keys:
        cache.disk_cache.set(key, Payload(marker))
    return len(keys)


def edit_program(folder: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """Apply ``change`` to ``folder/program.json`` in place."""
    file = folder / "program.json"
    doc = json.loads(file.read_text(encoding="utf-8"))
    change(doc)
    file.write_text(json.dumps(doc), encoding="utf-8")
    return folder
