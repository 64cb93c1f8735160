"""KD and RL on two processes (``torchrun --nproc_per_node 2 -m lmcot compile``, gloo on CPU): the
teacher is asked once, evaluations run once, the main process alone writes, and the folder matches a
one-process run's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.cli import compile_overrides
from support.paths import ROOT


def _files(folder: Path) -> set[str]:
    # Resume checkpoints hold one RNG state per process; they are not part of the compiled program.
    return {str(p.relative_to(folder)) for p in folder.rglob("*")
            if p.is_file() and "checkpoints" not in p.relative_to(folder).parts}


def test_world_size_one_is_the_main_process_and_needs_no_accelerate(monkeypatch):
    from lmcot import distributed

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.is_main() and distributed.describe() == "1 process"
    assert distributed.broadcast({"kept": [1]}) == {"kept": [1]}
    distributed.wait_for_everyone()  # a no-op, not a hang


def test_several_processes_refuse_rl_of_an_encoder_decoder_student_before_any_call(monkeypatch, tmp_path,
                                                                                      tiny_seq2seq_path):
    import dspy

    from lmcot.config import load_config
    from lmcot.lms import build_lm
    from lmcot.optimizers.compiler import LMCoTCompiler
    from lmcot.programs import LMGuidedCoT

    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = load_config(None, ["stages=[kd,rl]", f"small_lm.model={tiny_seq2seq_path}"])
    # A large LM nobody may call: the refusal comes before the first paid call.
    program = LMGuidedCoT(build_lm(cfg.small_lm), dspy.LM("openai/never-called", api_base="http://127.0.0.1:9"))
    with pytest.raises(ValueError, match="runs as one process"):
        LMCoTCompiler(cfg, tmp_path / "out").compile(program, [dspy.Example(id="1", question="q")])
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_torchrun_two_processes_train_kd_and_rl_once(oracle_server, tiny_causal_path, tmp_path):
    # RL on rationale quality alone (the cheap aspect scorers): its rollouts make no LM call, so the two
    # runs' request counts must match exactly, which shows the bootstrap and every evaluation ran once.
    args = ["compile", *compile_overrides(oracle_server, tmp_path, tiny_causal_path, stages="kd,rl", train_limit=4),
            "--set", "kd.max_steps=2", "--set", "kd.num_samples=1", "--set", "data.dev_limit=2",
            "--set", "rl.max_steps=1", "--set", "rl.weights.answer_f1=0"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    # `python -m torch.distributed.run` is the `torchrun` command, run by this interpreter.
    torchrun = [sys.executable, "-m", "torch.distributed.run"]

    before = oracle_server.request_count
    two = subprocess.run([*torchrun, "--nproc_per_node", "2", "-m", "lmcot", *args, "--out", str(tmp_path / "two")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, (two.stdout + two.stderr)[-4000:]
    requests_two = oracle_server.request_count - before
    done = json.loads((tmp_path / "two" / "kd" / "DONE.json").read_text())
    assert done["processes"] == "2 processes (MULTI_CPU, gloo)"
    assert "kd: trained on 2 processes (MULTI_CPU, gloo)" in two.stdout + two.stderr
    rl_done = json.loads((tmp_path / "two" / "rl" / "DONE.json").read_text())
    assert rl_done["processes"] == "2 processes (MULTI_CPU, gloo)"
    assert "rl: trained on 2 processes (MULTI_CPU, gloo)" in two.stdout + two.stderr
    assert (two.stdout + two.stderr).count("RL ") <= 3, "one progress bar, from the main process"
    assert json.loads((tmp_path / "two" / "rl" / "train_log.json").read_text()), "RL logged its step"
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert {"untrained", "before_rl", "compiled"} <= set(metrics)

    # One process, same settings, fresh cache: the same requests (none made twice) and the same files.
    shutil.rmtree(tmp_path / "cache")
    before = oracle_server.request_count
    one = subprocess.run([sys.executable, "-m", "lmcot", *args, "--out", str(tmp_path / "one")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    assert oracle_server.request_count - before == requests_two
    assert _files(tmp_path / "two") == _files(tmp_path / "one")
