"""RationaleScorer (backends, routing, row formats) and run_score (behind `lmcot score`) on real records."""

from __future__ import annotations

import asyncio
import json
import math
import sys
import types
from pathlib import Path

import pytest

from lmcot.config import ASPECTS, LMConfig, RationaleMetricsConfig, config_from_dict
from lmcot.contexts import format_context
from lmcot.metrics.rationale import RationaleScorer, context_sentences_of, summarize
from lmcot.metrics.rationale.cheap import factuality, fluency
from lmcot.metrics.rationale import reference_lm_for, reference_name
from lmcot.commands.score import render_score_table
from lmcot.metrics.rationale.score_file import ScoreInputError, run_score, score_backends
from support.paths import HOTPOT as HOTPOT_PATH

HOTPOT = json.loads(HOTPOT_PATH.read_text(encoding="utf-8"))
R0, R1 = HOTPOT[0], HOTPOT[1]
GOOD0 = ("Scott Derrickson is an American director, screenwriter and producer. Ed Wood was an American "
         "filmmaker, actor, writer, producer, and director. Both of them are American. So the answer is yes.")
BAD0 = "Scott Derrickson is a British director born in 1971. Ed Wood was a Canadian actor. So the answer is no."
GOOD1 = ("Kiss and Tell is a 1945 film starring Shirley Temple as Corliss Archer. As an adult, Shirley Temple "
         "served as Chief of Protocol of the United States. So the answer is Chief of Protocol.")


@pytest.fixture(scope="session")
def tiny_ref(tmp_path_factory) -> str:
    """A local (untrained) causal checkpoint: real plumbing, meaningless perplexities."""
    from support.tiny import build_tiny_causal

    return str(build_tiny_causal(tmp_path_factory.mktemp("ref") / "llama"))


def _write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _input_rows() -> list[dict]:
    ctx0, ctx1 = format_context(R0["context"]), format_context(R1["context"])
    return [
        {"id": R0["_id"], "question": R0["question"], "context": ctx0, "rationale": GOOD0},
        {"id": "bad", "question": R0["question"], "context": ctx0, "rationale": BAD0},
        {"question": R1["question"], "context": ctx1, "rationale": GOOD1},
        {"id": "empty", "question": R1["question"], "context": ctx1, "rationale": ""},
    ]


# ------------------------------------------------------------------------------------ RationaleScorer


def test_scorer_rows_from_paragraphs_or_formatted_context(tiny_ref):
    from lmcot.metrics.rationale.models import PerplexityScorer

    scorer = RationaleScorer(RationaleMetricsConfig(), reference_lm=tiny_ref)
    ctx = format_context(R0["context"])
    rows = [
        {"question": R0["question"], "paragraphs": R0["context"], "rationale": GOOD0},
        {"question": R0["question"], "context": ctx, "rationale": GOOD0},
        {"question": R0["question"], "context": ctx, "rationale": BAD0},
        {"question": R0["question"], "context": ctx, "rationale": None},
    ]
    scores = scorer.score(rows, progress=True)
    assert [list(s) for s in scores] == [list(ASPECTS)] * 4
    # The formatted context is split back into the same sentences the paragraphs hold.
    assert context_sentences_of(rows[1]) == context_sentences_of(rows[0])
    assert scores[0] == pytest.approx(scores[1])
    assert scores[0]["factuality"] > scores[2]["factuality"]
    assert all(0.0 <= v <= 1.0 for s in scores for v in s.values())
    nll = PerplexityScorer(tiny_ref).nll([GOOD0])[0]
    assert scores[0]["fluency"] == pytest.approx(math.exp(-nll / 4.0), rel=1e-4)
    assert set(scores[3].values()) == {0.0}
    means = summarize(scores)
    assert list(means) == list(ASPECTS)
    assert means["factuality"] == pytest.approx(sum(s["factuality"] for s in scores) / 4)
    assert scorer.backend_of("fluency") == "reference LM" and scorer.backend_of("relevance") == "lexical"


def test_scorer_subset_and_errors():
    scorer = RationaleScorer(RationaleMetricsConfig())
    row = {"question": R1["question"], "paragraphs": R1["context"], "rationale": GOOD1}
    out = scorer.score([row], aspects=["readability"])
    assert list(out[0]) == ["readability"]
    assert asyncio.run(scorer.ascore([row], ["readability", "relevance"])) == scorer.score([row], ["readability", "relevance"])
    with pytest.raises(ValueError, match="unknown aspect"):
        scorer.score([], aspects=["wit"])
    with pytest.raises(ValueError, match="row 0: missing field 'rationale'"):
        scorer.score([{"question": "q", "context": "x"}])
    with pytest.raises(ValueError, match=r"judge for \['factuality'\] but no judge LM"):
        RationaleScorer(RationaleMetricsConfig(backends={"factuality": "judge"}))


def test_scorer_routes_judge_aspects_and_skips_empty_rationales(monkeypatch):
    """Judge aspects go to JudgeScorer (a recording stand-in here); empty rationales never do."""
    calls = []

    class RecordingJudge:
        def __init__(self, judge_lm, samples=5, concurrency=8):
            calls.append(("init", judge_lm, samples, concurrency))

        def score(self, rows, aspects):
            calls.append(("score", [r["rationale"] for r in rows], list(aspects), [r["context"][:20] for r in rows]))
            return [{a: 0.25 for a in aspects} for _ in rows]

    monkeypatch.setitem(sys.modules, "lmcot.metrics.rationale.judge", types.SimpleNamespace(JudgeScorer=RecordingJudge))
    cfg = RationaleMetricsConfig(backends={"logicality": "judge", "coherence": "judge"}, judge_samples=3)
    scorer = RationaleScorer(cfg, judge_lm="JUDGE")
    rows = [{"question": R1["question"], "paragraphs": R1["context"], "rationale": GOOD1},
            {"question": R1["question"], "paragraphs": R1["context"], "rationale": " "}]
    out = scorer.score(rows)
    assert calls[0] == ("init", "JUDGE", 3, cfg.concurrency)
    assert calls[1][:3] == ("score", [GOOD1], ["logicality", "coherence"])
    assert calls[1][3][0] == "Meet Corliss Archer:"  # the formatted context, made from paragraphs
    assert out[0]["logicality"] == out[0]["coherence"] == 0.25
    assert out[0]["factuality"] == factuality(R1["question"], context_sentences_of(rows[0]), GOOD1)
    assert out[1]["logicality"] == out[1]["coherence"] == 0.0
    assert scorer.backend_of("coherence") == "judge"


def _tiny_bert(out: Path) -> str:
    """A random-init BERT with a word-level vocabulary of the fixture's words."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    from lmcot.metrics.rationale.text import words

    vocab = sorted({w.lower() for r in HOTPOT[:2] for _, ss in r["context"] for s in ss for w in words(s)})
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *vocab])})
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=64))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def test_embedding_backend_scores_relevance_and_coherence(tmp_path):
    from lmcot.metrics.rationale.models import SentenceEmbedder

    path = _tiny_bert(tmp_path / "bert")
    emb = SentenceEmbedder(path)
    a, b = "Shirley Temple was an actress.", "Kiss and Tell is a comedy film."
    assert emb.similarity(a, a) == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= emb.similarity(a, b) < 0.9999
    assert emb.similarity(a, "") == 0.0
    scorer = RationaleScorer(RationaleMetricsConfig(embedding_model=path))
    row = {"question": R1["question"], "paragraphs": R1["context"], "rationale": GOOD1}
    out = scorer.score([row], aspects=["relevance", "coherence"])[0]
    assert out["relevance"] == pytest.approx(emb.similarity(R1["question"], GOOD1), abs=1e-5)
    assert 0.0 <= out["coherence"] <= 1.0
    assert scorer.backend_of("relevance") == "embeddings"


# ----------------------------------------------------------------------------------------- run_score


def test_run_score_writes_rows_and_means(tmp_path, monkeypatch):
    import lmcot.lms

    # All-cheap backends must build no judge LM (no network, no key).
    monkeypatch.setattr(lmcot.lms, "build_lm", lambda *a, **k: pytest.fail("judge LM built"))
    src = _write_rows(tmp_path / "rationales.jsonl", _input_rows())
    out = tmp_path / "out" / "scores.jsonl"
    rows, means = run_score(config_from_dict({"rationale_metrics": {"reference_lm": "lexical"}}), src, out)
    written = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert written == rows
    assert [r["id"] for r in rows] == [R0["_id"], "bad", None, "empty"]
    assert [r["question"] for r in rows] == [r["question"] for r in _input_rows()]
    assert all(list(r)[2:] == list(ASPECTS) for r in rows)
    assert all(0.0 <= r[a] <= 1.0 for r in rows for a in ASPECTS)
    assert rows[0]["factuality"] > rows[1]["factuality"] and rows[0]["consistency"] > rows[1]["consistency"]
    assert all(rows[3][a] == 0.0 for a in ASPECTS)
    assert list(means) == list(ASPECTS)
    for a in ASPECTS:
        assert means[a] == pytest.approx(sum(r[a] for r in rows) / len(rows))
    # reference_lm: lexical asks for the lexical fluency proxy.
    lexical = fluency(rows[0]["question"], context_sentences_of(_input_rows()[0]), GOOD0)
    assert rows[0]["fluency"] == pytest.approx(lexical)
    assert list(tmp_path.joinpath("out").iterdir()) == [out]  # no temporary file left behind


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"question": "q", "context": "c", "rationale": "r"}\n{"question": "q", "context": "c"}\n',
         "line 2: missing field 'rationale'"),
        ('{"question": "q", "rationale": "r"}\n', "line 1: missing field 'context'"),
        ('\n{"context": "c", "rationale": "r"}\n', "line 2: missing field 'question'"),
        ('{"question": "q", "context": "c", "rationale": "r"}\n{"question": "q",\n', "line 2: invalid JSON"),
        ('["q", "c", "r"]\n', "line 1: expected a JSON object"),
        ('{"question": "q", "context": "c", "rationale": 3}\n', "line 1: field 'rationale' must be a string"),
    ],
)
def test_run_score_bad_row_names_file_line_and_field(tmp_path, text, message):
    src = tmp_path / "bad.jsonl"
    src.write_text(text, encoding="utf-8")
    with pytest.raises(ScoreInputError) as err:
        run_score(config_from_dict({}), src, tmp_path / "never.jsonl")
    assert str(err.value).startswith(f"{src}: {message}")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "never.jsonl").exists()
    with pytest.raises(ScoreInputError, match="no such file"):
        run_score(config_from_dict({}), tmp_path / "missing.jsonl", None)


def test_reference_lm_choice(tiny_ref, tmp_path):
    from support.tiny import build_tiny_seq2seq

    assert reference_name(reference_lm_for(config_from_dict({"small_lm": {"model": tiny_ref}}))) == tiny_ref
    lexical = {"small_lm": {"model": tiny_ref}, "rationale_metrics": {"reference_lm": "lexical"}}
    assert reference_lm_for(config_from_dict(lexical)) is None
    assert score_backends(config_from_dict(lexical))["fluency"] == "lexical"
    assert reference_lm_for(config_from_dict({"rationale_metrics": {"reference_lm": "x/y"}})) == "x/y"
    t5 = str(build_tiny_seq2seq(tmp_path / "t5"))
    assert reference_lm_for(config_from_dict({"small_lm": {"model": t5}})) is None
    assert reference_lm_for(config_from_dict({"small_lm": {"model": "openai/gpt-4o-mini", "backend": "litellm"}})) is None
    assert reference_lm_for(config_from_dict({"small_lm": {"model": str(tmp_path / "nothing-here")}})) is None
    backends = score_backends(config_from_dict({"small_lm": {"model": tiny_ref},
                                                "rationale_metrics": {"backends": {"factuality": "judge"}}}))
    assert backends["factuality"] == "judge" and backends["fluency"] == "reference LM"
    assert backends["relevance"] == "lexical"


def test_run_score_with_in_process_judge_and_reference_lm(tiny_ref, tmp_path):
    """The judge aspects through the real JudgeScorer, with a local transformers judge (no network)."""
    cfg = config_from_dict({
        "cache_dir": str(tmp_path / "cache"),
        "rationale_metrics": {
            "backends": {"logicality": "judge", "factuality": "judge"},
            "judge": LMConfig(model=tiny_ref, backend="transformers", device="cpu").model_dump(),
            "reference_lm": tiny_ref,
        },
    })
    src = _write_rows(tmp_path / "r.jsonl", _input_rows())
    rows, means = run_score(cfg, src, None)
    assert all(0.0 <= r[a] <= 1.0 for r in rows for a in ASPECTS)
    assert rows[3]["logicality"] == rows[3]["factuality"] == 0.0  # empty rationale: no judge call
    assert 0.0 < rows[0]["logicality"] < 1.0  # a probability from the judge's logits
    again, _ = run_score(cfg, src, None)
    assert again == rows


def test_render_score_table():
    from rich.console import Console

    from lmcot.metrics.rationale import ASPECT_DEFINITIONS

    console = Console(record=True, width=160)
    console.print(render_score_table({"factuality": 0.5, "readability": 0.25}, backends={"factuality": "judge"}))
    text = console.export_text()
    assert "factuality" in text and ASPECT_DEFINITIONS["factuality"] in text and "0.500" in text
    assert "readability" in text and "0.250" in text and "judge" in text
    assert "relevance" not in text
