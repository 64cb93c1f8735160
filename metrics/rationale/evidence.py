"""Does a rationale *state the evidence*? One documented token-overlap rule.

A rationale states the evidence for a question when either

1. it states a gold supporting sentence: at least ``SENTENCE_OVERLAP`` (60%) of the sentence's
   content tokens occur in the rationale. Tokens are those of the official answer normalisation
   (lower case, ASCII punctuation and articles removed, split on white space); content tokens drop a
   short stop-word list. A sentence with fewer than ``MIN_CONTENT_TOKENS`` (3) content tokens is too
   short to be told apart from chance overlap and never counts on its own; or
2. it states the gold answer: the answer's normalised tokens occur as a contiguous run in the
   rationale's tokens. A yes/no answer would match any sentence holding that word, so for those
   only a concluding claim counts: the answer the rationale states last (``lmcot.metrics.stated_answer``).

Why overlap and not verbatim quoting: a student paraphrasing "X was born in 1961" as "X, born 1961"
states the fact; exact-substring rules miss that. Why 60%: it accepts a sentence restated with its
names and numbers while rejecting one that shares only a title or a date with it.

Used by the scripted stand-in reader (``tests/support/oracle_responder.py``), which answers correctly
from a rationale only when this is true, and by reports of how many rationales state the evidence.
"""

from __future__ import annotations

from collections.abc import Iterable

from lmcot.metrics.answer import normalize_answer
from lmcot.metrics.stated_answer import stated_answer

SENTENCE_OVERLAP = 0.6
MIN_CONTENT_TOKENS = 3
STOP_WORDS = frozenset(
    "a an the of in on at to for from by with and or but is was were are be been being as that this it its "
    "which who whom whose what when where how he she they his her their them him also has had have not "
    "so than then there into about after before over under one".split()
)


def tokens(text: str) -> list[str]:
    return normalize_answer(text).split()


def content_tokens(text: str) -> set[str]:
    return {t for t in tokens(text) if t not in STOP_WORDS}


def states_sentence(rationale_tokens: set[str], sentence: str) -> bool:
    want = content_tokens(sentence)
    if len(want) < MIN_CONTENT_TOKENS:
        return False
    return len(want & rationale_tokens) / len(want) >= SENTENCE_OVERLAP


def _contains_run(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return n > 0 and any(haystack[i:i + n] == needle for i in range(len(haystack) - n + 1))


def states_answer(rationale: str, answer: str) -> bool:
    gold = tokens(answer)
    if not gold:
        return False
    if gold in (["yes"], ["no"]):
        stated = stated_answer(rationale)
        return stated is not None and tokens(stated)[:1] == gold
    return _contains_run(tokens(rationale), gold)


def states_evidence(rationale: str, gold_sentences: Iterable[str], answer: str) -> bool:
    """True when ``rationale`` states a gold supporting sentence or the gold answer (module docstring)."""
    if not (rationale or "").strip():
        return False
    have = set(tokens(rationale))
    return any(states_sentence(have, s) for s in gold_sentences) or states_answer(rationale, answer)


__all__ = ["SENTENCE_OVERLAP", "MIN_CONTENT_TOKENS", "states_evidence", "states_sentence", "states_answer",
           "content_tokens", "tokens", "gold_sentences", "has_gold_evidence", "has_passage", "evidence_share",
           "states_a_context_sentence"]


# ---------------------------------------------------------------------------- examples with gold evidence
# The one place besides the data loader that reads HotpotQA's shape (``paragraphs``, ``supporting_facts``):
# programs and optimizers ask these functions and work the same on tasks that have no such fields.


def _get(example, key: str):
    return example.get(key) if hasattr(example, "get") else getattr(example, key, None)


def gold_sentences(example) -> list[str]:
    """The gold supporting sentences an example's (possibly cut) context still holds; [] for a task
    without supporting facts."""
    sents = {title: s for title, s in (_get(example, "paragraphs") or [])}
    return [sents[t][i] for t, i in (_get(example, "supporting_facts") or [])
            if t in sents and isinstance(i, int) and i < len(sents[t])]


def has_gold_evidence(examples: Iterable) -> bool:
    """Whether any example names supporting facts (HotpotQA, 2Wiki), so that evidence can be measured."""
    return any(_get(ex, "supporting_facts") for ex in examples)


def evidence_share(rows: list[dict], examples: list) -> dict[str, float]:
    """``{"evidence_stated": share}``: dev rationales (``rows``: id, rationale) that state a gold supporting
    sentence or the answer; ``{}`` for a task without gold evidence (nothing to report)."""
    if not has_gold_evidence(examples):
        return {}
    by_id = {str(_get(ex, "id")): ex for ex in examples}
    stated = sum(states_evidence(r.get("rationale") or "", gold_sentences(by_id[str(r.get("id"))]),
                                 str(_get(by_id[str(r.get("id"))], "answer")))
                 for r in rows if str(r.get("id")) in by_id)
    return {"evidence_stated": stated / len(rows) if rows else 0.0}


def has_passage(example) -> bool:
    """Whether an example shows a context passage (text, or HotpotQA paragraphs)."""
    return bool(str(_get(example, "context") or "").strip() or _get(example, "paragraphs"))


def states_a_context_sentence(rationale: str, example) -> bool:
    """Whether ``rationale`` states at least one sentence of the example's context (its paragraphs when it
    has them, else the sentences of its context text): what it says can be read in the prompt."""
    from lmcot.metrics.rationale.text import context_sentences_from_text

    have = set(tokens(rationale or ""))
    paragraphs = _get(example, "paragraphs")
    sentences = ([s for _, sents in paragraphs for s in sents] if paragraphs
                 else context_sentences_from_text(str(_get(example, "context") or "")))
    return any(states_sentence(have, s) for s in sentences)
