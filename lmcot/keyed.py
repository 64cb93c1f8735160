"""Resume markers: a JSON file that records the key of the inputs its work was made from.

    key = key_of({"teacher": "openai/gpt-4o-mini", "kd": cfg.kd.model_dump(mode="json")})
    marker = Marker(out / "kd" / "DONE.json")
    if marker.matches(key): ...skip...
    marker.write(key, model="model", kept=28)       # atomically, last

Every place lmcot skips finished work on a rerun uses this one scheme: a compile stage's ``DONE.json``,
the teacher traces' and the trainers' checkpoints' keys, KD's ``lmcot_kd.json`` (under the name
``fingerprint``), the experiment's ``steps/<name>.json`` (whose file holds the step's result too). A key is a short hash of its parts' canonical JSON; a marker whose key differs
(changed settings, data or start weights) counts as absent.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from lmcot.jsonl import write_json


def key_of(parts: Any) -> str:
    """A short, stable hash of ``parts`` (any JSON-able value; other objects by their ``str``)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_sha256(path: str | Path) -> str:
    """The sha256 (hex) of a file's content, read in 1 MiB blocks: the one hash of a file's bytes
    (a program folder's weights, a GGUF file's conversion key)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Marker:
    """One marker file: ``{"key": ..., **info}`` (``field`` names the key's entry when a file that
    predates this scheme calls it otherwise)."""

    def __init__(self, path: str | Path, field: str = "key"):
        self.path = Path(path)
        self.field = field

    def read(self) -> dict[str, Any] | None:
        """The marker's content, or None when it is missing or unreadable (a torn write counts as absent)."""
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def key(self) -> str | None:
        doc = self.read()
        return doc.get(self.field) if doc else None

    def matches(self, key: str) -> bool:
        return self.key() == key

    def found(self, key: str) -> dict[str, Any] | None:
        """The marker's content when it was written for ``key``; None when missing, torn or stale."""
        doc = self.read()
        return doc if doc is not None and doc.get(self.field) == key else None

    def exists(self) -> bool:
        return self.path.exists()

    def write(self, key: str, **info: Any) -> None:
        write_json(self.path, {self.field: key, **info})

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


__all__ = ["Marker", "key_of"]
