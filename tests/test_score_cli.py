"""`lmcot score` through the real CLI: the eight aspects printed, per-row scores written, bad rows
rejected with one line naming file, line and field."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from lmcot.commands.cli import app
from lmcot.config import ASPECTS
from support.paths import HOTPOT

FIXTURE = HOTPOT


def _rows() -> list[dict]:
    from lmcot.data import load_examples

    rows = []
    for ex in load_examples("hotpotqa", str(FIXTURE), limit=3).examples:
        by_title = dict((t, s) for t, s in ex.paragraphs)
        support = " ".join(by_title[t][i].strip() for t, i in ex.supporting_facts
                           if t in by_title and i < len(by_title[t]))
        rows.append({"id": ex.id, "question": ex.question, "context": ex.context,
                     "rationale": f"{support} So the answer is {ex.answer}."})
    return rows


def test_score_prints_eight_aspects_and_writes_scores(tmp_path):
    src = tmp_path / "rationales.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    result = CliRunner().invoke(app, ["score", "--rationales", str(src), "--out", str(tmp_path / "s.jsonl")])
    assert result.exit_code == 0, result.output
    for aspect in ASPECTS:
        assert aspect in result.output
    scored = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert len(scored) == 3
    assert all(0.0 <= row[a] <= 1.0 for row in scored for a in ASPECTS)
    # Rationales quoting the supporting sentences are supported by the context.
    assert min(row["factuality"] for row in scored) > 0.5


def test_score_bad_row_is_one_line_error(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text(json.dumps({"question": "q", "context": "T: s."}) + "\n")
    result = CliRunner().invoke(app, ["score", "--rationales", str(src)])
    assert result.exit_code != 0
    assert "bad.jsonl" in result.output and "line 1" in result.output and "rationale" in result.output
    assert not (tmp_path / "bad.scores.jsonl").exists(), "nothing half-written on bad input"


def test_score_of_a_missing_file_is_one_line_before_any_scorer_is_chosen(tmp_path):
    result = CliRunner().invoke(app, ["score", "--rationales", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2
    assert [line for line in result.output.splitlines() if line.strip()][-1] == (
        f"error: {tmp_path / 'nope.jsonl'}: no such file (--rationales)")
    assert "scorer:" not in result.output


# ----------------------------------------------------------------------------- which scorer, and why
def _predictions(folder, config: dict | None) -> "Path":
    """A predictions.jsonl as lmcot evaluate writes it (rows name a dev example; no context), with
    the config.json evaluate writes beside it when ``config`` is given."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"id": r["id"], "method": "guided", "question": r["question"], "rationale": r["rationale"],
             "answer": "x"} for r in _rows()]
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return folder / "predictions.jsonl"


def _scorer_line(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("scorer:"))


def _no_hub(monkeypatch):
    import lmcot.model_loading

    original = lmcot.model_loading.is_encoder_decoder

    def local_only(model, **kwargs):
        assert "/" not in model or model.startswith(("/", ".")), f"looked up {model} on the hub"
        return original(model, **kwargs)

    monkeypatch.setattr(lmcot.model_loading, "is_encoder_decoder", local_only)


def test_score_without_config_reads_with_the_small_lm_of_the_run_beside_the_file(tmp_path, tiny_causal_path,
                                                                                 monkeypatch):
    _no_hub(monkeypatch)
    from lmcot.config import LMCoTConfig

    config = LMCoTConfig().to_public_dict()
    config["small_lm"]["model"] = str(tiny_causal_path)
    config["data"]["dev"] = str(FIXTURE)
    src = _predictions(tmp_path / "eval", {**config, "program": None})
    result = CliRunner().invoke(app, ["score", "--rationales", str(src)])
    assert result.exit_code == 0, result.output
    assert _scorer_line(result.output) == (
        f"scorer: fluency and naturalness by perplexity under {tiny_causal_path}: the small LM (small_lm.model), an "
        f"in-process causal LM, from {tmp_path / 'eval' / 'config.json'}, the config of the run that wrote "
        "predictions.jsonl")
    fluency_row = next(line for line in result.output.splitlines() if line.lstrip("│ ").startswith("fluency"))
    assert "reference LM" in fluency_row


def test_score_without_config_uses_the_program_that_wrote_the_predictions(tmp_path, tiny_causal_path, monkeypatch):
    import shutil

    _no_hub(monkeypatch)
    from lmcot.config import LMCoTConfig
    from lmcot.programs import LMGuidedCoT
    from lmcot.programs.program_io import save_program

    program = tmp_path / "program"
    shutil.copytree(tiny_causal_path, program / "small_lm")
    saved = LMCoTConfig.model_validate({"small_lm": {"model": "small_lm"}})
    save_program(LMGuidedCoT(None, None), program, saved)
    # As `lmcot evaluate --program` writes it: the program folder, and its small LM resolved.
    config = LMCoTConfig.model_validate({"small_lm": {"model": str(program / "small_lm")}, "data": {"dev": str(FIXTURE)}})
    src = _predictions(tmp_path / "eval", {**config.to_public_dict(), "program": str(program)})
    result = CliRunner().invoke(app, ["score", "--rationales", str(src)])
    assert result.exit_code == 0, result.output
    line = _scorer_line(result.output)
    assert line.startswith(f"scorer: fluency and naturalness by perplexity under {program / 'small_lm'}: ")
    assert f"from the program {program} that wrote predictions.jsonl" in line


def test_score_says_why_it_falls_back_to_the_lexical_proxy(tmp_path, monkeypatch):
    _no_hub(monkeypatch)
    # Nothing beside the file names a small LM: the proxy, and the way to get perplexity, said.
    src = tmp_path / "rationales.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    result = CliRunner().invoke(app, ["score", "--rationales", str(src)])
    assert result.exit_code == 0, result.output
    assert _scorer_line(result.output) == (
        "scorer: fluency and naturalness by the lexical proxy: no --config, and no config.json of lmcot evaluate "
        "beside rationales.jsonl names the small LM that wrote it (pass --config C.yaml, or --set "
        "rationale_metrics.reference_lm=MODEL, for perplexity)")
    # A small LM named beside the file that cannot be read: the proxy again, with the reason.
    from lmcot.config import LMCoTConfig

    config = LMCoTConfig().to_public_dict()
    config["small_lm"]["model"] = str(tmp_path / "gone")
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = CliRunner().invoke(app, ["score", "--rationales", str(src)])
    assert result.exit_code == 0, result.output
    line = _scorer_line(result.output)
    assert line.startswith(f"scorer: fluency and naturalness by the lexical proxy: the small LM {tmp_path / 'gone'} "
                           "cannot be read (no such folder), from ")
    assert line.endswith(f"from {tmp_path / 'config.json'}, the config of the run that wrote rationales.jsonl")
