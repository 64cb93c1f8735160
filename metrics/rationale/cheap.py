"""Cheap, reference-free rationale scorers: ``scorer(question, context_sentences, rationale) -> [0, 1]``.

``context_sentences`` are the context's sentences, each best prefixed with its paragraph title
(``"Scott Derrickson: He lives in Los Angeles."``; see ``text.context_sentences_from_paragraphs``).
"Steps" are the rationale's sentences; "stems" are content-word stems and "entities" numbers and
capitalised content words (definitions in ``text.py``). IDF weights are computed on the spot over
the row's own context sentences, question and steps, so no outside corpus is needed and words that
every paragraph uses weigh little. An empty rationale scores 0 on every aspect.

=============  =========================================================================  =========
aspect         formula                                                                    backend
=============  =========================================================================  =========
factuality     share of claims that are supported. A claim is a step; an answer           lexical
               announcement ("So the answer is X") is reduced to X and dropped when X has
               no content word (yes/no). Supported: one context sentence (or two of the
               same paragraph), or the question, holds every entity of the claim and
               >= ``FACT_THRESHOLD`` of its IDF-weighted stems. No checkable claim -> 0.
relevance      IDF-weighted share of the question's stems that the rationale mentions     lexical
               (how much of what is asked the rationale addresses; a cosine would punish
               the bridge entities a multi-hop rationale must bring in);
               with an embedder: cosine(question, rationale) clipped at 0.                embedding
logicality     proxy (use the judge for the real thing): share of steps chained to what   lexical
               came before: a step shares a stem with the question or an earlier step, or
               opens with a back-reference (he, this, both, so, ...) after a step; an
               answer announcement is chained when X's stems were seen (yes/no: when
               any step precedes it).
consistency    (1 - u) * (1 - c). u: share of the rationale's entities found neither in   lexical
               the context nor in the question. c: share of steps in a contradiction:
               with another step (same subject stems before is/was/has..., one step's
               predicate stems within the other's, opposite negation) or with a context sentence that holds all the step's
               stems with the opposite negation.
coherence      mean similarity of consecutive steps: TF-IDF cosine of their stems, at     lexical
               least ``ANAPHOR_LINK`` when the later step opens with a back-reference;
               with an embedder: their embedding cosine clipped at 0. A one-step          embedding
               rationale scores ``SINGLE_STEP_COHERENCE`` (nothing to connect: neutral,
               so training neither seeks nor shuns one-sentence rationales).
fluency        exp(-NLL / ``NLL_SCALE``): NLL is the mean token negative log-likelihood   ref. LM
               (nats) of the rationale under the reference LM, i.e. perplexity^(-1/4).
               Without a reference LM, a weak proxy: the share of the rationale's word    lexical
               bigrams attested in the context, the question or a short built-in sample
               of rationale phrasing (0 with fewer than one bigram).
naturalness    fluency (same backend) * distinct-2 of the rationale's words: repeating    ref. LM /
               itself is what makes generated text read unlike a person's.                lexical
readability    Flesch reading ease 206.835 - 1.015 words/sentence - 84.6 syllables/word,  lexical
               clipped to [0, 100] and divided by 100.
=============  =========================================================================  =========
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from lmcot.aspects import TABLE
from lmcot.metrics.stated_answer import conclusion_span

from .text import (
    content_stems,
    distinct_2,
    entity_stems,
    has_negation,
    idf_table,
    opens_with_anaphor,
    split_sentences,
    syllables,
    weighted_cosine,
    weighted_recall,
    words,
)

if TYPE_CHECKING:
    from .models import PerplexityScorer, SentenceEmbedder

__all__ = [
    "ANAPHOR_LINK", "CHEAP_SCORERS", "FACT_THRESHOLD", "NLL_SCALE", "SINGLE_STEP_COHERENCE",
    "coherence", "consistency", "factuality", "fluency", "logicality", "naturalness", "readability",
    "relevance",
]  # fmt: skip

FACT_THRESHOLD = 0.6
NLL_SCALE = 4.0
SINGLE_STEP_COHERENCE = 0.5
ANAPHOR_LINK = 0.5

# Rationale phrasing that a context rarely contains, for the lexical fluency proxy's bigrams.
REFERENCE_TEXT = (
    "So the answer is yes. So the answer is no. Therefore, the answer is the first one.",
    "Both of them are American, so they have the same nationality.",
    "He was born in the city and died in the country. She was born on the same day.",
    "The film was directed by him and it was released in that year.",
    "It is located in the state. They were founded before the other one.",
    "This means that the person who played the role is the one we are looking for.",
    "The question asks which of the two was first, and the context says that it was.",
)


def _zero_if_empty(scorer: Callable[..., float]) -> Callable[..., float]:
    """The module's one rule for every aspect: an empty (or blank) rationale scores 0."""

    @functools.wraps(scorer)
    def score(question: str, context_sentences: Sequence[str], rationale: str, **backend) -> float:
        if not rationale or not rationale.strip():
            return 0.0
        return scorer(question, context_sentences, rationale, **backend)

    return score


def _body(sentence: str) -> str:
    """A context sentence without its ``"Title: "`` prefix."""
    return sentence.partition(": ")[2] or sentence


def _row_idf(question: str, context_sentences: Sequence[str], steps: Sequence[str]):
    docs = [content_stems(s) for s in context_sentences] + [content_stems(question)]
    docs += [content_stems(s) for s in steps]
    return idf_table(docs)


# --------------------------------------------------------------------------------------- readability


@_zero_if_empty
def readability(question: str, context_sentences: Sequence[str], rationale: str) -> float:
    """Flesch reading ease clipped to [0, 100], / 100 (syllables: ``text.syllables``)."""
    ws = words(rationale)
    if not ws:
        return 0.0
    n_sent = max(1, len(split_sentences(rationale)))
    fre = 206.835 - 1.015 * len(ws) / n_sent - 84.6 * sum(syllables(w) for w in ws) / len(ws)
    return min(100.0, max(0.0, fre)) / 100.0


# ------------------------------------------------------------------------------ fluency, naturalness


def _bigrams(text: str) -> list[tuple[str, str]]:
    ws = [w.lower() for w in words(text)]
    return list(zip(ws, ws[1:]))


def _lexical_fluency(question: str, context_sentences: Sequence[str], rationale: str) -> float:
    """Share of the rationale's word bigrams attested in the context, question or REFERENCE_TEXT."""
    grams = _bigrams(rationale)
    if not grams:
        return 0.0
    known: set[tuple[str, str]] = set()
    for text in (*(_body(s) for s in context_sentences), question, *REFERENCE_TEXT):
        known.update(_bigrams(text))
    return sum(g in known for g in grams) / len(grams)


@_zero_if_empty
def fluency(question: str, context_sentences: Sequence[str], rationale: str, *,
            lm: PerplexityScorer | None = None) -> float:
    """``exp(-NLL / NLL_SCALE)`` under the reference LM ``lm``; without one, the lexical bigram
    proxy (see the module table)."""
    if lm is None:
        return _lexical_fluency(question, context_sentences, rationale)
    return math.exp(-lm.nll([rationale])[0] / NLL_SCALE)


@_zero_if_empty
def naturalness(question: str, context_sentences: Sequence[str], rationale: str, *,
                lm: PerplexityScorer | None = None) -> float:
    """``fluency * distinct-2`` of the rationale's lower-cased words (penalises repetition)."""
    rep = distinct_2([w.lower() for w in words(rationale)])
    return fluency(question, context_sentences, rationale, lm=lm) * rep


# ------------------------------------------------------------------------------- relevance, coherence


@_zero_if_empty
def relevance(question: str, context_sentences: Sequence[str], rationale: str, *,
              embedder: SentenceEmbedder | None = None) -> float:
    """IDF-weighted recall of the question's stems in the rationale; with ``embedder``, the
    embedding cosine of question and rationale clipped at 0."""
    if embedder is not None:
        return embedder.similarity(question, rationale)
    steps = split_sentences(rationale)
    idf, unseen = _row_idf(question, context_sentences, steps)
    return weighted_recall(content_stems(question), set(content_stems(rationale)), idf, unseen)


@_zero_if_empty
def coherence(question: str, context_sentences: Sequence[str], rationale: str, *,
              embedder: SentenceEmbedder | None = None) -> float:
    """Mean similarity of consecutive steps (module table); one step -> SINGLE_STEP_COHERENCE."""
    steps = split_sentences(rationale)
    if len(steps) < 2:
        return SINGLE_STEP_COHERENCE
    sims = []
    if embedder is not None:
        sims = [embedder.similarity(a, b) for a, b in zip(steps, steps[1:])]
    else:
        idf, unseen = _row_idf(question, context_sentences, steps)
        for a, b in zip(steps, steps[1:]):
            link = ANAPHOR_LINK if opens_with_anaphor(b) else 0.0
            sims.append(max(link, weighted_cosine(content_stems(a), content_stems(b), idf, unseen)))
    return sum(sims) / len(sims)


# ------------------------------------------------------------------------------------- factuality


def _claims(steps: Sequence[str]) -> list[str]:
    """Checkable claim texts: steps, with answer announcements reduced to their answer span."""
    out = []
    for s in steps:
        span = conclusion_span(s)
        text = s if span is None else span
        if content_stems(text):
            out.append(text)
    return out


def _supported(claim: str, evidence: list[tuple[str, set[str]]], idf: dict[str, float], unseen: float) -> bool:
    """One evidence sentence, or two of the same paragraph (same title), hold all the claim's
    entities and >= FACT_THRESHOLD of its IDF-weighted stems."""
    stems, ents = content_stems(claim), entity_stems(claim)  # stems in order: weighted_recall's sum is then fixed

    def ok(have: set[str]) -> bool:
        return ents <= have and weighted_recall(stems, have, idf, unseen) >= FACT_THRESHOLD

    for i, (title, have) in enumerate(evidence):
        if ok(have):
            return True
        if title and any(t == title and ok(have | h) for t, h in evidence[i + 1 :]):
            return True
    return False


@_zero_if_empty
def factuality(question: str, context_sentences: Sequence[str], rationale: str) -> float:
    """Share of checkable claims supported by the context (or restating the question)."""
    claims = _claims(split_sentences(rationale))
    if not claims:
        return 0.0
    evidence = []
    for s in context_sentences:
        title = s.partition(": ")[0] if ": " in s else ""
        # Entity stems are content stems too, so one set serves both checks.
        evidence.append((title, set(content_stems(s))))
    evidence.append(("", set(content_stems(question))))
    idf, unseen = idf_table([h for _, h in evidence])
    return sum(_supported(c, evidence, idf, unseen) for c in claims) / len(claims)


# ------------------------------------------------------------------------------------- consistency

_PIVOT = re.compile(r"\b(is|are|was|were|has|have|had|does|do|did|can|could|will|would)(n't)?\b", re.IGNORECASE)


def _polar_key(sentence: str) -> tuple[frozenset, frozenset, bool] | None:
    """(subject stems, predicate stems, negated) around the first is/was/has/...; None if absent."""
    m = _PIVOT.search(sentence)
    if not m:
        return None
    subj = frozenset(content_stems(sentence[: m.start()]))
    pred = frozenset(content_stems(sentence[m.end() :]))
    if not subj or not pred:
        return None
    return subj, pred, has_negation(sentence[m.start() :])


def _contradicting_steps(steps: Sequence[str], context_sentences: Sequence[str]) -> set[int]:
    claims = [(i, s) for i, s in enumerate(steps) if conclusion_span(s) is None]
    bad: set[int] = set()
    keys = {i: _polar_key(s) for i, s in claims}
    for i, ki in keys.items():
        for j, kj in keys.items():
            # Same subject, one predicate within the other ("is a British director born in 1971"
            # / "is not a British director"), opposite negation.
            if i < j and ki and kj and ki[0] == kj[0] and (ki[1] <= kj[1] or kj[1] <= ki[1]) and ki[2] != kj[2]:
                bad |= {i, j}
    bodies = [(set(content_stems(_body(c))), has_negation(_body(c))) for c in context_sentences]
    for i, s in claims:
        stems, neg = set(content_stems(s)), has_negation(s)
        if len(stems) >= 2 and any(stems <= have and neg != cneg for have, cneg in bodies):
            bad.add(i)
    return bad


@_zero_if_empty
def consistency(question: str, context_sentences: Sequence[str], rationale: str) -> float:
    """``(1 - unknown entity share) * (1 - contradicting step share)`` (module table)."""
    steps = split_sentences(rationale)
    if not steps:
        return 0.0
    ents = entity_stems(rationale)
    known = set(content_stems(question))
    for s in context_sentences:
        known.update(content_stems(s))
    unknown = len(ents - known) / len(ents) if ents else 0.0
    contradicted = len(_contradicting_steps(steps, context_sentences)) / len(steps)
    return (1.0 - unknown) * (1.0 - contradicted)


# -------------------------------------------------------------------------------------- logicality


@_zero_if_empty
def logicality(question: str, context_sentences: Sequence[str], rationale: str) -> float:
    """Proxy: share of steps chained to the question or earlier steps (module table)."""
    steps = split_sentences(rationale)
    if not steps:
        return 0.0
    seen = set(content_stems(question))
    chained = 0
    for i, s in enumerate(steps):
        span = conclusion_span(s)
        stems = set(content_stems(s if span is None else span))
        if span is not None and not stems:
            chained += i > 0  # "So the answer is yes" follows from whatever came before
        elif span is not None:
            chained += bool(stems & seen)  # the announced answer must have come up before
        else:
            chained += bool(stems & seen) or (i > 0 and opens_with_anaphor(s))
        seen |= stems
    return chained / len(steps)


# Aspect -> scorer, from the one aspect table (lmcot.aspects): each row names its scorer among the
# functions above and the model it takes (``lm=`` or ``embedder=``).
CHEAP_SCORERS: dict[str, Callable[..., float]] = {a.name: globals()[a.cheap_scorer] for a in TABLE}
