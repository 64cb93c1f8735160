"""Several training processes (``torchrun --nproc_per_node N -m lmcot compile ...`` or
``accelerate launch --num_processes N -m lmcot compile ...``): who does what.

KD and RL (TRL's GRPO/RLOO) train data-parallel through TRL/transformers' Trainer (which reads the
launcher's environment itself); in RL each process scores its own share of the rollouts. Everything
else happens once, on the main process: the teacher bootstrap (no paid call is made twice),
evaluations and every file write; the other processes wait at a barrier and receive what they need
(the kept rationales) by broadcast. A plain run is one process and none of this costs
anything: accelerate is imported only when the launcher says there are several processes.
"""

from __future__ import annotations

import os
from typing import Any


MAIN_ONLY_WORK_HOURS = 24


def world_size() -> int:
    """How many processes the launcher started (torchrun and accelerate both set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def _state():
    # accelerate's PartialState: on CPU it must be asked for cpu=True, else each process sees itself
    # alone; under torchrun that gives MULTI_CPU with the gloo backend.
    from datetime import timedelta

    import torch
    from accelerate import PartialState

    # The other processes wait at a barrier while the main one alone bootstraps the teacher and
    # evaluates, which takes hours on a large set; torch's default of 30 min would kill them. A crash
    # still ends every process at once: the launcher (torchrun, accelerate) stops the group.
    return PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(hours=MAIN_ONLY_WORK_HOURS))


def is_main() -> bool:
    return world_size() == 1 or _state().is_main_process


def wait_for_everyone() -> None:
    if world_size() > 1:
        _state().wait_for_everyone()


def broadcast(value: Any) -> Any:
    """The main process's ``value`` on every process (a picklable object)."""
    if world_size() == 1:
        return value
    from accelerate.utils import broadcast_object_list

    box = [value if is_main() else None]
    broadcast_object_list(box, from_process=0)
    return box[0]


def describe() -> str:
    """E.g. ``"1 process"`` or ``"2 processes (MULTI_CPU, gloo)"`` for stage summaries."""
    if world_size() == 1:
        return "1 process"
    state = _state()
    return f"{state.num_processes} processes ({state.distributed_type.value}, {state.backend})"
