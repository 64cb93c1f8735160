"""The train / dev split a config names, truncated with the small LM's tokenizer: the one way to load a split.

    trainset = load_split(config, "train")      # what `lmcot compile` trains on, cut the same way
    valset = load_split(config, "dev")

Library code (the compiler, ``lmcot evaluate``, ``lmcot score``, ``lmcot experiment``) loads its examples
here, so every caller truncates contexts the same way: by default with the small LM's tokenizer
(:func:`lmcot.contexts.context_token_counter`, loaded only when a context needs cutting), as the
command line does.
``data.dataset: custom`` reads the user's own layout (``lmcot.custom_data``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

import dspy

from lmcot.config import LMCoTConfig
from lmcot.contexts import context_token_counter, evidence_survival

if TYPE_CHECKING:
    from lmcot.model_loading import ModelSource

log = logging.getLogger(__name__)


_SMALL_LM_TOKENIZER = object()  # load_split's default: count with the small LM's tokenizer, as the CLI does


def load_split(config: LMCoTConfig, split: str, limit: int | None = None,
               count_tokens: Callable[[str], int] | None | object = _SMALL_LM_TOKENIZER,
               small_lm: dspy.LM | ModelSource | None = None) -> list[dspy.Example]:
    """The ``train`` or ``dev`` examples named in ``config.data``, contexts cut to
    ``data.max_context_tokens`` counted with ``count_tokens``: by default the small LM's tokenizer
    (``small_lm``'s, or its resolved model's, when given, else ``config.small_lm``'s; the approximate
    word counter for a small LM behind an HTTP server), exactly as ``lmcot compile`` / ``evaluate`` count."""
    from lmcot.data import DataError, load_examples
    from lmcot.memo import truncation_memo

    source = getattr(config.data, split)
    if not source:
        raise DataError(f"config: data.{split} is not set (a hub split such as 'validation' or a local data file)")
    if count_tokens is _SMALL_LM_TOKENIZER:
        count_tokens = context_token_counter(config, small_lm)
    limit = limit if limit is not None else getattr(config.data, f"{split}_limit")
    memo = truncation_memo(getattr(count_tokens, "key", None), config.data.max_context_tokens)
    if config.data.dataset == "custom":
        from lmcot.custom_data import load_custom

        result = load_custom(config.data, source, limit=limit, skip_bad=config.data.skip_bad,
                             max_context_tokens=config.data.max_context_tokens, count_tokens=count_tokens,
                             truncation_memo=memo)
    else:
        result = load_examples(config.data.dataset, source, limit=limit, skip_bad=config.data.skip_bad,
                               max_context_tokens=config.data.max_context_tokens, count_tokens=count_tokens,
                               hub_id=config.data.hub_id, truncation_memo=memo)
    if memo is not None:
        memo.save()
    if result.skipped:
        log.warning("%s: skipped %d malformed record(s) (--skip-bad)", source, result.skipped)
    if result.truncated:
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
