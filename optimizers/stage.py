"""One shape for every training stage, as torchtune's recipes share setup / train / save / cleanup.

    class Distill(Stage):                  # optimizers/distill.py; GRPO in rl_grpo.py, seq2seq RL in rl_seq2seq.py
        def setup(self): ...               # load the start weights and data, build the trainer, find the resume point
        def train(self): ...               # train (from the newest complete checkpoint, if any)
        def save(self): ...                # the final model, atomically (save_model), and train_log.json
        def cleanup(self): ...             # weights, optimizer state and trainer back to the OS

    model_dir = Distill(...).run()

Around its trainer a compile stage (``kd_stage`` in distill.py, ``rl_stage`` in rl.py) keeps its
folder ``OUT/<stage>/`` with :class:`StageFolder`: the ``DONE.json`` marker (``lmcot.keyed``, the
one resume-marker scheme; the experiment's steps use it too) that lets a rerun skip a finished
stage, and the ``checkpoints/`` an interrupted one resumes from. Every final model folder (``kd/model``, ``rl/model``, ``OUT/small_lm``) is written by
:func:`replacing_folder`: aside, then renamed into place, so a crash never leaves a half-written
folder that a rerun would take for a finished one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lmcot.console import say
from lmcot.jsonl import write_json
from lmcot.keyed import Marker

log = logging.getLogger(__name__)

DONE = "DONE.json"


class Stage(ABC):
    """One training stage's life. ``run`` calls ``finished``, then setup -> train -> save, and
    ``cleanup`` last whatever happened (a failed stage must not keep its weights resident either)."""

    def finished(self) -> Path | None:
        """The stage's model when an earlier run already made it from the same inputs (skip it all)."""
        return None

    @abstractmethod
    def setup(self) -> None:
        """Load the start weights and the data, build the trainer, find the checkpoint to resume from."""

    @abstractmethod
    def train(self) -> None:
        """Train to the step budget, writing resumable checkpoints on the way."""

    @abstractmethod
    def save(self) -> Path:
        """Write the final model with :func:`save_model` (and the training log); return its folder."""

    def cleanup(self) -> None:
        """Drop the trainer, the models and the optimizer state, and give their memory back."""
        from lmcot.memory import free_memory

        self.__dict__.clear()  # every reference this stage holds: trainer, policy, reference model, optimizer
        free_memory()  # ... and glibc's freed heap back to the OS before the next stage (lmcot.memory)

    def run(self) -> Path:
        done = self.finished()
        if done is not None:
            return done
        try:
            self.setup()
            self.train()
            return self.save()
        finally:
            self.cleanup()


class StageFolder:
    """``OUT/<stage>/``: ``DONE.json`` (written last, holding the key of the stage's inputs),
    ``checkpoints/`` (resume state, removed once the stage is done) and ``model/`` (the result)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.name = self.path.name
        self.marker = Marker(self.path / DONE)
        self.model = self.path / "model"
        self.checkpoints = self.path / "checkpoints"

    def finished(self, key: str, *, remove_stale: bool = True) -> bool:
        """Whether the stage finished from inputs with this ``key``. A marker for other inputs is
        removed (``remove_stale``; with several processes only the main one does) and says so."""
        if not self.marker.exists():
            return False
        if self.marker.matches(key):
            return True
        if remove_stale:
            say(f"{self.name}:", "yellow", "settings, data or start weights changed since the finished run; "
                "running it again")
            self.marker.clear()
        return False

    def skipped(self) -> str:
        """The finished stage's model, after saying it is skipped."""
        say(f"{self.name}:", "green", f"complete under {self.path}, skipped")
        return str(self.model)

    def done(self, key: str, **info: Any) -> None:
        """Mark the stage finished (last, atomically) and drop its resume checkpoints: weights plus
        optimizer state (~3x the model) that serve nothing any more."""
        self.marker.write(key, model="model", **info)
        shutil.rmtree(self.checkpoints, ignore_errors=True)

    def train_log(self) -> list[dict[str, Any]]:
        """The trainer's log history (``train_log.json``), empty when there is none."""
        try:
            return json.loads((self.path / "train_log.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []

    def tokens_trained(self) -> int | None:
        """The tokens the stage trained on, from its train_log.json (None when the log has no count)."""
        from lmcot.curves import tokens_trained

        return tokens_trained(self.train_log())

    def draw_curves(self, out: Path) -> None:
        """``out/plots/<stage>_curves.png`` from the stage's train_log.json: the loss, and for RL each
        reward's mean per step."""
        from lmcot.curves import curve_series, draw_curves

        heading = {"kd": "KD (distillation)", "rl": "RL (policy optimisation)"}[self.name]
        path = draw_curves(curve_series(self.train_log()), out / "plots" / f"{self.name}_curves.png", heading)
        if path is not None:
            say(f"{self.name}:", "green", f"training curves: {path}")


def keep_checkpoints_if(checkpoints: Path, marker: Marker, key: str, changed: str | None = None) -> None:
    """Resume ``checkpoints`` only when ``marker`` says they were made from inputs with ``key``:
    otherwise remove them (resuming would mix two trainings, saying ``changed`` if given); then
    record ``key``."""
    if checkpoints.exists() and not marker.matches(key):
        shutil.rmtree(checkpoints)
        if changed:
            say(f"{checkpoints.parent.name}:", "yellow", changed)
    marker.write(key)


@contextmanager
def replacing_folder(target: str | Path) -> Iterator[Path]:
    """Yield ``.<name>.tmp`` beside ``target`` to write a folder into; on success it replaces
    ``target`` in one rename, on failure it is removed and ``target`` stays as it was."""
    target = Path(target)
    tmp, old = target.with_name(f".{target.name}.tmp"), target.with_name(f".{target.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # The old folder moves aside before the new one moves in: no moment without a complete folder
    # but the instant between two renames.
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def save_model(model, tokenizer, target: str | Path, markers: dict[str, Any] | None = None) -> Path:
    """The one final-model save: ``model`` (safetensors) and ``tokenizer`` into ``target`` through
    :func:`replacing_folder`, with ``markers`` (file name -> JSON) written inside before the rename."""
    target = Path(target)
    with replacing_folder(target) as tmp:
        model.save_pretrained(str(tmp))  # transformers 5 writes safetensors only
        tokenizer.save_pretrained(str(tmp))
        for name, doc in (markers or {}).items():
            write_json(tmp / name, doc)
    return target


def release(*lms) -> None:
    """Drop the weights of the in-process LMs among ``lms`` (they load again on their next call)."""
    from lmcot.hf_engine import hf_engine_of

    for lm in lms:
        engine = hf_engine_of(lm) if lm is not None else None
        if engine is not None:
            engine.release()


def log_memory(where: str) -> None:
    """The process's resident memory at a stage boundary (``--verbose`` shows it)."""
    from lmcot.memory import rss_mb

    log.info("memory %s: %s MB resident", where, rss_mb())


__all__ = ["DONE", "Stage", "StageFolder", "keep_checkpoints_if", "log_memory", "release", "replacing_folder",
           "save_model"]
