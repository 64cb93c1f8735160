"""The train / dev split a config names, truncated with the small LM's tokenizer.

    count = context_token_counter(config, small_lm)
    trainset = load_split(config, "train", count_tokens=count)

Library code (the compiler, ``lmcot evaluate``, ``lmcot score``) loads its examples here, so every
caller truncates contexts the same way.
"""

from __future__ import annotations

import logging
from typing import Callable

import dspy

from lmcot.config import LMCoTConfig

log = logging.getLogger(__name__)


def context_token_counter(config: LMCoTConfig, small_lm: dspy.LM | None = None) -> Callable[[str], int] | None:
    """Count context tokens with the small LM's tokenizer (the tighter reader, e.g. FLAN-T5's 512),
    so every method sees the same truncated context. ``None`` means the approximate word counter."""
    from lmcot.lms import hf_engine_of

    engine = hf_engine_of(small_lm) if small_lm is not None else None
    if engine is not None:
        tok = engine.tokenizer
    elif config.small_lm.backend == "transformers":
        from transformers import AutoTokenizer

        from lmcot.checkpoint import resolve_model

        tok = AutoTokenizer.from_pretrained(resolve_model(config.small_lm.model),
                                            trust_remote_code=config.small_lm.trust_remote_code)
    else:
        return None
    return lambda text: len(tok(text, add_special_tokens=False).input_ids)


def load_split(config: LMCoTConfig, split: str, limit: int | None = None,
               count_tokens: Callable[[str], int] | None = None) -> list[dspy.Example]:
    """The ``train`` or ``dev`` examples named in ``config.data``."""
    from lmcot.data import DataError, load_examples

    source = getattr(config.data, split)
    if not source:
        raise DataError(f"config: data.{split} is not set (a hub split such as 'validation' or a local JSON/JSONL file)")
    limit = limit if limit is not None else getattr(config.data, f"{split}_limit")
    result = load_examples(config.data.dataset, source, limit=limit, skip_bad=config.data.skip_bad,
                           max_context_tokens=config.data.max_context_tokens, count_tokens=count_tokens,
                           hub_id=config.data.hub_id)
    if result.skipped:
        log.warning("%s: skipped %d malformed record(s) (--skip-bad)", source, result.skipped)
    if result.truncated:
        from lmcot.data import evidence_survival

        ev = evidence_survival(result.examples)
        if ev["sentences_kept"] < ev["sentences"]:
            log.warning("data.%s: contexts cut to data.max_context_tokens=%s keep %d of %d gold supporting "
                        "sentences (%d of %d questions keep all their evidence)", split,
                        config.data.max_context_tokens, ev["sentences_kept"], ev["sentences"],
                        ev["questions_complete"], ev["questions"])
    return _repeated_ids(result.examples, source, drop=config.data.skip_bad)


def _repeated_ids(examples: list[dspy.Example], source: str, *, drop: bool) -> list[dspy.Example]:
    """A repeated id would be scored (and paid for) twice and weigh twice in the means: warn, and with
    --skip-bad (``data.skip_bad``) keep only the first of each."""
    seen: set[str] = set()
    first: list[dspy.Example] = []
    for ex in examples:
        if str(ex.id) not in seen:
            seen.add(str(ex.id))
            first.append(ex)
    repeats = len(examples) - len(first)
    if not repeats:
        return examples
    if drop:
        log.warning("%s: dropped %d record(s) whose id repeats an earlier one (--skip-bad)", source, repeats)
        return first
    log.warning("%s: %d record(s) repeat an earlier id and are counted again; --skip-bad drops the repeats",
                source, repeats)
    return examples
