"""The RL rewards: eight rationale-quality aspects plus ``answer_f1`` (Lee et al., 2024, Sec. 3.3).

    rewards = RewardSet(cfg.rl, answer_lm=large_lm, scorer=RationaleScorer(...))
    comps = rewards.components(rows)      # rows: question, context, answer (gold), rationale
    totals = rewards.total(comps)         # one scalar reward per row
    funcs, weights = rewards.trl_reward_functions()   # for TRL GRPOTrainer / RLOOTrainer

* Aspect rewards come from ``scorer.score(rows, aspects) -> [{aspect: score in [0, 1]}]``
  (``lmcot.metrics.rationale.RationaleScorer``), all aspects of a batch in one call.
* ``answer_f1``: the frozen large LM answers ``Answer(question, context, rationale)`` with
  ``dspy.Predict`` (DSPy's configured adapter, ChatAdapter by default: the same call LM-guided CoT
  makes at inference), scored against the gold answer by the task (``TaskMetric``): token F1 for spans,
  EM for numbers and labels, and the user metric in place of F1 when one is set (the reward keeps its
  config name, ``rl.weights.answer_f1``). Calls run concurrently.
* A task without contexts (``with_context=False``): the aspects judged against a passage (factuality,
  consistency) cannot be scored, so they are left out of the reward, with a one-line note.
* ``extra``: custom named rewards ``(rows) -> list[float]``; their weights go in ``weights``
  (default 1.0).

Weights come from ``rl.weights`` (overridable per name with ``weights=``). **A reward whose weight is
0 is never computed**: no judge or large-LM calls are made (and paid) for it, and it is not passed
to TRL. So ``rl.weights.answer_f1=0`` trains on rationale quality alone without any answer calls.

Aggregation (``rl.aggregation``):

* ``weighted_sum``: ``total = sum_i w_i * r_i``.
* ``normalize_sum``: each component is z-normalised across the batch (population std; a component
  with std 0 becomes all zeros), then ``total = sum_i w_i * z_i``. This keeps a reward with a small
  spread (e.g. fluency) from being drowned by one with a large spread.

Logging: ``log_metrics(components)`` gives ``rewards/<name>/mean`` (the values that enter the
weighted sum), ``reward`` (mean total) and, for ``normalize_sum``, ``raw_rewards/<name>/mean`` (the
unnormalised means). These are the names TRL logs for its reward functions, so GRPO/RLOO runs and
the seq2seq loop produce the same keys, and ``reward == sum_i w_i * rewards/<name>/mean``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable

from lmcot.config import ASPECTS, REWARDS, RLConfig
from lmcot.parallel import CallLimit, ContextPool

log = logging.getLogger(__name__)

RewardFn = Callable[[list[dict[str, Any]]], list[float]]

# How many recent batches the TRL reward functions share results for (see trl_reward_functions).
_SHARED_BATCHES = 4


@dataclass(frozen=True)
class _Batch:
    raw: dict[str, list[float]]
    summands: dict[str, list[float]]


def zscore(values: list[float]) -> list[float]:
    """Batch z-normalisation with the population std; a constant component becomes zeros."""
    n = len(values)
    if n == 0:
        return []
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    if std < 1e-12:
        return [0.0] * n
    return [(v - mean) / std for v in values]


def reward_set_name(weights: dict[str, float]) -> str:
    """What an RL run optimises, in words: ``rationale quality + answer F1``, ``rationale quality
    only``, ``answer F1 only`` (the paper's reward sets and the experiment's ablation; ``, weighted``
    when the active weights differ), or, for any other choice, ``weighted rewards``;
    :func:`reward_weights_text` lists the weights."""
    active = {n: w for n, w in weights.items() if w != 0}
    weighted = "" if len(set(active.values())) <= 1 else ", weighted"
    if set(active) == {*ASPECTS, "answer_f1"}:
        return "rationale quality + answer F1" + weighted
    if set(active) == set(ASPECTS):
        return "rationale quality only" + weighted
    if set(active) == {"answer_f1"}:
        return "answer F1 only"
    return "weighted rewards"


def reward_weights_text(weights: dict[str, float]) -> str:
    """``factuality 1, ..., answer_f1 0``: every weight, the zero ones (never computed) included."""
    return ", ".join(f"{n} {w:g}" for n, w in weights.items())


def _completion_text(completion: Any) -> str:
    # TRL passes strings for plain-text prompts and message lists for conversational ones.
    if isinstance(completion, list):
        return str(completion[-1].get("content", "")) if completion else ""
    return str(completion)


class RewardSet:
    """The weighted rewards an RL run optimises (see the module docstring)."""

    def __init__(self, rl: RLConfig, answer_lm: Any = None, scorer: Any = None, concurrency: int = 8,
                 extra: dict[str, RewardFn] | None = None, weights: dict[str, float] | None = None,
                 task: Any = None, examples: list | None = None, with_context: bool = True):
        self.rl = rl
        from lmcot.metrics.task_metric import TaskMetric

        self.task = task if task is not None else TaskMetric()  # how the answer reward scores (default: span F1)
        # The full training examples, by question: the user metric sees the example, not just the gold.
        self._examples = {str(ex.get("question")): ex for ex in examples or []}
        self.aggregation = rl.aggregation
        self.answer_lm = answer_lm
        self.scorer = scorer
        self.concurrency = max(1, int(concurrency))
        # One limit for every reward call of a step: the answer calls and the judge's calls are all
        # in flight together, at most ``concurrency`` at once (rl.reward_concurrency).
        self.call_limit = CallLimit(self.concurrency)
        # A scorer that takes ``call_limit`` (RationaleScorer, JudgeScorer) runs its judge calls under it.
        self._scorer_takes_limit = scorer is not None and "call_limit" in inspect.signature(scorer.score).parameters
        self.extra = dict(extra or {})
        clash = sorted(set(self.extra) & set(REWARDS))
        if clash:
            raise ValueError(f"extra reward names {clash} clash with the built-in rewards")
        all_weights = {name: float(getattr(rl.weights, name)) for name in REWARDS}
        all_weights.update({name: 1.0 for name in self.extra})
        for name, w in (weights or {}).items():
            if name not in all_weights:
                raise ValueError(f"weights: unknown reward {name!r}; known: {sorted(all_weights)}")
            all_weights[name] = float(w)
        self.all_weights = all_weights
        if not with_context:
            from lmcot.aspects import PASSAGE_ASPECTS

            dropped = [a for a in PASSAGE_ASPECTS if all_weights.get(a)]
            if dropped:
                log.warning("rl: the task has no context passages: %s (judged against a passage) are n/a and left "
                            "out of the reward", ", ".join(dropped))
            all_weights.update({a: 0.0 for a in PASSAGE_ASPECTS})
        # Zero-weight rewards are dropped here, once: nothing downstream computes them.
        self.weights = {n: w for n, w in all_weights.items() if w != 0.0}
        if not self.weights:
            from lmcot.config import ConfigError

            raise ConfigError("rl.weights: every reward weight is 0: nothing to optimise")
        self.aspects = [a for a in ASPECTS if a in self.weights]
        if self.aspects and scorer is None:
            raise ValueError(f"aspect rewards {self.aspects} have non-zero weight but no scorer was given: pass "
                             "scorer=RationaleScorer(...) (or RewardSet.from_config) or set their weights to 0")
        if "answer_f1" in self.weights and answer_lm is None:
            raise ValueError("answer_f1 has non-zero weight but no answer_lm (the frozen large LM) was given")
        self._predictor = None
        if "answer_f1" in self.weights:
            import dspy

            from lmcot.programs.signatures import Answer

            self._predictor = dspy.Predict(Answer)
            self._predictor.lm = answer_lm
        self._lock = threading.Lock()
        self._shared: OrderedDict[tuple, Future] = OrderedDict()
        self._pool: ContextPool | None = None

    @classmethod
    def from_config(cls, cfg: Any, answer_lm: Any, *, judge_lm: Any = None, reference_lm: Any = None,
                    extra: dict[str, RewardFn] | None = None, weights: dict[str, float] | None = None) -> RewardSet:
        """From an ``LMCoTConfig``: builds the ``RationaleScorer`` only when an aspect weight is
        non-zero (so a run on answer F1 alone needs no judge and imports nothing more)."""
        rl = cfg.rl
        scorer = None
        if any((weights or {}).get(a, getattr(rl.weights, a)) != 0 for a in ASPECTS):
            from lmcot.metrics.rationale import scorer_from_config

            scorer = scorer_from_config(cfg, judge_lm=judge_lm, reference_lm=reference_lm)
        return cls(rl, answer_lm=answer_lm, scorer=scorer, concurrency=rl.reward_concurrency,
                   extra=extra, weights=weights)

    @property
    def names(self) -> list[str]:
        """Active reward names (non-zero weight), in a fixed order: aspects, answer_f1, extras."""
        return list(self.weights)

    # -- computing ------------------------------------------------------------------------
    def components(self, rows: list[dict[str, Any]]) -> dict[str, list[float]]:
        """Each active reward for each row. ``rows``: ``question``, ``context``, ``answer`` (gold),
        ``rationale``. Aspect scores come from one scorer call, which runs while the large-LM
        answers are fetched: the judge's calls and the answer calls share one limit
        (``self.call_limit``), so all of a step's calls are in flight together up to it."""
        rows = [dict(r, rationale=str(r.get("rationale", "")).strip()) for r in rows]
        out: dict[str, list[float]] = {}
        from lmcot.parallel import map_concurrently

        aspect_rows = [{k: r[k] for k in ("question", "context", "rationale")} for r in rows]
        limit = {"call_limit": self.call_limit} if self._scorer_takes_limit else {}
        jobs = {"aspects": (lambda: self.scorer.score(aspect_rows, list(self.aspects), **limit))
                if self.aspects else None,
                "answer_f1": (lambda: self.answer_f1(rows)) if "answer_f1" in self.weights else None}
        # Aspect scores are computed while the large-LM answers are fetched.
        done = map_concurrently(lambda job: job() if job is not None else None, list(jobs.values()), 2)
        scores, answer_scores = done
        if scores is not None:
            if len(scores) != len(rows):
                raise ValueError(f"scorer returned {len(scores)} score rows for {len(rows)} rationales")
            for a in self.aspects:
                out[a] = _fill_na([s[a] for s in scores])
        if answer_scores is not None:
            out["answer_f1"] = answer_scores
        for name, fn in self.extra.items():
            if name in self.weights:
                values = [float(v) for v in fn(rows)]
                if len(values) != len(rows):
                    raise ValueError(f"extra reward {name!r} returned {len(values)} values for {len(rows)} rows")
                out[name] = values
        return {n: out[n] for n in self.names}

    def answer_f1(self, rows: list[dict[str, Any]]) -> list[float]:
        """The answer reward of each row's rationale: the large LM answers from it (concurrent calls) and
        the task scores the answer (F1 under the answer type, or the user metric)."""
        from dspy.utils.exceptions import AdapterParseError

        from lmcot.parallel import distinct, map_concurrently
        from lmcot.programs.signatures import context_inputs

        if self._predictor is None:
            raise ValueError("answer_f1 has weight 0 in this RewardSet, so it has no answer LM")

        from lmcot.reply_cache import parsed_reply

        def one(row: dict[str, Any]) -> str | None:
            try:
                # Asked again if it does not parse, and never cached (lmcot.reply_cache).
                inputs = context_inputs(self._predictor.signature, row["question"], row.get("context"),
                                        rationale=row["rationale"])
                pred = parsed_reply(lambda: self._predictor(**inputs), what="large LM answer")
            except AdapterParseError:
                # An unparseable reply is a wrong answer, not a reason to stop training.
                log.warning("large-LM reply could not be parsed; answer_f1 = 0 for this rollout")
                return None
            return pred.answer

        # Rollouts that wrote the same rationale for a question (common in a GRPO group) are asked once.
        unique, where = distinct(rows, key=lambda r: (r["question"], r["context"], r["rationale"]))
        answers = map_concurrently(one, unique, max_workers=self.concurrency, limit=self.call_limit)
        return [0.0 if answers[j] is None else self._task_reward(row, answers[j]) for row, j in zip(rows, where)]

    def _task_reward(self, row: dict[str, Any], answer: str) -> float:
        import dspy

        example = self._examples.get(str(row["question"])) or dspy.Example(
            question=row["question"], context=row.get("context") or "", answer=row["answer"])
        scores = self.task.score(answer, example, dspy.Prediction(answer=answer, rationale=row["rationale"]))
        return float(scores["metric"] if "metric" in scores else scores["f1"])

    # -- aggregating ----------------------------------------------------------------------
    def summands(self, components: dict[str, list[float]]) -> dict[str, list[float]]:
        """The per-reward values that are weighted and summed: the raw components for
        ``weighted_sum``, their batch z-scores for ``normalize_sum``.

        Not TRL's ``GRPOConfig(multi_objective_aggregation="normalize_then_sum")`` (TRL 1.16), a different
        estimator: it z-scores each reward within each prompt's *group* (std + 1e-4), so a tiny in-group
        spread (F1 0.50 vs 0.51) is blown up to +-1 and a reward constant in a group drops out, then
        normalises the advantage over the batch, ignoring ``scale_rewards``. Here each component gets one
        scale per step (the *batch*) and the advantage is left to each trainer's own baseline (GRPO's group
        mean/std, RLOO's leave-one-out, the seq2seq loop), so all three (RLOOConfig has no such setting)
        share one definition and log ``rewards/<name>/mean`` with the same meaning."""
        if self.aggregation == "normalize_sum":
            return {n: zscore(v) for n, v in components.items()}
        return {n: [float(x) for x in v] for n, v in components.items()}

    def total(self, components: dict[str, list[float]]) -> list[float]:
        """One scalar reward per row: ``sum_i w_i * summand_i`` (see the module docstring)."""
        parts = self.summands(components)
        n = len(next(iter(parts.values()))) if parts else 0
        return [sum(self.weights[name] * parts[name][i] for name in parts) for i in range(n)]

    def log_metrics(self, components: dict[str, list[float]]) -> dict[str, float]:
        """Means for the training log, under the names TRL uses (see the module docstring)."""
        parts = self.summands(components)
        metrics = {f"rewards/{n}/mean": _mean(v) for n, v in parts.items()}
        metrics["reward"] = _mean(self.total(components))
        if self.aggregation == "normalize_sum":
            metrics.update({f"raw_rewards/{n}/mean": _mean(v) for n, v in components.items()})
        return metrics

    def progress_value(self, metrics: dict[str, float]) -> float | None:
        """The number a progress bar shows: ``reward``, except for ``normalize_sum``, whose ``reward``
        is a sum of batch z-scores and so ~0 at every step; there it is ``sum_i w_i * raw mean_i``
        (comparable from step to step). None when the logged metrics lack it."""
        if self.aggregation != "normalize_sum":
            return metrics.get("reward")
        try:
            return sum(self.weights[n] * float(metrics[f"raw_rewards/{n}/mean"]) for n in self.names)
        except KeyError:
            return None

    # -- TRL ------------------------------------------------------------------------------
    def trl_reward_functions(self) -> tuple[list[Callable], list[float]]:
        """``(reward_funcs, reward_weights)`` for TRL's GRPOTrainer / RLOOTrainer.

        One async function per active reward, named after it (TRL logs ``rewards/<name>/mean``),
        called as ``f(prompts, completions, question=[...], context=[...], answer=[...], ...)``
        with the dataset's columns. TRL gathers all of them on one event loop for each generation
        batch; the first to arrive starts one shared computation of every component (one scorer
        call, one round of large-LM calls) in a worker thread and the others await the same
        future, so nothing is computed twice. For ``normalize_sum`` each returns its batch
        z-scores, so TRL's weighted sum is normalise-then-sum; the raw means are logged through
        TRL's ``log_metric`` as ``raw_rewards/<name>/mean``.
        """
        funcs = [self._trl_function(name, first=(i == 0)) for i, name in enumerate(self.names)]
        return funcs, [self.weights[n] for n in self.names]

    def _trl_function(self, name: str, first: bool) -> Callable:
        async def reward(prompts, completions, question, context, answer, log_metric=None, **_: Any) -> list[float]:
            texts = [_completion_text(c).strip() for c in completions]
            batch = await self._shared_batch(list(question), list(context), list(answer), texts)
            if first and log_metric is not None and self.aggregation == "normalize_sum":
                for n, values in batch.raw.items():
                    log_metric(f"raw_rewards/{n}/mean", _mean(values))
            return batch.summands[name]

        reward.__name__ = name
        reward.__qualname__ = f"RewardSet.{name}"
        return reward

    async def _shared_batch(self, questions: list[str], contexts: list[str], answers: list[str],
                            rationales: list[str]) -> _Batch:
        key = tuple(zip(questions, contexts, answers, rationales))
        # A threading lock and concurrent futures (not asyncio ones) keep this correct even if
        # TRL's event loop, or a second one, calls from another thread.
        with self._lock:
            fut = self._shared.get(key)
            if fut is None:
                if self._pool is None:
                    self._pool = ContextPool(max_workers=1, thread_name_prefix="lmcot-rewards")
                rows = [{"question": q, "context": c, "answer": a, "rationale": r} for q, c, a, r in key]
                fut = self._pool.submit(self._compute_batch, rows)
                self._shared[key] = fut
                while len(self._shared) > _SHARED_BATCHES:
                    self._shared.popitem(last=False)
        return await asyncio.wrap_future(fut)

    def _compute_batch(self, rows: list[dict[str, Any]]) -> _Batch:
        raw = self.components(rows)
        return _Batch(raw=raw, summands=self.summands(raw))

    def close(self) -> None:
        """Stop the worker thread used by the TRL reward functions (also done at exit)."""
        with self._lock:
            pool, self._pool = self._pool, None
            self._shared.clear()
        if pool is not None:
            pool.shutdown(wait=True)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _fill_na(values: list[float | None]) -> list[float]:
    """An aspect that is n/a for some rows (no passage in a task that mixes both) takes the batch mean of
    the others: neutral for the advantage, instead of a 0 that would punish the missing passage."""
    known = [float(v) for v in values if v is not None]
    mean = _mean(known)
    return [mean if v is None else float(v) for v in values]
