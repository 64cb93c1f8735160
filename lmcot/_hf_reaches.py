"""Every place lmcot relies on transformers or TRL behaviour that has no public seam, in one module
(as ``lmcot._dspy_reaches`` holds DSPy's and litellm's). Each is pinned by ``tests/test_hf_reaches.py``,
which fails naming the reach when a release changes what it relies on:

* ``inference_prompt_trainer``: ``GRPOTrainer`` / ``RLOOTrainer`` tokenize string prompts in
  ``_tokenize_prompts``; lmcot overrides it so RL prompts are tokenized exactly as the inference engine
  tokenizes them: left truncation at ``small_lm.max_input_tokens`` (old context goes, never the question)
  and the engine's special-token rule. TRL's public alternative, conversational datasets, applies the
  chat template itself but neither truncates from the left at that budget nor follows the engine's rule
  for models without a chat template, so prompts would drift from inference.
* ``documented_choices``: a TRL setting typed ``str`` (``loss_type``) lists its values only in its help
  text; read from there, an unknown value fails before the first paid call instead of mid-training.
* ``log_tensorboard_to``: transformers 5 has no ``logging_dir`` setting; ``TensorBoardCallback`` writes to
  its ``logging_dir`` attribute, read when training starts (default: inside the checkpoints).
* ``clear_gguf_marks``: a model transformers loaded from a GGUF file holds plain dequantized tensors but
  stays marked quantized (``hf_quantizer``, ``is_quantized``, ``config.quantization_config``): saved, it
  would carry a GGUF quantization config no loader applies, and trainers refuse a quantized model.
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


def documented_choices(field) -> tuple[str, ...]:
    """The values a TRL / transformers ``str`` setting lists as "Supported values are 'a', 'b' ..." in
    its help (a dataclass field); ``()`` when its help lists none."""
    import re

    match = re.search(r"Supported values are (.+?)\.(?:\s|$)", str(field.metadata.get("help", "")))
    found = re.findall(r"'([A-Za-z0-9_\-]+)'", match.group(1)) if match else []
    return tuple(found) if len(found) >= 2 else ()


def log_tensorboard_to(trainer, folder: str) -> None:
    """Point a trainer's TensorBoard callback (``report_to: tensorboard``), if it has one, at ``folder``."""
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            callback.logging_dir = folder


def clear_gguf_marks(model) -> None:
    """Unmark a model loaded from a GGUF file as quantized: its weights are already plain tensors."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
