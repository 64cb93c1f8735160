"""CoT prompting with self-consistency (Wang et al., 2023): the large LM reasons k times at a
sampling temperature, and the majority answer wins. The baseline that LM-guided CoT with k sampled
rationales is compared against in ``lmcot experiment``."""

from __future__ import annotations

from typing import Callable

import dspy

from lmcot.programs.baselines import CoTPrompting
from lmcot.parallel import map_concurrently
from lmcot.programs.signatures import context_inputs
from lmcot.programs.voting import majority_vote
from lmcot.reply_cache import parsed_reply


class CoTSelfConsistency(dspy.Module):
    def __init__(self, large_lm: dspy.LM | None = None, num_samples: int = 5, sample_temperature: float = 0.7,
                 answer_key: Callable[[str], str] | None = None):
        super().__init__()
        if num_samples < 2:
            raise ValueError("self-consistency needs num_samples >= 2")
        self.cot = CoTPrompting(large_lm)
        self.num_samples, self.sample_temperature = num_samples, sample_temperature
        self.answer_key = answer_key  # how answers are compared in the vote (the task's; default: spans)

    def forward(self, question: str, context: str | None = None) -> dspy.Prediction:
        def one(i: int) -> dspy.Prediction:
            # rollout_id makes each sample a distinct call (and cache entry) at the same temperature.
            # A reply that does not parse is retried and never cached (lmcot.reply_cache).
            config = {"temperature": self.sample_temperature, "rollout_id": i}
            return parsed_reply(lambda: self.cot.answer(**context_inputs(self.cot.answer.predict.signature, question,
                                                                         context, config=config)),
                                what="large LM answer")

        preds = map_concurrently(one, range(self.num_samples), max_workers=self.num_samples)
        answers = [p.answer for p in preds]
        win = majority_vote(answers, key=self.answer_key)
        return dspy.Prediction(rationale=preds[win].reasoning, answer=answers[win],
                               rationales=[p.reasoning for p in preds], answers=answers)
