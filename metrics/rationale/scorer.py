"""``RationaleScorer``: the eight aspects for many rows at once, each from its configured backend.

    scorer = scorer_from_config(cfg, reference_lm="HuggingFaceTB/SmolLM2-135M")   # the one factory
    scores = scorer.score([{"question": q, "context": ctx, "rationale": r}], progress=True)
    summarize(scores)   # {"factuality": 0.71, ...}

Per aspect, ``cfg.backends[aspect]`` picks ``"cheap"`` (``cheap.py``: lexical formulas, plus the
reference LM for fluency/naturalness and ``cfg.embedding_model`` for relevance/coherence when
given) or ``"judge"`` (``judge.py``: an LLM judge). Models load on first use, once. An empty
rationale scores 0 on every aspect and is never sent to the judge. For a row with no context (a task
without passages) the aspects judged against a passage (``PASSAGE_ASPECTS``: factuality, consistency)
are n/a: ``None``, never computed or sent to the judge, and left out of means.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

from lmcot.aspects import EMBEDDER_ASPECTS, LM_ASPECTS, PASSAGE_ASPECTS
from lmcot.config import ASPECTS, LMCoTConfig, RationaleMetricsConfig

from .cheap import CHEAP_SCORERS
from .text import context_sentences_from_paragraphs, context_sentences_from_text, split_sentences

if TYPE_CHECKING:
    from lmcot.model_loading import ModelSource

__all__ = ["LEXICAL", "LazyScorer", "PASSAGE_ASPECTS", "RationaleScorer", "backend_name", "choose_reference_lm",
           "context_sentences_of", "rationale_row", "reference_lm_for", "reference_name", "scorer_from_config",
           "summarize"]

log = logging.getLogger(__name__)

LEXICAL = "lexical"  # the rationale_metrics.reference_lm value that asks for the lexical fluency proxy

# A reference LM: a model setting (rationale_metrics.reference_lm), or the small LM resolved with its
# revision and trust_remote_code (``lmcot.model_loading.ModelSource``), or None for the lexical proxy.
ReferenceLM = Union[str, "ModelSource", None]


def _named(reference_lm: ReferenceLM) -> ReferenceLM:
    return None if reference_lm == LEXICAL else reference_lm


def reference_name(reference_lm: ReferenceLM) -> str | None:
    """The setting a reference LM is named by in messages (a ``ModelSource``'s ``setting``)."""
    return getattr(reference_lm, "setting", reference_lm)


def context_sentences_of(row: Mapping[str, Any]) -> list[str]:
    """``"Title: sentence"`` strings from ``row["paragraphs"]`` when present, else parsed from the
    formatted ``row["context"]``."""
    paragraphs = row.get("paragraphs")
    if paragraphs:
        return context_sentences_from_paragraphs(paragraphs)
    return context_sentences_from_text(str(row.get("context") or ""))


def rationale_row(example: Any, rationale: str | None) -> dict[str, Any]:
    """The row the scorer reads for one rationale of ``example``: question, context (``""`` when the
    task has none) and, for HotpotQA-shaped examples, the paragraphs (titled context sentences)."""
    get = example.get if hasattr(example, "get") else (lambda k, d=None: getattr(example, k, d))
    row = {"question": get("question"), "context": get("context") or "", "rationale": rationale or ""}
    if get("paragraphs"):
        row["paragraphs"] = get("paragraphs")
    return row


def _context_text(row: Mapping[str, Any]) -> str:
    if row.get("context"):
        return str(row["context"])
    from lmcot.contexts import format_context

    return format_context(row.get("paragraphs") or [])


def backend_name(cfg: RationaleMetricsConfig, aspect: str, reference_lm: ReferenceLM = None) -> str:
    """What scores ``aspect`` under ``cfg``: ``judge``, ``reference LM``, ``embeddings`` or ``lexical``."""
    if cfg.backends[aspect] == "judge":
        return "judge"
    if aspect in LM_ASPECTS and _named(reference_lm or cfg.reference_lm):
        return "reference LM"
    if aspect in EMBEDDER_ASPECTS and cfg.embedding_model:
        return "embeddings"
    return "lexical"


def summarize(scores: Sequence[Mapping[str, float | None]]) -> dict[str, float | None]:
    """Mean of each aspect over the rows that have it, in ``ASPECTS`` order; an aspect that is n/a on
    every row (``None``: no passage to judge it against) is ``None``, not 0."""
    out: dict[str, float | None] = {}
    for aspect in ASPECTS:
        present = [s[aspect] for s in scores if aspect in s]
        values = [float(v) for v in present if v is not None]
        if values:
            out[aspect] = sum(values) / len(values)
        elif present:
            out[aspect] = None
    return out


def choose_reference_lm(config: LMCoTConfig, small_source: ModelSource | None = None) -> tuple[ReferenceLM, str]:
    """The reference LM for perplexity and why: ``rationale_metrics.reference_lm`` (``lexical`` asks
    for the lexical proxy, e.g. for a student without pretrained weights), else the small LM when that
    is an in-process causal transformers model, as its resolved ``ModelSource`` (so it loads with
    ``small_lm.revision`` and ``small_lm.trust_remote_code``; ``small_source``, when it is that model
    already resolved, is used as it is); ``(None, why)`` means the lexical proxy. A ``ModelSource`` is
    not a string: name it with :func:`reference_name`."""
    named = config.rationale_metrics.reference_lm
    if named:
        if named == LEXICAL:
            return None, "rationale_metrics.reference_lm=lexical asks for it"
        return named, "rationale_metrics.reference_lm"
    small = config.small_lm
    if small.backend != "transformers":
        return None, f"the small LM {small.model} is reached over HTTP (small_lm.backend={small.backend}): no weights here"
    if small.model.startswith(("/", ".", "~")) and not Path(small.model).expanduser().exists():
        return None, f"the small LM {small.model} cannot be read (no such folder)"
    try:
        from lmcot.model_loading import resolve_source

        source = (small_source if small_source is not None and small_source.is_for(small) else
                  resolve_source(small.model, trust_remote_code=small.trust_remote_code, revision=small.revision))
    except Exception as exc:  # an unreachable hub id, a broken folder: the proxy, and the reason said
        return None, f"the small LM {small.model} cannot be read ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
    if source.is_encoder_decoder:
        return None, f"the small LM {small.model} is encoder-decoder; perplexity needs a causal LM"
    return source, "the small LM (small_lm.model), an in-process causal LM"


def reference_lm_for(config: LMCoTConfig, quiet: bool = False, small_source: ModelSource | None = None) -> ReferenceLM:
    """:func:`choose_reference_lm`'s model; a fallback to the lexical proxy is logged with its
    reason as a warning unless ``quiet``."""
    reference, why = choose_reference_lm(config, small_source)
    if reference is None and not config.rationale_metrics.reference_lm:
        (log.debug if quiet else log.warning)("fluency/naturalness use the lexical proxy: %s", why)
    return reference


def check_scorer_models(cfg: RationaleMetricsConfig) -> None:
    """Before the first paid call: the reference LM and the embedding model named in
    ``rationale_metrics`` resolve (a folder that exists, a hub id that is available; offline: in the
    local cache) and the reference LM is causal, each failure one line naming the key and the value."""
    from lmcot.config import ConfigError
    from lmcot.model_loading import check_model

    from .models import resolve_embedding_model

    reference = _named(cfg.reference_lm)
    if reference:
        model_config = check_model(reference, "rationale_metrics.reference_lm")
        if getattr(model_config, "is_encoder_decoder", False):
            raise ConfigError(f"rationale_metrics.reference_lm={reference}: an encoder-decoder model; perplexity "
                              "needs a causal LM (or 'lexical' for the lexical proxy)")
    if cfg.embedding_model:
        check_model(resolve_embedding_model(cfg.embedding_model), "rationale_metrics.embedding_model")


def scorer_from_config(config: LMCoTConfig, *, judge_lm: Any = None, reference_lm: ReferenceLM = None,
                       sources: Mapping[str, ModelSource] | None = None) -> RationaleScorer:
    """The scorer ``config.rationale_metrics`` describes (the one factory: evaluation, the compiler's
    RL rewards, the experiment and ``lmcot score`` all build theirs here). Its judge, when an aspect
    is on the judge backend: ``judge_lm`` if given (e.g. a program's own large LM), else
    ``rationale_metrics.judge``, else the large LM, built from ``sources`` (in-process models the checks
    resolved, by role) when it is among them. Its reference LM for perplexity: ``reference_lm``
    if given (``"lexical"`` for the proxy), else ``reference_lm_for(config)``."""
    from lmcot.lms import build_lm

    rm = config.rationale_metrics
    if judge_lm is None and "judge" in rm.backends.values():
        role, judge = config.judge_role(), config.judge()
        source = (sources or {}).get(role)
        judge_lm = build_lm(judge, role=role, source=source if source is not None and source.is_for(judge) else None)
    if reference_lm is None:
        reference_lm = reference_lm_for(config, quiet=True, small_source=(sources or {}).get("small_lm"))
    return RationaleScorer(rm, judge_lm=judge_lm, reference_lm=reference_lm)


class RationaleScorer:
    """Scores rationales on the eight aspects (see the module docstring)."""

    def __init__(self, cfg: RationaleMetricsConfig, judge_lm: Any | None = None, reference_lm: ReferenceLM = None):
        self.cfg = cfg
        self.judge_lm = judge_lm
        self.reference_lm = _named(reference_lm if reference_lm is not None else cfg.reference_lm)
        judged = sorted(a for a, b in cfg.backends.items() if b == "judge")
        if judged and judge_lm is None:
            raise ValueError(f"rationale_metrics.backends asks the judge for {judged} but no judge LM was given "
                             "(pass judge_lm, or set those aspects to 'cheap')")
        self._lm = None
        self._embedder = None
        self._judge = None
        # RL reward code calls ``score`` from several threads: load each model once, not once per thread.
        self._load_lock = threading.Lock()
        # Wall seconds spent in ``score`` (models and formulas; judge calls included): what picking a
        # rationale by quality costs beyond generating it (the experiment's top-quality row reads it).
        self.seconds = 0.0

    # Models load on first use, so a scorer that never needs one never pays for it.
    @property
    def lm(self):
        """The reference-LM ``PerplexityScorer``, or None (lexical fluency proxy)."""
        with self._load_lock:
            if self._lm is None and self.reference_lm:
                from .models import PerplexityScorer

                self._lm = PerplexityScorer(self.reference_lm)
        return self._lm

    def release(self) -> None:
        """Drop the reference LM and the embedder (a training stage needs the memory); each loads
        again on its next use. The judge LM's weights belong to its engine (``TransformersEngine.release``)."""
        with self._load_lock:
            dropped = self._lm is not None or self._embedder is not None
            self._lm = self._embedder = None
        if dropped:
            from lmcot.memory import free_memory

            free_memory()

    @property
    def embedder(self):
        """The ``SentenceEmbedder`` for ``cfg.embedding_model``, or None (lexical similarity)."""
        with self._load_lock:
            if self._embedder is None and self.cfg.embedding_model:
                from .models import SentenceEmbedder

                self._embedder = SentenceEmbedder(self.cfg.embedding_model)
        return self._embedder

    @property
    def judge(self):
        """The ``JudgeScorer`` over ``judge_lm`` (built on first use)."""
        with self._load_lock:
            if self._judge is None:
                from .judge import JudgeScorer

                self._judge = JudgeScorer(self.judge_lm, samples=self.cfg.judge_samples,
                                          concurrency=self.cfg.concurrency)
        return self._judge

    def backend_of(self, aspect: str) -> str:
        """What scores ``aspect``: ``judge``, ``reference LM``, ``embeddings`` or ``lexical``."""
        return backend_name(self.cfg, aspect, self.reference_lm)

    def score(self, rows: Sequence[Mapping[str, Any]], aspects: Sequence[str] = ASPECTS,
              progress: bool = False, call_limit: Any = None) -> list[dict[str, float]]:
        """One ``{aspect: score in [0, 1]}`` per row, in ``aspects`` order. A row needs
        ``question`` and ``rationale`` and either ``context`` or ``paragraphs``. ``call_limit``
        (``lmcot.parallel.CallLimit``): the judge's calls share it with other calls in flight
        (an RL step's answers) instead of running on ``rationale_metrics.concurrency`` threads."""
        import time

        start = time.perf_counter()
        try:
            return self._score(rows, aspects, progress, call_limit)
        finally:
            with self._load_lock:
                self.seconds += time.perf_counter() - start

    def _score(self, rows: Sequence[Mapping[str, Any]], aspects: Sequence[str], progress: bool,
               call_limit: Any) -> list[dict[str, float]]:
        aspects = list(aspects)
        unknown = [a for a in aspects if a not in ASPECTS]
        if unknown:
            raise ValueError(f"unknown aspect(s) {unknown}; aspects are {list(ASPECTS)}")
        prepared = [self._prepare(i, row) for i, row in enumerate(rows)]
        # Equal rows (rollouts of one question that wrote the same rationale) are scored once: the same
        # judge requests sent together would each be paid for (lmcot.parallel.distinct).
        from lmcot.parallel import distinct

        keys = [(q, _context_text(row), r) for (q, _, r), row in zip(prepared, rows)]
        unique, where = distinct(range(len(rows)), key=lambda i: keys[i])
        if len(unique) < len(rows):
            scored = self._score([rows[i] for i in unique], aspects, progress, call_limit)
            return [dict(scored[j]) for j in where]
        cheap = [a for a in aspects if self.cfg.backends[a] == "cheap"]
        judged = [a for a in aspects if self.cfg.backends[a] == "judge"]
        out: list[dict[str, float | None]] = [{} for _ in prepared]
        # No passage, nothing to judge factuality or consistency against: n/a, not 0.
        no_passage = [not ctx and not _context_text(row).strip() for (_, ctx, _), row in zip(prepared, rows)]
        for i in (i for i, none in enumerate(no_passage) if none):
            out[i].update({a: None for a in aspects if a in PASSAGE_ASPECTS})

        rationales = [r for _, _, r in prepared if r.strip()]
        lm = self.lm if any(a in LM_ASPECTS for a in cheap) else None
        embedder = self.embedder if any(a in EMBEDDER_ASPECTS for a in cheap) else None
        # Batch the model work once for all rows; the per-row formulas then read cached values.
        if lm is not None:
            lm.warm(rationales, progress=progress)
        if embedder is not None:
            texts = [q for q, _, r in prepared if r.strip()] + rationales
            texts += [s for r in rationales for s in split_sentences(r)]
            embedder.warm(texts, progress=progress)
        if cheap:
            for i in self._track(range(len(prepared)), progress, "rationale scores (cheap)"):
                q, ctx, r = prepared[i]
                for a in cheap:
                    if a in out[i]:  # n/a
                        continue
                    kwargs = {"lm": lm} if a in LM_ASPECTS else {"embedder": embedder} if a in EMBEDDER_ASPECTS else {}
                    out[i][a] = float(CHEAP_SCORERS[a](q, ctx, r, **kwargs))
        if judged:
            self._score_judged(rows, prepared, judged, out, call_limit)
        return [{a: s[a] for a in aspects} for s in out]

    async def ascore(self, rows: Sequence[Mapping[str, Any]], aspects: Sequence[str] = ASPECTS) -> list[dict[str, float]]:
        """``score`` in a worker thread, for async callers (RL reward functions)."""
        return await asyncio.to_thread(self.score, rows, aspects)

    # ------------------------------------------------------------------------------------------ helpers

    @staticmethod
    def _prepare(i: int, row: Mapping[str, Any]) -> tuple[str, list[str], str]:
        for key in ("question", "rationale"):
            if key not in row:
                raise ValueError(f"rationale row {i}: missing field '{key}'")
        if "context" not in row and "paragraphs" not in row:
            raise ValueError(f"rationale row {i}: missing field 'context' (or 'paragraphs')")
        rationale = row["rationale"]
        return str(row["question"]), context_sentences_of(row), "" if rationale is None else str(rationale)

    def _score_judged(self, rows, prepared, judged: list[str], out: list[dict[str, float | None]],
                      call_limit: Any = None) -> None:
        for i, (_, _, r) in enumerate(prepared):
            if not r.strip():
                out[i].update({a: 0.0 for a in judged if a not in out[i]})
        # Rows with a passage are asked every judged aspect; rows without, only those that need none.
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, (_, _, r) in enumerate(prepared):
            if r.strip():
                groups.setdefault(tuple(a for a in judged if a not in out[i]), []).append(i)
        limit = {} if call_limit is None else {"call_limit": call_limit}
        for asked, todo in groups.items():
            if not asked:
                continue
            judge_rows = [{**rows[i], "question": prepared[i][0], "context": _context_text(rows[i]),
                           "rationale": prepared[i][2]} for i in todo]
            results = self.judge.score(judge_rows, list(asked), **limit)
            if len(results) != len(todo):
                raise RuntimeError(f"judge returned {len(results)} score rows for {len(todo)} rationales")
            for i, res in zip(todo, results):
                out[i].update({a: float(res[a]) for a in asked})

    @staticmethod
    def _track(items: Sequence[int], progress: bool, label: str):
        """``items``; with ``progress`` a bar counts them (plain lines off a terminal: lmcot.console)."""
        if not progress:
            yield from items
            return
        from lmcot.console import progress_bar

        with progress_bar(label, transient=True) as bar:
            task = bar.add_task(label, total=len(items))
            for item in items:
                yield item
                bar.advance(task)


class LazyScorer:
    """A ``RationaleScorer`` from the config, built at its first ``score`` call: loading the reference
    LM and the judge waits until a rationale is actually selected (a cached rerun never does).
    ``sources``: in-process models the checks resolved, by role (see :func:`scorer_from_config`)."""

    def __init__(self, config: LMCoTConfig, sources: Mapping[str, ModelSource] | None = None) -> None:
        self.config, self.sources, self._scorer, self._lock = config, sources, None, threading.Lock()

    def __deepcopy__(self, memo):  # ``program.deepcopy()``: a lock cannot be copied, and a copy builds its own
        return LazyScorer(self.config, self.sources)

    def score(self, *args, **kwargs):
        with self._lock:
            if self._scorer is None:
                self._scorer = scorer_from_config(self.config, sources=self.sources)
        return self._scorer.score(*args, **kwargs)
