"""What a compile stage's keys are made of: a stage is skipped on a rerun only when the key of its
inputs matches its ``DONE.json`` marker (``optimizers/stage.py``'s ``StageFolder``); changed inputs
drop stale checkpoints there and move stale teacher traces aside here (each stage decides which
inputs go into its key: ``kd_stage`` in ``distill.py``, ``rl_stage`` in ``rl.py``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lmcot.config import SmallLMConfig
from lmcot.keyed import Marker
from lmcot.console import say


def sampling_settings(lm) -> dict[str, Any]:
    return {k: lm.kwargs.get(k) for k in ("temperature", "max_tokens", "top_p")}


def trained_settings(student: SmallLMConfig) -> dict[str, Any]:
    """The small-LM settings that shape training (its prompt budget and rationale length)."""
    return student.model_dump(mode="json", include={"max_tokens", "max_input_tokens", "dtype"})


def rollout_sampling(student: SmallLMConfig) -> dict[str, Any]:
    """The repetition controls RL rollouts sample with, when set (absent at the defaults, so keys of
    runs made before these settings existed stay valid)."""
    return {k: v for k, v in (("repetition_penalty", student.repetition_penalty),
                              ("no_repeat_ngram_size", student.no_repeat_ngram_size)) if v not in (1.0, 0)}


def invalidate_traces_if_changed(kd_dir: Path, traces_key: str) -> None:
    """Traces written by another teacher (or at another temperature) must not be resumed: move them aside."""
    marker, traces = Marker(kd_dir / "traces_key.json"), kd_dir / "traces.jsonl"
    if traces.exists() and marker.exists() and not marker.matches(traces_key):
        aside = traces.with_name(f"traces.stale-{int(time.time())}.jsonl")
        traces.rename(aside)
        say("kd:", "yellow", f"the teacher changed; earlier traces moved to {aside.name}")
    marker.write(traces_key)

