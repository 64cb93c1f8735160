"""LM-guided chain-of-thought (Lee et al., 2024): a small LM writes the rationale, a large frozen LM
answers from question + context + rationale.

    small = lmcot.build_lm(SmallLMConfig(model="Qwen/Qwen2.5-0.5B-Instruct"))
    large = lmcot.build_lm(LargeLMConfig(model="openai/gpt-4o-mini", api_key_env="OPENAI_API_KEY"))
    program = LMGuidedCoT(small, large, num_samples=5)     # 5 rationales, majority vote
    program(question="...", context="...").answer
"""

from __future__ import annotations

import dspy

from lmcot.programs.adapter import RationaleAdapter
from lmcot.programs.answer_adapter import answer_adapter_for
from lmcot.programs.parallel import map_concurrently
from lmcot.programs.signatures import Answer, Rationalize
from lmcot.programs.voting import majority_vote
from lmcot.reply_cache import parsed_reply


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
    """

    def __init__(self, small_lm: dspy.LM | None = None, large_lm: dspy.LM | None = None, num_samples: int = 1,
                 sample_temperature: float = 0.7):
        super().__init__()
        if num_samples < 1:
            raise ValueError("num_samples must be >= 1")
        self.rationalize = dspy.Predict(Rationalize)
        self.answer = dspy.Predict(Answer)
        self.rationalize.lm = small_lm
        self.answer.lm = large_lm
        # The large LM is frozen: lmcot's compiler trains only ``rationalize``'s LM and builds its
        # training data from teacher traces, never from ``answer``'s calls.
        self.num_samples = num_samples
        self.sample_temperature = sample_temperature
        self.rationale_adapter = RationaleAdapter()

    @property
    def small_lm(self) -> dspy.LM | None:
        return self.rationalize.lm

    @property
    def large_lm(self) -> dspy.LM | None:
        return self.answer.lm

    def write_rationales(self, question: str, context: str, k: int | None = None) -> list[str]:
        """k rationales from the small LM (greedy when k == 1)."""
        k = k or self.num_samples

        seed = (self.small_lm.kwargs.get("seed") if self.small_lm is not None else None)

        def one(i: int) -> str:
            config = {} if k == 1 else {"temperature": self.sample_temperature, "rollout_id": i}
            if k > 1 and seed is not None:
                # A distinct seed per sample keeps seeded runs reproducible *and* the k samples distinct,
                # however the engine groups requests into batches.
                config["seed"] = seed + i
            with dspy.context(adapter=self.rationale_adapter):
                return self.rationalize(question=question, context=context, config=config).rationale

        return map_concurrently(one, range(k), max_workers=k)

    def forward(self, question: str, context: str) -> dspy.Prediction:
        rationales = self.write_rationales(question, context)
        adapter = answer_adapter_for(self.large_lm)

        def answer(rationale: str) -> str:
            def call():
                if adapter is None:
                    return self.answer(question=question, context=context, rationale=rationale)
                with dspy.context(adapter=adapter):
                    return self.answer(question=question, context=context, rationale=rationale)

            # An answer that does not parse is retried and never cached (lmcot.reply_cache).
            return parsed_reply(call, what="large LM answer").answer

        try:
            answers = map_concurrently(answer, rationales, max_workers=len(rationales))
        except Exception as exc:
            # The small LM's work is not lost with the large LM's failure: predictions.jsonl keeps it.
            raise AnswerCallError(f"answer call failed: {type(exc).__name__}: {exc}", rationales) from exc
        win = majority_vote(answers)
        return dspy.Prediction(rationale=rationales[win], answer=answers[win], rationales=rationales, answers=answers)

    @classmethod
    def from_folder(cls, path, config=None) -> LMGuidedCoT:
        """Restore a compiled program folder (``lmcot compile --out``): LMs rebuilt from its saved
        config (or ``config``), API keys from the environment. (``program.load("p.json")`` stays
        DSPy's ``Module.load``, which loads predictor state into an existing program.)"""
        from lmcot.program_io import load_program

        return load_program(path, config)
