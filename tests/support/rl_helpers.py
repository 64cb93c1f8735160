"""Shared pieces for the RL tests: tiny models, a learnable reward, a stand-in rationale scorer."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from lmcot.config import REWARDS, RLConfig

QUESTIONS = [
    "Which magazine was started first, Arthur's Magazine or First for Women?",
    "Were Scott Derrickson and Ed Wood of the same nationality?",
    "Who is the director of the film that was released in 2004?",
    "Where was she born?",
    "When did the band release their first album?",
    "Which university was founded in 1865?",
    "What is the name of the team?",
    "Is the river longer than the canal?",
]


def trainset(n: int = 8) -> list[dict[str, str]]:
    return [{"question": q, "context": f"Title {i}: Some short context sentence number {i}.", "answer": f"answer {i}"}
            for i, q in enumerate(QUESTIONS[:n])]


def first_half_letters(rows: list[dict[str, Any]]) -> list[float]:
    """A reward a random tiny model can climb fast: the share of its ASCII letters in a..m.
    Random text scores ~0.55 with spread within a group; 1.0 is reachable by token choice alone."""
    out = []
    for r in rows:
        letters = [c for c in r["rationale"].lower() if "a" <= c <= "z"]
        out.append(sum(c <= "m" for c in letters) / len(letters) if letters else 0.0)
    return out


class CountingReward:
    """Wraps a reward callable and counts the batches it was asked to score (thread-safe)."""

    def __init__(self, fn):
        self.fn, self.calls, self._lock = fn, 0, threading.Lock()

    def __call__(self, rows):
        with self._lock:
            self.calls += 1
        return self.fn(rows)


class StandInScorer:
    """Same API as ``RationaleScorer.score``: deterministic scores in [0, 1] from the text, and a
    record of every call (rows, aspects)."""

    def __init__(self):
        self.calls: list[tuple[int, list[str]]] = []
        self._lock = threading.Lock()

    @staticmethod
    def value(aspect: str, rationale: str) -> float:
        words = rationale.split()
        if aspect == "fluency":
            return sum(c.isalpha() for c in rationale) / max(1, len(rationale))
        if aspect == "factuality":
            return min(1.0, len(words) / 10)
        return (len(rationale) % 7) / 6  # any other aspect: some spread

    def score(self, rows: list[dict[str, Any]], aspects) -> list[dict[str, float]]:
        aspects = list(aspects)
        with self._lock:
            self.calls.append((len(rows), aspects))
        for r in rows:
            assert set(r) >= {"question", "context", "rationale"}
        return [{a: self.value(a, r["rationale"]) for a in aspects} for r in rows]


def rl_config(**kw) -> RLConfig:
    """An RLConfig for tests: every built-in reward off unless ``weights`` turns it on, quiet, small."""
    weights = {name: 0.0 for name in REWARDS}
    weights.update(kw.pop("weights", {}))
    base = dict(num_generations=4, batch_size=8, max_new_tokens=12, report_to=[], logging_steps=1,
                save_steps=1000, seed=0, weights=weights)
    base.update(kw)
    return RLConfig(**base)


def reward_log(out_dir: Path) -> list[dict[str, Any]]:
    """Training log entries that carry a reward (TRL also logs a final summary without one)."""
    return [h for h in json.loads((Path(out_dir) / "train_log.json").read_text()) if "reward" in h]


def mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)
