"""The LLM-judge backend (metrics/rationale/judge.py) against a real local OpenAI-compatible server
(litellm -> HTTP -> OracleServer) and against an in-process tiny transformers model."""

from __future__ import annotations

import json
import math
import threading

import pytest

from lmcot.config import ASPECTS, LargeLMConfig, LMConfig
from lmcot.lms import build_lm, cache_in
from lmcot.metrics.rationale.judge import (
    ANSWER_INSTRUCTION,
    ASPECT_QUESTIONS,
    JudgeScorer,
    answer_token_ids,
    answers_yes,
    judge_messages,
)
from support import OracleResponder, OracleServer, load_examples
from support.paths import FIXTURES

ROW = {
    "question": "Were Scott Derrickson and Ed Wood of the same nationality?",
    "context": "Scott Derrickson: Scott Derrickson is an American director.\nEd Wood: Ed Wood was an American filmmaker.",
    "rationale": "Scott Derrickson is American and Ed Wood is American. So the answer is yes.",
}


@pytest.fixture(scope="module", autouse=True)
def _fresh_cache(tmp_path_factory):
    """One DSPy disk cache for this module (opening one is not free). DSPy's cache key ignores
    ``api_base``, so each test names its judge differently (``judge_lm``) to keep entries apart."""
    with cache_in(tmp_path_factory.mktemp("dspy-cache")):
        yield


_NAME = {"test": ""}


@pytest.fixture(autouse=True)
def _judge_name(request):
    _NAME["test"] = request.node.name


def judge_lm(srv: OracleServer):
    """The judge as lmcot builds it from config: litellm to the local server, named after the test."""
    return build_lm(LargeLMConfig(model=f"openai/judge-{_NAME['test']}", api_base=srv.url, num_retries=0))


def last_user(body: dict) -> str:
    return [m for m in body["messages"] if m["role"] == "user"][-1]["content"]


# -- prompt ------------------------------------------------------------------------------------
def test_questions_and_prompt():
    assert tuple(ASPECT_QUESTIONS) == ASPECTS
    assert all(q.endswith("?") for q in ASPECT_QUESTIONS.values())
    msgs = judge_messages("Q?", "Title: text.", "Because so.", "factuality")
    assert [m["role"] for m in msgs] == ["system", "user"]
    user = msgs[-1]["content"]
    assert user.endswith(ANSWER_INSTRUCTION) and ANSWER_INSTRUCTION == "Answer with Yes or No."
    assert "Q?" in user and "Title: text." in user and "Rationale: Because so." in user
    assert ASPECT_QUESTIONS["factuality"] in user
    with pytest.raises(ValueError):
        judge_messages("Q?", "c", "r", "funniness")


def test_answers_yes():
    assert answers_yes("Yes") and answers_yes(" yes.") and answers_yes("**Yes**") and answers_yes("'YES'")
    assert not answers_yes("No") and not answers_yes("") and not answers_yes(None) and not answers_yes("Maybe yes")


# -- HTTP judge: log-probabilities ---------------------------------------------------------------
def test_p_yes_from_logprobs_request_and_cache():
    # "Yes" and "yes" both count as yes: P(yes) = (0.6 + 0.1) / (0.6 + 0.1 + 0.2).
    responder = lambda body: {"text": "Yes", "logprobs": {"Yes": 0.6, "yes": 0.1, "No": 0.2, "The": 0.05}}
    with OracleServer(responder) as srv:
        out = JudgeScorer(judge_lm(srv)).score([ROW], ["factuality", "fluency"])
        assert out == [{"factuality": pytest.approx(0.7 / 0.9), "fluency": pytest.approx(0.7 / 0.9)}]
        assert srv.request_count == 2  # one per aspect, no sampling
        for body in srv.requests:
            assert body["logprobs"] is True and body["top_logprobs"] == 5
            assert body["temperature"] == 0.0
            assert last_user(body).endswith("Answer with Yes or No.")
            assert ROW["rationale"] in last_user(body)
        questions = {last_user(b).rsplit("\n\n", 1)[-1] for b in srv.requests}
        assert questions == {f"{ASPECT_QUESTIONS[a]} Answer with Yes or No." for a in ("factuality", "fluency")}

        # A rerun, even through a freshly built LM and scorer, is answered from DSPy's cache.
        again = JudgeScorer(judge_lm(srv)).score([ROW], ["fluency", "factuality"])
        assert again == [{"fluency": pytest.approx(0.7 / 0.9), "factuality": pytest.approx(0.7 / 0.9)}]
        assert srv.request_count == 2


def test_no_yes_no_among_logprobs_falls_back_to_samples():
    # Log-probabilities come back, but none for a yes/no token: that question is sampled instead.
    def responder(body):
        if body.get("logprobs"):
            return {"text": "Maybe", "logprobs": {"Maybe": 0.9, "Perhaps": 0.1}}
        return "No"

    with OracleServer(responder) as srv:
        out = JudgeScorer(judge_lm(srv), samples=3).score([ROW], ["coherence"])
        assert out == [{"coherence": 0.0}]
        # The probe is asked 3 times (a reply with no verdict is never cached), then 3 samples.
        assert srv.request_count == 3 + 3


# -- HTTP judge: no log-probabilities ------------------------------------------------------------
def test_fallback_share_of_samples_and_cache():
    lock, counter = threading.Lock(), {"sampled": 0}

    def responder(body):
        if float(body.get("temperature") or 0) == 0:
            return "Yes"  # the log-probability probe (answered without them)
        with lock:  # sampled answers: Yes, Yes, Yes, No, No, Yes, Yes, Yes, No, No, ...
            k = counter["sampled"]
            counter["sampled"] += 1
        return "Yes." if k % 5 < 3 else "No"

    with OracleServer(responder) as srv:
        srv.support_logprobs = False
        scorer = JudgeScorer(judge_lm(srv), samples=5, temperature=1.0)
        assert scorer.score([ROW], ["readability"]) == [{"readability": pytest.approx(3 / 5)}]
        probe, *samples = srv.requests
        assert probe.get("logprobs") is True
        assert len(samples) == 5
        assert all(b.get("temperature") == 1.0 and not b.get("logprobs") for b in samples)
        assert not scorer.supports_logprobs()  # remembered for this endpoint

        # The next call does not probe again: 5 samples per question, nothing else.
        before = srv.request_count
        row2 = {**ROW, "rationale": "Both men were born in the United States."}
        assert scorer.score([row2], ["readability"]) == [{"readability": pytest.approx(3 / 5)}]
        assert srv.request_count == before + 5
        assert not any(b.get("logprobs") for b in srv.requests[before:])

        # Rerun: every sample (distinct rollout ids) comes from the cache.
        before = srv.request_count
        assert JudgeScorer(judge_lm(srv)).score([ROW, row2], ["readability"]) == [
            {"readability": pytest.approx(3 / 5)}, {"readability": pytest.approx(3 / 5)}]
        assert srv.request_count == before


def test_empty_rationale_scores_zero_without_a_call():
    with OracleServer(lambda body: "Yes") as srv:
        rows = [{**ROW, "rationale": "  "}, {**ROW, "rationale": ""}]
        assert JudgeScorer(judge_lm(srv)).score(rows, ["factuality", "relevance"]) == [
            {"factuality": 0.0, "relevance": 0.0}] * 2
        assert srv.request_count == 0
        with pytest.raises(ValueError):
            JudgeScorer(judge_lm(srv)).score([ROW], ["funniness"])


# -- concurrency and order -------------------------------------------------------------------------
def test_concurrent_rows_keep_order_sync_and_async():
    import asyncio

    n_rows, aspects = 12, ["factuality", "coherence", "fluency"]
    state = {"calls": 0}
    together = threading.Barrier(2)  # two calls meet here: proof that calls run concurrently
    lock = threading.Lock()

    def expected(i: int, aspect: str) -> float:
        return (i + 1) / (n_rows + 2) * (1 if aspect == "factuality" else 0.5)

    def responder(body):
        text = last_user(body)
        i = int(text.split("Rationale: Reason number ", 1)[1].split(".", 1)[0])
        aspect = next(a for a, q in ASPECT_QUESTIONS.items() if q in text)
        with lock:
            state["calls"] += 1
            meet = state["calls"] in (2, 3)
        # The first call alone probes for log-probabilities; the next two must then be in flight at
        # once, or the barrier breaks and the calls fail.
        if meet:
            together.wait(timeout=120)
        p = expected(i, aspect)
        return {"text": "Yes", "logprobs": {"Yes": p, "No": 1 - p}}

    rows = [{**ROW, "rationale": f"Reason number {i}."} for i in range(n_rows)]
    with OracleServer(responder) as srv:
        out = JudgeScorer(judge_lm(srv), concurrency=8).score(rows, aspects)
        assert [list(r) for r in out] == [aspects] * n_rows
        for i, r in enumerate(out):
            for a in aspects:
                assert r[a] == pytest.approx(expected(i, a))
        assert srv.request_count == n_rows * len(aspects)

        # Async API (RL rewards): same answers, from the same cache.
        out2 = asyncio.run(JudgeScorer(judge_lm(srv), concurrency=8).ascore(rows, aspects))
        assert out2 == out
        assert srv.request_count == n_rows * len(aspects)


def test_equal_rows_are_judged_once_through_the_scorer():
    """Rows that repeat one (question, context, rationale) (equal RL rollouts) cost one judge call per
    aspect, not one per row: sent together, the repeats would all miss the cache and be paid for."""
    from lmcot.config import RationaleMetricsConfig
    from lmcot.metrics.rationale import RationaleScorer

    other = {**ROW, "rationale": "Both are American. So the answer is yes."}
    with OracleServer(lambda body: {"text": "Yes", "logprobs": {"Yes": 0.8, "No": 0.2}}) as srv:
        srv.delay = 0.05
        cfg = RationaleMetricsConfig(backends={a: "judge" for a in ASPECTS}, concurrency=8)
        scorer = RationaleScorer(cfg, judge_lm=judge_lm(srv))
        out = scorer.score([ROW, dict(ROW), other, dict(ROW)], ["factuality", "relevance"])
        assert srv.request_count == 2 * 2
        assert out[0] == out[1] == out[3] and out[0] is not out[1]
        assert out[2] == {"factuality": pytest.approx(0.8), "relevance": pytest.approx(0.8)}


# -- the real OracleResponder ------------------------------------------------------------------
def test_oracle_responder_grades_gold_rationale_higher():
    examples = load_examples(FIXTURES / "hotpotqa_dev_slice.json")
    raw = json.loads((FIXTURES / "hotpotqa_dev_slice.json").read_text())[0]
    context = "\n".join(f"{title}: {''.join(sents).strip()}" for title, sents in raw["context"])
    gold = "Scott Derrickson (born July 16, 1966) is an American director, screenwriter and producer."
    rows = [{"question": raw["question"], "context": context, "rationale": gold + " So the answer is yes."},
            {"question": raw["question"], "context": context, "rationale": "Woodson is a place in Arkansas."}]
    with OracleServer(OracleResponder(examples)) as srv:
        good, bad = JudgeScorer(judge_lm(srv)).score(rows, ["factuality"])
    assert good["factuality"] == pytest.approx(0.9) and bad["factuality"] == pytest.approx(0.1)


# -- in-process transformers judge ---------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from support.tiny import build_tiny_causal, build_tiny_seq2seq

    root = tmp_path_factory.mktemp("tiny")
    return {"causal": build_tiny_causal(root / "llama"), "seq2seq": build_tiny_seq2seq(root / "t5")}


def _by_hand(engine, messages) -> float:
    """P(yes) for one unpadded prompt: full softmax over the vocabulary, then the yes/no sums."""
    import torch

    from lmcot.prompting import render_prompt

    tok, model = engine.tokenizer, engine.model
    text = render_prompt(tok, messages, engine.is_encoder_decoder)
    add_special = engine.is_encoder_decoder or not tok.chat_template
    ids = torch.tensor([tok.encode(text, add_special_tokens=add_special)])
    with torch.no_grad():
        if engine.is_encoder_decoder:
            dec = torch.tensor([[model.config.decoder_start_token_id]])
            logits = model(input_ids=ids, decoder_input_ids=dec).logits[0, -1]
        else:
            logits = model(input_ids=ids).logits[0, -1]
    probs = torch.softmax(logits.double(), -1)
    yes_ids, no_ids = answer_token_ids(tok)
    p_yes, p_no = float(probs[yes_ids].sum()), float(probs[no_ids].sum())
    return p_yes / (p_yes + p_no)


@pytest.mark.parametrize("kind", ["causal", "seq2seq"])
def test_in_process_judge_matches_hand_computation(tiny_models, kind):
    from lmcot.hf_engine import hf_engine_of

    lm = build_lm(LMConfig(model=str(tiny_models[kind]), backend="transformers", device="cpu", batch_size=4))
    engine = hf_engine_of(lm)
    assert engine is not None and engine.is_encoder_decoder == (kind == "seq2seq")
    yes_ids, no_ids = answer_token_ids(engine.tokenizer)
    for i in yes_ids:
        assert engine.tokenizer.decode([i]).strip().lower() in ("y", "ye", "yes")
    for i in no_ids:
        assert engine.tokenizer.decode([i]).strip().lower() in ("n", "no")

    # Rows of different lengths share padded batches; each must score as it does alone.
    rows = [ROW, {**ROW, "rationale": "Yes."}, {**ROW, "context": ROW["context"] * 3}, {**ROW, "rationale": ""},
            {**ROW, "question": "Who?"}]
    aspects = ["factuality", "readability"]
    out = JudgeScorer(lm).score(rows, aspects)
    assert out[3] == {"factuality": 0.0, "readability": 0.0}
    for i, row in enumerate(rows):
        if not row["rationale"]:
            continue
        for a in aspects:
            p = out[i][a]
            assert 0.0 < p < 1.0 and math.isfinite(p)
            hand = _by_hand(engine, judge_messages(row["question"], row["context"], row["rationale"], a))
            assert p == pytest.approx(hand, abs=1e-5), (i, a)
    # Deterministic: a second call gives the same numbers.
    assert JudgeScorer(lm).score(rows, aspects) == out
