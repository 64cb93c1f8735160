"""A context as the LMs read it, and cut to fit the small LM's budget (``data.max_context_tokens``).

    count = context_token_counter(config, small_lm)      # the small LM's tokenizer, loaded at the first count
    kept = truncate_paragraphs(paragraphs, 400, count)    # HotpotQA-shaped: [[title, [sentences]], ...]
    text = truncate_text(passage, 400, count)             # a plain context: cut at a sentence end
    format_context(kept)                                  # "Title A: sent sent ...\nTitle B: ..."

Every method (standard, CoT, guided) sees the same cut context, counted with the small LM's tokenizer
(the tighter reader). A cut is remembered per tokenizer (``lmcot.memo.truncation_memo``), so a rerun
tokenizes nothing. The readers (``lmcot.data``, ``lmcot.custom_data``) and ``lmcot.splits`` cut here.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import dspy

    from lmcot.config import LMCoTConfig
    from lmcot.model_loading import ModelSource

Paragraph = list[Any]  # [title: str, sentences: list[str]]

# Where a plain context may be cut: after a sentence's final punctuation, or at a line break.
_CUT = re.compile(r"(?<=[.!?])\s+|\n+")


def format_context(paragraphs: Iterable[Paragraph]) -> str:
    """One line per paragraph, ``"{title}: {sent1} {sent2} ..."``, joined by ``"\\n"``.

    Sentences are stripped (HotpotQA stores them with a leading space) and empty ones are left
    out so they leave no double spaces (a few real HotpotQA paragraphs contain ``""``).
    """
    blocks = []
    for title, sentences in paragraphs:
        body = " ".join(s.strip() for s in sentences if s.strip())
        blocks.append(f"{title}: {body}")
    return "\n".join(blocks)


def approx_token_count(text: str) -> int:
    """Rough token count: white-space words x 1.3, rounded up.

    Only an approximation for when no tokenizer is at hand; callers that know the reading
    model should pass its tokenizer's length function as ``count_tokens``.
    """
    return math.ceil(len(text.split()) * 1.3)


def truncate_paragraphs(
    paragraphs: list[Paragraph],
    max_tokens: int,
    count_tokens: Callable[[str], int] | None = None,
    memo: MutableMapping[str, int] | None = None,
) -> list[Paragraph]:
    """Shorten ``paragraphs`` so that ``count_tokens(format_context(result)) <= max_tokens``.

    Sentences are taken round-robin by position (every paragraph's first sentence in paragraph
    order, then every second sentence, ...) and the longest prefix of that order that fits is
    kept. Paragraph and sentence order are preserved, each paragraph keeps a prefix of its
    sentences (so supporting-fact indices stay valid for kept sentences) and paragraphs with no
    kept sentence are dropped. Supporting facts are never consulted, so gold evidence is not
    favoured. Deterministic; may return ``[]`` when not even one sentence fits.

    ``memo`` (one per tokenizer, e.g. a ``lmcot.memo.JsonMemo``) remembers how many sentences were
    kept, keyed on the paragraphs and ``max_tokens``: a rerun then tokenizes nothing.
    """
    if max_tokens < 0:
        raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
    count = count_tokens or approx_token_count
    key = None
    if memo is not None:
        key = hashlib.sha1(json.dumps([max_tokens, paragraphs], ensure_ascii=False).encode()).hexdigest()
        if key in memo:
            kept_n = memo[key]
            return ([[title, list(sents)] for title, sents in paragraphs] if kept_n < 0
                    else _round_robin_prefix(paragraphs, kept_n))
    if count(format_context(paragraphs)) <= max_tokens:
        if memo is not None:
            memo[key] = -1
        return [[title, list(sents)] for title, sents in paragraphs]

    order = _round_robin_order(paragraphs)

    def build(n: int) -> list[Paragraph]:
        return _round_robin_prefix(paragraphs, n, order)

    # Binary search for the longest fitting prefix: O(log n) tokenizer calls instead of O(n).
    # Token counts grow with added text; every returned prefix was itself measured to fit.
    lo, hi = 0, len(order)  # prefix `lo` fits (0 sentences -> empty context), the full one does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count(format_context(build(mid))) <= max_tokens:
            lo = mid
        else:
            hi = mid
    if memo is not None:
        memo[key] = lo
    return build(lo)


def _round_robin_order(paragraphs: list[Paragraph]) -> list[tuple[int, int]]:
    """Sentences as (paragraph index, sentence index), round-robin by position."""
    order: list[tuple[int, int]] = []
    longest = max((len(sents) for _, sents in paragraphs), default=0)
    for position in range(longest):
        order.extend((p, position) for p, (_, sents) in enumerate(paragraphs) if position < len(sents))
    return order


def _round_robin_prefix(paragraphs: list[Paragraph], n: int, order: list[tuple[int, int]] | None = None) -> list[Paragraph]:
    """The paragraphs cut to the first ``n`` sentences of the round-robin order."""
    kept = [0] * len(paragraphs)  # sentences kept per paragraph: always a prefix
    for p, _ in (order if order is not None else _round_robin_order(paragraphs))[:n]:
        kept[p] += 1
    return [[title, list(sents[: kept[p]])] for p, (title, sents) in enumerate(paragraphs) if kept[p]]


def truncate_text(text: str, max_tokens: int, count_tokens: Callable[[str], int],
                  memo: MutableMapping[str, int] | None = None) -> str:
    """The longest prefix of ``text`` that ends at a sentence end or line break and fits ``max_tokens``
    (``""`` when not even the first sentence fits). ``memo`` remembers the cut, as for paragraphs."""
    key = None
    if memo is not None:
        key = hashlib.sha1(json.dumps([max_tokens, "text", text], ensure_ascii=False).encode()).hexdigest()
        if key in memo:
            return text if memo[key] < 0 else text[: memo[key]].rstrip()
    if count_tokens(text) <= max_tokens:
        if memo is not None:
            memo[key] = -1
        return text
    ends = [m.start() for m in _CUT.finditer(text)] + [len(text)]
    lo, hi = 0, len(ends)  # the first `lo` pieces fit (0: none); all of them do not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count_tokens(text[: ends[mid - 1]]) <= max_tokens:
            lo = mid
        else:
            hi = mid
    end = ends[lo - 1] if lo else 0
    if memo is not None:
        memo[key] = end
    return text[:end].rstrip()


def evidence_survival(examples: Iterable[dspy.Example]) -> dict[str, int]:
    """How much gold evidence a (possibly truncated) context still holds: supporting sentences kept of
    all, and questions that keep every one of theirs. A supporting fact counts as kept when its
    paragraph is in ``paragraphs`` with that sentence index (truncation keeps sentence prefixes)."""
    kept = total = complete = n = 0
    for ex in examples:
        sizes = {title: len(sents) for title, sents in (ex.get("paragraphs") or [])}
        facts = ex.get("supporting_facts") or []
        here = sum(1 for title, idx in facts if isinstance(idx, int) and idx < sizes.get(title, 0))
        kept, total, n = kept + here, total + len(facts), n + 1
        complete += here == len(facts)
    return {"sentences_kept": kept, "sentences": total, "questions_complete": complete, "questions": n}


# --------------------------------------------------------------------------- counting with the small LM


class TokenCounter:
    """``count(text) -> tokens`` with the small LM's tokenizer, loaded at the first count (a rerun
    whose truncations are all remembered never loads it). ``key`` names the tokenizer's files for
    the truncation memo (None: not local, nothing remembered)."""

    def __init__(self, load_tokenizer: Callable[[], object], key: str | None):
        self._load, self._tok, self.key = load_tokenizer, None, key
        self._lock = threading.Lock()

    def __call__(self, text: str) -> int:
        with self._lock:  # one thread loads; a fast tokenizer is not shared by threads at once
            if self._tok is None:
                self._tok = self._load()
            return len(self._tok(text, add_special_tokens=False).input_ids)


def context_token_counter(config: LMCoTConfig, small_lm: dspy.LM | ModelSource | None = None) -> TokenCounter | None:
    """Count context tokens with the small LM's tokenizer (the tighter reader, e.g. FLAN-T5's 512),
    so every method sees the same truncated context. ``None`` means the approximate word counter.
    ``small_lm``: the small LM, or its model already resolved (``lmcot.model_loading.check_model_source``)."""
    from lmcot.hf_engine import hf_engine_of
    from lmcot.memo import folder_key
    from lmcot.model_loading import ModelSource, load_tokenizer

    if isinstance(small_lm, ModelSource):
        source = small_lm
        return TokenCounter(lambda: load_tokenizer(source), folder_key(source.files))
    engine = hf_engine_of(small_lm) if small_lm is not None else None
    if engine is not None:
        return TokenCounter(lambda: engine.tokenizer, engine.files_key)
    if config.small_lm.backend == "transformers":
        from lmcot.model_loading import resolve_package_file

        small = config.small_lm

        def load():  # the one tokenizer loader (lmcot.model_loading): the revision and errors as elsewhere
            return load_tokenizer(small.model, trust_remote_code=small.trust_remote_code, revision=small.revision)

        # Keyed on the files as configured (a GGUF is not converted just to name it).
        return TokenCounter(load, folder_key(resolve_package_file(str(config.small_lm.model))))
    return None
