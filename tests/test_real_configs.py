"""The shipped configs that use the real SmolLM2 student resolve to the installed GGUF file."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["quickstart.yaml", "real_reader.yaml", "experiment-quickstart.yaml",
                                  "gsm8k-quickstart.yaml"])
def test_real_model_configs_validate_and_resolve(name):
    from lmcot.model_loading import resolve_package_file
    from lmcot.config import load_config

    cfg = load_config(ROOT / "configs" / name)
    assert Path(resolve_package_file(cfg.small_lm.model)).is_file()
    assert (ROOT / cfg.data.train).is_file() and (ROOT / cfg.data.dev).is_file()
    if name == "real_reader.yaml":
        assert cfg.large_lm.backend == "transformers"
        assert Path(resolve_package_file(cfg.large_lm.model)).is_file()


def test_quickstart_data_keeps_gold_paragraphs():
    import json

    for split in ("train", "dev"):
        for rec in json.loads((ROOT / "configs" / "quickstart" / f"hotpotqa_{split}.json").read_text()):
            titles = {t for t, _ in rec["context"]}
            assert {t for t, _ in rec["supporting_facts"]} <= titles and len(titles) == 4


def test_real_scale_configs_validate():
    """The GPU + API-key configs load as they are shipped (hub ids; nothing is loaded here)."""
    from lmcot.config import load_config

    for name in ("hotpotqa.yaml", "experiment-hotpotqa.yaml"):
        cfg = load_config(ROOT / "configs" / name)
        assert cfg.large_lm.api_key_env and cfg.small_lm.backend == "transformers"


@pytest.mark.slow
def test_real_reader_config_compiles_and_evaluates_end_to_end(tmp_path, oracle_server):
    """configs/real_reader.yaml as a user runs it, shrunk with --set: compile (one KD step) then
    evaluate, with the real SmolLM2 GGUF as in-process student and in-process reader (plain answer
    prompt, strict parsing). The teacher is the scripted stand-in (kd.teacher): the 135M model as
    teacher rarely writes reasoning before its answer (0 of 8 greedy or seeded replies here), so KD on
    its rationales cannot be tested deterministically; its in-process path is tested in
    test_bootstrap.py (tiny model)."""
    import json

    from support.cli import run_cli

    out, dev = tmp_path / "out", ROOT / "configs/quickstart/hotpotqa_dev.json"
    shrink = ["--set", f"cache_dir={tmp_path / 'cache'}", "--set", "data.train_limit=2", "--set", "data.dev=null",
              "--set", "kd.num_samples=1", "--set", "kd.max_steps=1", "--set", "kd.batch_size=2",
              "--set", "kd.teacher.model=openai/oracle", "--set", f"kd.teacher.api_base={oracle_server.url}",
              "--set", "small_lm.max_tokens=24"]
    result = run_cli(["compile", "--config", str(ROOT / "configs/real_reader.yaml"), "--out", str(out), *shrink])
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "small_lm" / "model.safetensors").is_file() and (out / "kd" / "DONE.json").is_file()
    # The user's config again: a program folder never names the in-process reader (a path) to load.
    result = run_cli(["evaluate", "--program", str(out), "--config", str(ROOT / "configs/real_reader.yaml"),
                      "--out", str(tmp_path / "eval"), "--methods", "guided", "--limit", "1", "--set", f"data.dev={dev}",
                      "--set", f"cache_dir={tmp_path / 'cache'}", "--set", "small_lm.max_tokens=24"])
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["guided"]["n"] == 1
    row = json.loads((tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()[0])
    assert row["rationale"], "the trained student wrote a rationale"
    # The in-process reader answered in plain text (no DSPy [[ ## ]] markers, no echoed dictionary)
    # or failed with its parse error; a reply is never scored as something it is not.
    assert (row["answer"] and "[[" not in row["answer"] and "{" not in row["answer"]) or row["error"]


def test_gsm8k_quickstart_reads_the_published_lines_through_answer_regex():
    """configs/gsm8k/ holds GSM8K's own lines, unconverted: the config's answer_regex reads every one."""
    import json

    from lmcot.config import load_config
    from lmcot.splits import load_split

    cfg = load_config(ROOT / "configs" / "gsm8k-quickstart.yaml",
                      ["small_lm.backend=litellm", "small_lm.model=openai/x"])
    for split, n in (("train", 32), ("dev", 30)):
        path = ROOT / getattr(cfg.data, split)
        raw = [json.loads(line) for line in path.read_text().splitlines()]
        examples = load_split(cfg, split)
        assert len(raw) == len(examples) == n and all(set(r) == {"question", "answer"} for r in raw)
        assert [ex.answer for ex in examples] == [r["answer"].rsplit("#### ", 1)[1].strip() for r in raw]
        assert all(ex.rationale and not ex.context for ex in examples)
