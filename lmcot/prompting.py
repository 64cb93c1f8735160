"""Chat messages -> the exact text a transformers model is fed (shared by inference and training)."""

from __future__ import annotations

from typing import Any


def messages_to_text(messages: list[dict[str, Any]]) -> str:
    """Flatten chat messages for models without a chat template (FLAN-T5 and other seq2seq models):
    the turns' contents joined by blank lines. Prior assistant turns (few-shot demos) are kept."""
    return "\n\n".join(str(m.get("content") or "").strip() for m in messages if m.get("content"))


def render_prompt(tokenizer: Any, messages: list[dict[str, Any]], is_encoder_decoder: bool) -> str:
    """The model input for ``messages``: the tokenizer's chat template (with the generation prompt)
    for causal chat models, a flat text prompt otherwise."""
    if not is_encoder_decoder and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return messages_to_text(messages)


def adds_special_tokens(tokenizer: Any, is_encoder_decoder: bool) -> bool:
    """Whether tokenizing a rendered prompt adds the tokenizer's special tokens. A rendered chat
    template already holds every special token it needs (adding a BOS again would shift the prompt
    away from what the model saw in training); a flat prompt gets the defaults (T5's EOS, a BOS).
    Inference, KD, RL and the judge all tokenize prompts with this one rule."""
    return is_encoder_decoder or not getattr(tokenizer, "chat_template", None)


def tokenize_prompts(tokenizer: Any, prompts: list[str], *, is_encoder_decoder: bool, max_length: int | None,
                     padding: bool = False, return_tensors: str | None = None):
    """Rendered prompts -> token ids, the one way inference, KD, RL and the judge all tokenize them:
    the special-token rule above; an over-long prompt cut from the *left* at ``max_length`` (old
    context goes, never the question next to where the model writes); with ``padding``, causal
    prompts padded on the left (generation continues from the last token) and seq2seq prompts on
    the right. A fast tokenizer is not thread-safe: callers sharing one hold their own lock."""
    tokenizer.truncation_side = "left"
    if padding:
        tokenizer.padding_side = "right" if is_encoder_decoder else "left"
    return tokenizer(list(prompts), add_special_tokens=adds_special_tokens(tokenizer, is_encoder_decoder),
                     truncation=max_length is not None, max_length=max_length, padding=padding,
                     return_tensors=return_tensors)
