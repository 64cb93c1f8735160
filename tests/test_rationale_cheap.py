"""Cheap rationale scorers on real HotpotQA records: good rationales rank above bad ones.

Hand-made rationales for two real questions, plus systematic checks built from every record of
the fixture (supporting sentences vs a distractor paragraph, a quoted year changed by one, words
shuffled). Fluency/naturalness with a reference LM use a tiny Llama trained here for a few hundred
steps on the context sentences of the first 30 records, and are tested on the other records.
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest

from lmcot.config import ASPECTS
from lmcot.metrics.rationale import ASPECT_DEFINITIONS, context_sentences_of
from lmcot.metrics.rationale.cheap import (
    CHEAP_SCORERS,
    SINGLE_STEP_COHERENCE,
    coherence,
    consistency,
    factuality,
    fluency,
    logicality,
    naturalness,
    readability,
    relevance,
)
from lmcot.metrics.rationale.text import split_sentences, syllables
from lmcot.metrics.stated_answer import conclusion_span
from support.paths import HOTPOT as HOTPOT_PATH

HOTPOT = json.loads(HOTPOT_PATH.read_text(encoding="utf-8"))
TRAIN_RECORDS = 30  # the reference LM learns from these records' contexts; fluency is tested on the rest


def _ctx(record) -> list[str]:
    return context_sentences_of({"paragraphs": record["context"]})


def _supporting(record) -> list[str]:
    paras = dict((t, s) for t, s in record["context"])
    return [paras[t][i].strip() for t, i in record["supporting_facts"] if t in paras and i < len(paras[t])]


def _distractor(record, n: int) -> list[str] | None:
    """The first ``n`` sentences of the first non-supporting paragraph (None if there is none)."""
    gold = {t for t, _ in record["supporting_facts"]}
    for title, sents in record["context"]:
        if title not in gold:
            return [s.strip() for s in sents[:n] if s.strip()]
    return None


def _shuffle(text: str, seed: int) -> str:
    ws = text.split()
    random.Random(seed).shuffle(ws)
    return " ".join(ws)


# Record 0: "Were Scott Derrickson and Ed Wood of the same nationality?" (yes).
R0 = HOTPOT[0]
Q0, C0 = R0["question"], _ctx(R0)
GOOD0 = ("Scott Derrickson is an American director, screenwriter and producer. Ed Wood was an American "
         "filmmaker, actor, writer, producer, and director. Both of them are American. So the answer is yes.")
DISTRACTOR0 = ("Woodson is a census-designated place in Pulaski County, Arkansas. Its population was 403 at "
               "the 2010 census. So the answer is yes.")
HALLUCINATED0 = ("Scott Derrickson is a British director born in 1971. Ed Wood was a Canadian actor from Toronto. "
                 "So the answer is no.")
# Record 1: "What government position was held by the woman who portrayed Corliss Archer in the film
# Kiss and Tell?" (Chief of Protocol).
R1 = HOTPOT[1]
Q1, C1 = R1["question"], _ctx(R1)
GOOD1 = ("Kiss and Tell is a 1945 film starring Shirley Temple as Corliss Archer. As an adult, Shirley Temple "
         "served as Chief of Protocol of the United States. So the answer is Chief of Protocol.")
ANAPHORIC1 = "Shirley Temple played Corliss Archer in Kiss and Tell. She later served as Chief of Protocol."
# Three true sentences of the context, each about something else (only the first touches the question).
DISCONNECTED1 = ("Kiss and Tell is a 1945 comedy. Janet Waldo voiced Judy Jetson. "
                 "The Village Accountant is found in rural India.")
CONVOLUTED1 = ("Notwithstanding multitudinous considerations pertaining to cinematographic representations, the "
               "individual characteristically identified as portraying Corliss Archer subsequently administered "
               "diplomatic responsibilities, additionally functioning ceremonially as Chief of Protocol.")
READABLE1 = "Shirley Temple played Corliss Archer. She was Chief of Protocol. So that is the job she held."

ALL_TEXTS = [(Q0, C0, t) for t in (GOOD0, DISTRACTOR0, HALLUCINATED0)] + [
    (Q1, C1, t) for t in (GOOD1, ANAPHORIC1, DISCONNECTED1, CONVOLUTED1, READABLE1, "Yes.", "So the answer is yes.")
]


# ---------------------------------------------------------------------------------------- basics


def test_definitions_cover_the_aspects_in_order():
    assert list(ASPECT_DEFINITIONS) == list(ASPECTS) == list(CHEAP_SCORERS)
    assert all(d.strip() and "\n" not in d for d in ASPECT_DEFINITIONS.values())


@pytest.mark.parametrize("aspect", ASPECTS)
def test_scores_in_unit_interval_and_deterministic(aspect):
    f = CHEAP_SCORERS[aspect]
    first = [f(q, c, t) for q, c, t in ALL_TEXTS]
    assert all(0.0 <= v <= 1.0 for v in first), first
    assert first == [f(q, c, t) for q, c, t in ALL_TEXTS]


@pytest.mark.parametrize("aspect", ASPECTS)
@pytest.mark.parametrize("empty", ["", "   \n "])
def test_empty_rationale_scores_zero(aspect, empty):
    assert CHEAP_SCORERS[aspect](Q0, C0, empty) == 0.0


def test_sentence_splitting_keeps_names_whole():
    text = ("Edward Davis Wood Jr. (October 10, 1924 – December 10, 1978) was an American filmmaker. "
            "It was written by K. A. Applegate. So the answer is yes.")
    assert split_sentences(text) == [
        "Edward Davis Wood Jr. (October 10, 1924 – December 10, 1978) was an American filmmaker.",
        "It was written by K. A. Applegate.",
        "So the answer is yes.",
    ]
    assert conclusion_span("So the answer is Chief of Protocol.") == "Chief of Protocol"
    assert conclusion_span("Therefore, the final answer is yes.") == "yes"
    assert conclusion_span("Answer: Animorphs") == "Animorphs"
    assert conclusion_span("Shirley Temple answered the phone.") is None


# ---------------------------------------------------------------------------------------- factuality


def test_factuality_supported_above_hallucinated():
    assert factuality(Q0, C0, GOOD0) == 1.0
    assert factuality(Q1, C1, GOOD1) == 1.0
    assert factuality(Q0, C0, HALLUCINATED0) == 0.0
    # Woodson belongs to record 0's context, not record 1's: one claim of three is unsupported.
    mixed = "Kiss and Tell is a 1945 American comedy film. Woodson is a place in Arkansas. Shirley Temple was a diplomat."
    assert factuality(Q1, C1, mixed) == pytest.approx(2 / 3)


def test_factuality_discounts_answer_announcements():
    # "So the answer is yes" states nothing checkable: only the claims count.
    assert factuality(Q0, C0, "So the answer is yes.") == 0.0
    assert factuality(Q0, C0, "Scott Derrickson is American. So the answer is yes.") == 1.0
    # An announced answer with content is a claim: present in the context or not.
    assert factuality(Q1, C1, "So the answer is Chief of Protocol.") == 1.0
    assert factuality(Q1, C1, "So the answer is Lord Mayor of Chicago.") == 0.0


def test_factuality_drops_when_a_quoted_year_is_changed():
    """Every record whose supporting sentence has a year: moving it by one is caught."""
    checked = 0
    for rec in HOTPOT:
        for sent in _supporting(rec):
            m = re.search(r"\b(1[5-9]\d\d|20[0-2]\d)\b", sent)
            if not m:
                continue
            year = int(m.group(1))
            ctx_text = " ".join(_ctx(rec))
            wrong = next(y for y in (year + 1, year - 1, year + 11) if str(y) not in ctx_text)
            altered = sent[: m.start()] + str(wrong) + sent[m.end() :]
            q, c = rec["question"], _ctx(rec)
            assert factuality(q, c, sent) == 1.0, sent
            assert factuality(q, c, altered) < 1.0, altered
            assert consistency(q, c, altered) < consistency(q, c, sent)
            checked += 1
            break
    assert checked >= 15


# ---------------------------------------------------------------------------------------- relevance


def test_relevance_supporting_above_distractor():
    assert relevance(Q0, C0, GOOD0) > relevance(Q0, C0, DISTRACTOR0)
    assert relevance(Q1, C1, GOOD1) > relevance(Q1, C1, DISCONNECTED1)


def test_relevance_ranks_supporting_facts_over_a_distractor_paragraph_on_most_records():
    """HotpotQA distractors were picked for lexical similarity to the question, so a lexical
    score cannot always win; it must on the large majority of records."""
    wins = total = 0
    for rec in HOTPOT:
        good, bad = _supporting(rec), _distractor(rec, len(_supporting(rec)))
        if bad is None:  # a record with only the two gold paragraphs
            continue
        concl = f"So the answer is {rec['answer']}."
        g, b = " ".join([*good, concl]), " ".join([*bad, concl])
        q, c = rec["question"], _ctx(rec)
        wins += relevance(q, c, g) > relevance(q, c, b)
        total += 1
    assert wins / total >= 0.85, (wins, total)


# --------------------------------------------------------------------------------------- consistency


def test_consistency_penalises_invented_entities_and_contradictions():
    assert consistency(Q0, C0, GOOD0) == 1.0
    assert consistency(Q0, C0, DISTRACTOR0) == 1.0  # off-topic but true to the context
    # British, 1971, Canadian, Toronto are in neither context nor question.
    assert consistency(Q0, C0, HALLUCINATED0) < 0.6
    self_contradiction = "Scott Derrickson is an American director. Scott Derrickson is not an American director."
    assert consistency(Q0, C0, self_contradiction) == 0.0
    contradicts_context = "Scott Derrickson is not an American director. Ed Wood was an American filmmaker."
    assert consistency(Q0, C0, contradicts_context) == pytest.approx(0.5)


# ------------------------------------------------------------------------------- coherence, logicality


def test_coherence_connected_above_disconnected():
    assert coherence(Q1, C1, GOOD1) > coherence(Q1, C1, DISCONNECTED1)
    assert coherence(Q1, C1, ANAPHORIC1) > coherence(Q1, C1, DISCONNECTED1)
    assert coherence(Q1, C1, DISCONNECTED1) == 0.0
    assert coherence(Q1, C1, "Shirley Temple was Chief of Protocol.") == SINGLE_STEP_COHERENCE


def test_logicality_chained_steps_above_unrelated_ones():
    assert logicality(Q1, C1, GOOD1) == 1.0
    assert logicality(Q1, C1, ANAPHORIC1) == 1.0  # "She" refers back to the step before
    # Only the first step touches the question (Kiss and Tell); the others follow from nothing.
    assert logicality(Q1, C1, DISCONNECTED1) == pytest.approx(1 / 3)
    # An announced answer that no step led to is not chained.
    assert logicality(Q1, C1, "Janet Waldo was an actress. So the answer is Lord High Treasurer.") == 0.0


# --------------------------------------------------------------------------------------- readability


def test_readability_is_flesch_reading_ease():
    assert [syllables(w) for w in ("table", "make", "American", "Derrickson", "1994")] == [2, 1, 4, 3, 4]
    # 6 words, 1 sentence, 13 syllables: 206.835 - 1.015 * 6 - 84.6 * 13 / 6 = 17.445.
    assert readability("", [], "Scott Derrickson is an American director.") == pytest.approx(0.17445)
    assert readability(Q1, C1, READABLE1) > readability(Q1, C1, GOOD1) > readability(Q1, C1, CONVOLUTED1)
    assert readability(Q1, C1, CONVOLUTED1) == 0.0


# ------------------------------------------------------------------------------ fluency, naturalness


def _held_out_pairs():
    for k, rec in enumerate(HOTPOT[TRAIN_RECORDS:]):
        good = " ".join(_supporting(rec))
        if len(good.split()) >= 8:
            yield rec, good, _shuffle(good, k)


def test_lexical_fluency_prefers_word_order_of_real_text():
    pairs = list(_held_out_pairs())
    assert len(pairs) >= 10
    for rec, good, bad in pairs:
        q, c = rec["question"], _ctx(rec)
        assert fluency(q, c, good) > fluency(q, c, bad)
        assert naturalness(q, c, good) > naturalness(q, c, bad)


def _train_reference_lm(out: Path) -> Path:
    """A tiny Llama taught English word order on the first records' context sentences."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from support.tiny import build_tiny_causal

    texts = [s.strip() for r in HOTPOT[:TRAIN_RECORDS] for _, ss in r["context"] for s in ss if s.strip()]
    built = build_tiny_causal(out / "init", corpus=texts, seed=0, vocab_size=1000)
    tok = AutoTokenizer.from_pretrained(built)
    model = AutoModelForCausalLM.from_pretrained(built)
    torch.manual_seed(0)
    rows = [[tok.bos_token_id, *tok(t, add_special_tokens=False)["input_ids"][:63], tok.eos_token_id] for t in texts]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(0)
    model.train()
    for _ in range(250):
        batch = rng.sample(rows, 16)
        width = max(map(len, batch))
        ids = torch.full((len(batch), width), tok.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        for i, r in enumerate(batch):
            ids[i, : len(r)] = torch.tensor(r)
            labels[i, : len(r)] = torch.tensor(r)
        model(input_ids=ids, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    model.save_pretrained(out / "trained")
    tok.save_pretrained(out / "trained")
    return out / "trained"


@pytest.fixture(scope="session")
def reference_lm(tmp_path_factory):
    from lmcot.metrics.rationale.models import PerplexityScorer

    return PerplexityScorer(str(_train_reference_lm(tmp_path_factory.mktemp("reflm"))))


@pytest.mark.slow
def test_reference_lm_fluency_prefers_real_word_order(reference_lm):
    pairs = list(_held_out_pairs())
    for rec, good, bad in pairs:
        q = rec["question"]
        # No context given: the LM alone must tell the order apart.
        assert fluency(q, [], good, lm=reference_lm) > fluency(q, [], bad, lm=reference_lm), good
        assert naturalness(q, [], good, lm=reference_lm) > naturalness(q, [], bad, lm=reference_lm)
    nll = reference_lm.nll([pairs[0][1]])[0]
    assert fluency("", [], pairs[0][1], lm=reference_lm) == pytest.approx(math.exp(-nll / 4.0))


@pytest.mark.slow
def test_naturalness_penalises_repetition(reference_lm):
    rec, good, _ = next(_held_out_pairs())
    first = split_sentences(good)[0]
    looped = " ".join([first] * 4)
    assert naturalness(rec["question"], [], first, lm=reference_lm) > naturalness(rec["question"], [], looped, lm=reference_lm)


@pytest.mark.slow
def test_perplexity_batching_matches_one_by_one(reference_lm):
    from lmcot.metrics.rationale.models import PerplexityScorer

    texts = [good for _, good, _ in _held_out_pairs()][:5] + ["Shirley Temple."]
    batched = reference_lm.nll(texts)
    single = PerplexityScorer(reference_lm.name, batch_size=1)
    assert single.nll(texts) == pytest.approx(batched, abs=1e-4)
    assert reference_lm.nll([""]) == [math.inf]


def test_cheap_scores_do_not_depend_on_the_process_hash_seed(tmp_path):
    """Sums over a set run in the set's order, which follows the process's hash seed: the same rationale
    would score differently in the last digit from run to run (and an RL reward with it)."""
    import os
    import subprocess
    import sys

    from support.paths import HOTPOT

    script = tmp_path / "score.py"
    script.write_text(
        "import json, sys\n"
        "from lmcot.metrics.rationale.cheap import CHEAP_SCORERS\n"
        "out = []\n"
        "for ex in json.load(open(sys.argv[1])):\n"
        "    ctx = [f'{title}: {s}' for title, sents in ex['context'] for s in sents]\n"
        "    rationale = ' '.join(ctx[1:4]) + ' So the answer is ' + ex['answer'] + '.'\n"
        "    out.append([repr(f(ex['question'], ctx, rationale)) for f in CHEAP_SCORERS.values()])\n"
        "print(out)\n")
    outputs = set()
    for seed in ("1", "2", "3", "4"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outputs.add(subprocess.run([sys.executable, str(script), str(HOTPOT)], env=env, capture_output=True,
                                   text=True, check=True).stdout)
    assert len(outputs) == 1, "cheap scores changed with PYTHONHASHSEED"
