"""LM-guided chain-of-thought (Lee et al., 2024): a small LM writes the rationale, a large frozen LM
answers from question + context + rationale.

    small = lmcot.build_lm(SmallLMConfig(model="Qwen/Qwen2.5-0.5B-Instruct"))
    large = lmcot.build_lm(LargeLMConfig(model="openai/gpt-4o-mini", api_key_env="OPENAI_API_KEY"))
    program = LMGuidedCoT(small, large, num_samples=5)     # 5 rationales, majority vote
    program(question="...", context="...").answer
    # 5 rationales scored on the eight aspects; the large LM reads only the best one (one answer call)
    program = LMGuidedCoT(small, large, num_samples=5, select="quality",
                          scorer=scorer_from_config(cfg, judge_lm=judge))
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, Callable, Sequence

import dspy

from lmcot.aspects import parse_select
from lmcot.programs.adapter import RationaleAdapter
from lmcot.programs.answer_adapter import answer_adapter_for
from lmcot.parallel import CallLimit, distinct, map_concurrently
from lmcot.programs.signatures import Answer, context_inputs, rationalize_signature
from lmcot.programs.voting import majority_vote
from lmcot.reply_cache import attempts_for, parsed_reply

log = logging.getLogger(__name__)


class AnswerCallError(RuntimeError):
    """The large LM's answer call failed (or could not be parsed) after the rationales were written;
    ``rationales`` keeps them so the failed example's record still shows what the small LM wrote."""

    def __init__(self, message: str, rationales: list[str]):
        super().__init__(message)
        self.rationales = list(rationales)


class LMGuidedCoT(dspy.Module):
    """Rationalize on the small LM, then Answer on the large LM.

    ``num_samples > 1`` is self-consistency: k rationales sampled at ``sample_temperature`` (sent
    concurrently, so an in-process small LM generates them in one batch), one answer per rationale,
    majority vote over normalised answers. The prediction keeps every rationale and answer.

    ``rationale_form`` (``kd.rationale_form``): ``"full"`` asks the small LM for a rationale (which may
    end in an answer), ``"evidence"`` for reasoning and evidence without a final answer
    (``RationalizeEvidence``). A student trained in one form is run in it: the compiler and
    ``program.json`` keep the form with the program.

    ``select="quality"`` (or ``"quality:<aspect>"``) scores the k rationales on the eight aspects
    (mean of all, or that one aspect) with ``scorer`` (a ``RationaleScorer``; default: every aspect
    on its cheap scorer) *before* the large LM is asked, and asks it once, with the best rationale
    (ties: the first sampled). The prediction then also holds ``scores`` (one dict per rationale).
    """

    # One bound on the large-LM answer calls shared with other runs of the program (``lmcot serve``
    # sets a CallLimit of eval.concurrency for all its requests); None: each call's own threads are the bound.
    answer_limit: CallLimit | None = None

    def __init__(self, small_lm: dspy.LM | None = None, large_lm: dspy.LM | None = None, num_samples: int = 1,
                 sample_temperature: float = 0.7, select: str = "vote", scorer=None,
                 answer_key: Callable[[str], str] | None = None, rationale_form: str = "full"):
        super().__init__()
        if num_samples < 1:
            raise ValueError("num_samples must be >= 1")
        self.select_aspect = parse_select(select)
        self.select = select
        self.scorer = scorer
        self.rationale_form = rationale_form
        self.rationalize = dspy.Predict(rationalize_signature(rationale_form))
        self.answer = dspy.Predict(Answer)
        self.rationalize.lm = small_lm
        self.answer.lm = large_lm
        # The large LM is frozen: lmcot's compiler trains only ``rationalize``'s LM and builds its
        # training data from teacher traces, never from ``answer``'s calls.
        self.num_samples = num_samples
        self.sample_temperature = sample_temperature
        self.rationale_adapter = RationaleAdapter()
        # How self-consistency compares answers: the task's form (TaskMetric.vote_key), default spans.
        self.answer_key = answer_key

    def with_rationale_form(self, form: str) -> LMGuidedCoT:
        """A copy whose small LM is asked for rationales of ``form`` (the same LMs; this one is untouched)."""
        if form == self.rationale_form:
            return self
        copy = self.deepcopy()
        copy.rationale_form = form
        copy.rationalize = dspy.Predict(rationalize_signature(form))
        copy.rationalize.lm, copy.answer.lm = self.small_lm, self.large_lm  # the same LMs, not copies of them
        return copy

    @property
    def small_lm(self) -> dspy.LM | None:
        return self.rationalize.lm

    @property
    def large_lm(self) -> dspy.LM | None:
        return self.answer.lm

    def _sample_configs(self, k: int) -> list[dict]:
        """The per-call config of each of k rationale calls (greedy when k == 1)."""
        if k == 1:
            return [{}]
        seed = (self.small_lm.kwargs.get("seed") if self.small_lm is not None else None)
        configs = []
        for i in range(k):
            config = {"temperature": self.sample_temperature, "rollout_id": i}
            if seed is not None:
                # A distinct seed per sample keeps seeded runs reproducible *and* the k samples distinct,
                # however the engine groups requests into batches.
                config["seed"] = seed + i
            configs.append(config)
        return configs

    def write_rationale(self, question: str, context: str | None, config: dict) -> str:
        """One small-LM call (``config`` from ``_sample_configs``); no context field when there is none."""
        with dspy.context(adapter=self.rationale_adapter):
            return self.rationalize(**context_inputs(self.rationalize.signature, question, context,
                                                     config=config)).rationale

    def write_rationales(self, question: str, context: str | None, k: int | None = None) -> list[str]:
        """k rationales from the small LM (greedy when k == 1)."""
        k = k or self.num_samples
        return map_concurrently(lambda config: self.write_rationale(question, context, config),
                                self._sample_configs(k), max_workers=k)

    def rationales_for(self, examples: Sequence[dspy.Example], *, max_workers: int,
                       on_done: Callable[[int, list[str] | Exception], None] | None = None
                       ) -> list[list[str] | Exception]:
        """Phase 1 of a whole-set run: every example's rationales (self-consistency samples included),
        as one stream of small-LM calls on ``max_workers`` threads. Calls are sent longest prompt first,
        so the requests an in-process engine finds queued together have similar lengths (little
        padding) and an out-of-memory shows up at once. Each call is the one ``forward`` makes (same
        prompt, same config, same cache entry). Per example: its rationales, or the exception of its
        first failed call. ``on_done(i, that)`` is called as soon as example i has it (so its answer
        can start while the small LM still writes the others')."""
        configs = self._sample_configs(self.num_samples)
        calls = [(i, j) for i in range(len(examples)) for j in range(len(configs))]
        calls.sort(key=lambda c: -(len(examples[c[0]].get("context") or "") + len(examples[c[0]].question)))
        results: list[list] = [[None] * len(configs) for _ in examples]
        missing = [len(configs)] * len(examples)
        lock = threading.Lock()

        def outcome(i: int) -> list[str] | Exception:
            return next((r for r in results[i] if isinstance(r, Exception)), results[i])

        def one(call: tuple[int, int]) -> None:
            i, j = call
            ex = examples[i]
            try:
                results[i][j] = self.write_rationale(ex.question, ex.get("context"), configs[j])
            except Exception as exc:  # noqa: BLE001 - recorded for its example, the others go on
                results[i][j] = exc
            with lock:
                missing[i] -= 1
                done = missing[i] == 0
            if done and on_done is not None:
                on_done(i, outcome(i))

        map_concurrently(one, calls, max_workers=max_workers)
        return [outcome(i) for i in range(len(examples))]

    def answer_from(self, question: str, context: str | None, rationales: list[str]) -> dspy.Prediction:
        """Phase 2: one large-LM answer per rationale, majority vote (a selection step over the
        rationales can sit between :meth:`rationales_for` and this). With ``select="quality[:aspect]"``
        the best-scored rationale is answered instead, in one call."""
        if self.select != "vote":
            return self._answer_best(question, context, rationales)
        unique, where = distinct(rationales, key=lambda r: r)  # equal rationales: one call, not a race of two
        try:
            asked = map_concurrently(lambda r: self._ask(question, context, r), unique, max_workers=len(unique))
            answers = [asked[j] for j in where]
        except Exception as exc:
            # The small LM's work is not lost with the large LM's failure: predictions.jsonl keeps it.
            raise AnswerCallError(f"answer call failed: {type(exc).__name__}: {exc}", rationales) from exc
        win = majority_vote(answers, key=self.answer_key)
        return dspy.Prediction(rationale=rationales[win], answer=answers[win], rationales=rationales, answers=answers)

    def forward(self, question: str, context: str | None = None) -> dspy.Prediction:
        return self.answer_from(question, context, self.write_rationales(question, context))

    def _ask(self, question: str, context: str | None, rationale: str) -> str:
        """The large LM's answer given one rationale (through the in-process reader's plain adapter
        when it has one)."""
        adapter = answer_adapter_for(self.large_lm)

        inputs = context_inputs(self.answer.signature, question, context, rationale=rationale)

        def call():
            if adapter is None:
                return self.answer(**inputs)
            with dspy.context(adapter=adapter):
                return self.answer(**inputs)

        # An answer that does not parse is retried and never cached (lmcot.reply_cache).
        with self.answer_limit or contextlib.nullcontext():
            return parsed_reply(call, what="large LM answer", attempts=attempts_for(self.large_lm)).answer

    def _answer_best(self, question: str, context: str | None, rationales: list[str]) -> dspy.Prediction:
        if self.scorer is None:
            from lmcot.config import LMCoTConfig
            from lmcot.metrics.rationale import LEXICAL, scorer_from_config

            # The default config's scorer: every aspect cheap (no judge); LEXICAL, not the default small
            # LM's perplexity: a program given no scorer loads no model.
            self.scorer = scorer_from_config(LMCoTConfig(), reference_lm=LEXICAL)
        scores = self.scorer.score([{"question": question, "context": context or "", "rationale": r}
                                    for r in rationales])
        best = best_rationale(scores, self.select_aspect)
        try:
            answer = self._ask(question, context, rationales[best])
        except Exception as exc:
            raise AnswerCallError(f"answer call failed: {type(exc).__name__}: {exc}", rationales) from exc
        return dspy.Prediction(rationale=rationales[best], answer=answer, rationales=rationales, scores=scores,
                               selected=best)

    @classmethod
    def from_config(cls, small_lm: dspy.LM | None, large_lm: dspy.LM | None, config, *, num_samples: int | None = None,
                    sample_temperature: float | None = None, select: str | None = None,
                    rationale_form: str | None = None, scorer: Any = None, sources: Any = None) -> LMGuidedCoT:
        """The program ``config.eval`` describes (k samples, temperature, how to pick among them) with the
        rationale form of ``config.kd.rationale_form``; the keyword arguments override them (a compiled
        program's own form comes from its ``program.json``). ``select="quality..."`` scores rationales
        with ``scorer`` if given (one shared by several programs), else with ``config.rationale_metrics``
        (its judge and backends; an in-process judge from ``sources``, the models the checks resolved),
        the scorer built on first use."""
        from lmcot.metrics.rationale import LazyScorer
        from lmcot.metrics.task_metric import vote_key_for

        select = config.eval.select if select is None else select
        return cls(small_lm, large_lm,
                   num_samples=config.eval.num_samples if num_samples is None else num_samples,
                   sample_temperature=(config.eval.sample_temperature if sample_temperature is None
                                       else sample_temperature),
                   select=select, scorer=None if select == "vote" else scorer or LazyScorer(config, sources),
                   answer_key=vote_key_for(config.data.answer_type, config.data.labels),
                   rationale_form=config.kd.rationale_form if rationale_form is None else rationale_form)

    @classmethod
    def from_folder(cls, path, config=None) -> LMGuidedCoT:
        """Restore a compiled program folder (``lmcot compile --out``). The folder is untrusted input,
        checked before anything loads (``lmcot.program_trust``); it supplies only the trained small
        LM and the program's own settings, everything else comes from ``config`` (the caller's, or
        lmcot's defaults: ``lmcot.programs.program_io.program_config``); API keys from the environment.
        The weights are hashed and compared with the saved fingerprint first. (``program.load("p.json")``
        stays DSPy's ``Module.load``, which loads predictor state into an existing program.)"""
        from lmcot.lms import build_lms
        from lmcot.programs.program_io import check_weights, large_lm_note, program_config, read_program

        folder = read_program(path)
        cfg = program_config(folder, config)
        check_weights(folder.small_lm_dir, folder.small_lm_sha256)
        if config is None and folder.large_lm.get("api_base"):
            log.warning("%s", large_lm_note(folder, cfg))
        lms = build_lms(cfg, names={"small_lm": folder.small_lm_label})
        small_lm, large_lm = lms["small_lm"], lms["large_lm"]
        program = cls.from_config(small_lm, large_lm, cfg, rationale_form=folder.rationale_form)
        program.load_state(folder.state)
        # DSPy's Predict.load_state sets each predictor's LM from the state, i.e. to None here (the LMs
        # are not saved): attach the LMs rebuilt from the config again.
        program.rationalize.lm, program.answer.lm = small_lm, large_lm
        return program


def best_rationale(scores: list[dict[str, float | None]], by: str = "mean") -> int:
    """Index of the best-scored rationale: by the mean of its aspects or by one aspect; the first wins ties.
    An aspect that is n/a (None: judged against a passage the task does not have) is left out of the mean;
    selecting by it alone keeps the first rationale."""
    def value(s: dict[str, float | None]) -> float:
        if by != "mean":
            return s[by] if s[by] is not None else 0.0
        known = [v for v in s.values() if v is not None]
        return sum(known) / len(known) if known else 0.0

    values = [value(s) for s in scores]
    return values.index(max(values))
