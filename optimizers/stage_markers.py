"""What a finished compile stage was built from: a stage is skipped on a rerun only when the key of
its inputs matches its ``DONE.json`` marker (``lmcot.keyed``); changed inputs move stale teacher
traces aside and drop stale RL checkpoints (``optimizers/compiler.py`` decides which inputs go into
each key)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from lmcot.config import SmallLMConfig
from lmcot.keyed import Marker
from lmcot.console import rule, say

DONE = "DONE.json"


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


def stage_done(stage_dir: Path, key: str, remove_stale: bool = True) -> bool:
    marker = Marker(stage_dir / DONE)
    if not marker.exists():
        return False
    if marker.matches(key):
        return True
    if remove_stale:
        say(f"{stage_dir.name}:", "yellow", "settings, data or start weights changed since the finished run; "
              "running it again")
        marker.clear()
    return False


def invalidate_traces_if_changed(kd_dir: Path, traces_key: str) -> None:
    """Traces written by another teacher (or at another temperature) must not be resumed: move them aside."""
    marker, traces = Marker(kd_dir / "traces_key.json"), kd_dir / "traces.jsonl"
    if traces.exists() and marker.exists() and not marker.matches(traces_key):
        aside = traces.with_name(f"traces.stale-{int(time.time())}.jsonl")
        traces.rename(aside)
        say("kd:", "yellow", f"the teacher changed; earlier traces moved to {aside.name}")
    marker.write(traces_key)


def invalidate_checkpoints_if_changed(rl_dir: Path, resume_key: str) -> None:
    marker, ckpts = Marker(rl_dir / "resume_key.json"), rl_dir / "checkpoints"
    if ckpts.exists() and not marker.matches(resume_key):
        shutil.rmtree(ckpts)
        say("rl:", "yellow", "start weights or RL settings changed; old checkpoints removed")
    marker.write(resume_key)
