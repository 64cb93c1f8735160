"""Where lmcot works around TRL internals that have no public seam (pinned by tests/test_trl_reaches.py).

``GRPOTrainer`` / ``RLOOTrainer`` tokenize string prompts in ``_tokenize_prompts``. lmcot overrides it
so RL prompts are tokenized exactly as the inference engine tokenizes them: left truncation at
``small_lm.max_input_tokens`` (old context goes, never the question) and the engine's
special-token rule. TRL's public alternative, conversational datasets, applies the chat template
itself but neither truncates from the left at that budget nor follows the engine's rule for models
without a chat template, so prompts would drift from inference.
"""

from __future__ import annotations

from lmcot.prompting import tokenize_prompts


def inference_prompt_trainer(algorithm: str, max_input_tokens: int):
    """The TRL trainer class for ``algorithm`` (``grpo`` or ``rloo``) with inference tokenization."""
    if algorithm == "grpo":
        from trl import GRPOTrainer as base
    elif algorithm == "rloo":
        from trl import RLOOTrainer as base
    else:
        raise ValueError(f"train_grpo: algorithm must be 'grpo' or 'rloo', got {algorithm!r}")

    class InferencePromptTrainer(base):  # type: ignore[misc, valid-type]
        """TRL trainer that tokenizes string prompts exactly as the inference engine does."""

        def _tokenize_prompts(self, prompts: list):
            if not prompts or not isinstance(prompts[0], str):
                return super()._tokenize_prompts(prompts)
            ids = tokenize_prompts(self.processing_class, prompts, is_encoder_decoder=False,
                                   max_length=max_input_tokens)["input_ids"]
            return ids, None, {}

    return InferencePromptTrainer
