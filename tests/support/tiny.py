"""Tiny random-init models built locally, for tests and the offline quickstart (not part of lmcot).

The HF hub is unreachable in CI and on the offline quickstart, so the "small LM" there is a
randomly initialised model whose tokenizer is trained on the spot with `tokenizers`. Both kinds
save as ordinary HF checkpoints: `AutoModelFor*.from_pretrained(path)` and
`AutoTokenizer.from_pretrained(path)` reload them with no network.

* `build_tiny_causal`: a Llama-architecture decoder (not Qwen2: a Qwen2 config makes
  `AutoTokenizer` return `Qwen2Tokenizer`, which re-splits text differently from the tokenizer we
  trained) with a byte-level BPE tokenizer and a plain chat template.
* `build_tiny_seq2seq`: a T5 built with `tie_word_embeddings=True` (in transformers 5 that keeps
  the tied-embedding output scaling; without it a random T5 starts at loss ~61 and learns far
  slower) and a small byte-level BPE laid out the T5 way (pad=0, eos=1, unk=2, eos appended to
  every encoded text). A ~1000-token BPE keeps sequences ~2x shorter than ByT5's
  bytes, which is what makes CPU distillation fast.

lmcot itself knows nothing of these models: a folder written here is an ordinary checkpoint, passed
by path like any other. Build one from the shell (the quickstart does):

    PYTHONPATH=tests python -m support.tiny --out runs/tiny-llama [--arch llama|t5]

Heavy imports stay inside the functions (see docs/DESIGN.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MARKER = "lmcot_tiny.json"
# Bump when what the builders write changes, so stale caches are rebuilt instead of reused.
_BUILD_VERSION = 2

CHAT_MARKERS = ("<|system|>", "<|user|>", "<|assistant|>")

# A Jinja chat template in the style of small instruct models: one marker line per turn, the
# assistant turn closed by EOS (so SFT teaches the model to stop), and the open assistant marker
# when `add_generation_prompt` is set. No BOS is added anywhere (Qwen-style), so rendering a chat
# and then tokenizing the text gives the same ids as `apply_chat_template(tokenize=True)`.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
    "{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

# Default tokenizer corpus: Wikipedia-like English close to HotpotQA / 2Wiki text and to the
# rationale / answer phrasing the pipeline produces, so common words become single tokens.
DEFAULT_CORPUS: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "Question: Which magazine was started first, Arthur's Magazine or First for Women?",
    "Arthur's Magazine was an American literary periodical published in Philadelphia in the 19th century.",
    "First for Women is a woman's magazine published by Bauer Media Group in the USA.",
    "The magazine was started in 1989. So the answer is Arthur's Magazine.",
    "Question: Were Scott Derrickson and Ed Wood of the same nationality?",
    "Scott Derrickson is an American director, screenwriter and producer.",
    "Edward Davis Wood Jr. was an American filmmaker, actor, writer, producer, and director.",
    "Both of them are American. So the answer is yes.",
    "Who is the director of the film that was released in 2004 and won the award?",
    "She was born on 12 March 1950 in London, England, and died in Paris, France.",
    "He is the father of the actress and the son of a famous painter.",
    "The city is the capital of the state and the largest city in the country.",
    "The band was formed in 1994 and released their first album two years later.",
    "The river flows through the northern part of the region before it reaches the sea.",
    "The university was founded in 1865 and is located in New York.",
    "The football club plays its home games at the stadium near the old town.",
    "The novel was written by an English author and was published in 1920.",
    "Context: Each paragraph has a title followed by its sentences.",
    "Rationale: The first paragraph says that the company was founded earlier than the second one.",
    "Answer the question using the context. Think step by step and give a short rationale.",
    "Which one was born first? When did he die? Where was she born? What is the name of the team?",
    "Is the answer yes or no? Answer with Yes or No. The answer is no.",
    "January February March April May June July August September October November December.",
    "one two three four five six seven eight nine ten hundred thousand million 0 1 2 3 4 5 6 7 8 9",
    "Germany, France, Italy, Spain, Canada, Australia, India, China, Japan, Brazil, Mexico, Russia.",
    "The television series, the video game, the song, the album, the school, the church, the river.",
    "He played for the national team and later became a coach. She won the election as a member.",
)


def _corpus_digest(corpus: Iterable[str]) -> tuple[list[str], str]:
    texts = [str(t) for t in corpus]
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")  # separator, so ["ab"] and ["a", "b"] differ
    return texts, h.hexdigest()


_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def _is_complete(out_dir: Path, params: dict[str, Any]) -> bool:
    marker = out_dir / MARKER
    if not marker.is_file() or not all((out_dir / f).is_file() for f in _REQUIRED_FILES):
        return False
    try:
        return json.loads(marker.read_text()) == params
    except (OSError, json.JSONDecodeError):
        return False


def _publish(tmp: Path, out_dir: Path, params: dict[str, Any]) -> None:
    """Move a finished build into `out_dir` file by file, marker last.

    The marker is what `_is_complete` trusts, so writing it last means an interrupted build is
    never mistaken for a finished one; per-file `os.replace` keeps concurrent builders (pytest
    workers sharing the cache) safe, as both write identical deterministic bytes.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).unlink(missing_ok=True)
    for f in sorted(tmp.iterdir()):
        os.replace(f, out_dir / f.name)
    marker_tmp = out_dir / f".{MARKER}.{os.getpid()}"
    marker_tmp.write_text(json.dumps(params, indent=2, sort_keys=True))
    os.replace(marker_tmp, out_dir / MARKER)


def _build_params(out_dir: str | Path, corpus: list[str] | None, **settings: Any) -> tuple[Path, list[str], dict]:
    """The folder, the tokenizer corpus and the marker's parameters of one build (``settings`` plus the
    build version and the corpus digest): what `_is_complete` compares to reuse a build."""
    texts, digest = _corpus_digest(DEFAULT_CORPUS if corpus is None else corpus)
    params = {**settings, "version": _BUILD_VERSION, "corpus_sha256": digest}
    return Path(out_dir).expanduser(), texts, params


def _save(model: Any, tokenizer: Any, out: Path, params: dict[str, Any]) -> None:
    """Save a finished build into a temporary folder beside `out`, then `_publish` it there."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.build-") as tmp:
        model.save_pretrained(tmp)  # transformers 5 always writes safetensors
        tokenizer.save_pretrained(tmp)
        _publish(Path(tmp), out, params)


def _train_bpe(texts: list[str], vocab_size: int, specials: list[str]) -> Any:
    """Byte-level BPE trained on `texts`; `specials` get ids 0..len-1 in that order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        # Seed with all 256 bytes so any text (accents, CJK, emoji) encodes without <unk>.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def build_tiny_causal(
    out_dir: str | Path,
    corpus: list[str] | None = None,
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    vocab_size: int = 1000,
) -> Path:
    """Build (or reuse) a tiny random-init `LlamaForCausalLM` + BPE tokenizer in `out_dir`.

    Deterministic given `seed` and `corpus`; returns `out_dir` as a Path. Reusing an existing build
    requires the `lmcot_tiny.json` marker to match every parameter (and the corpus digest).
    """
    out, texts, params = _build_params(out_dir, corpus, kind="causal", arch="llama", seed=seed, hidden=hidden,
                                       layers=layers, heads=heads, vocab_size=vocab_size)
    if _is_complete(out, params):
        return out

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>", *CHAT_MARKERS]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_train_bpe(texts, vocab_size, specials),
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=list(CHAT_MARKERS),
        chat_template=CHAT_TEMPLATE,
        # Batched generation with a decoder-only model needs left padding.
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        # RoPE has no parameters per position: allow long HotpotQA contexts (a tiny vocab makes
        # them several thousand tokens) at no cost.
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id

    _save(model, tokenizer, out, params)
    return out


def build_tiny_seq2seq(
    out_dir: str | Path,
    seed: int = 0,
    d_model: int = 64,
    layers: int = 2,
    heads: int = 4,
    corpus: list[str] | None = None,
    vocab_size: int = 1000,
) -> Path:
    """Build (or reuse) a tiny random-init `T5ForConditionalGeneration` with tied embeddings.

    The tokenizer is a byte-level BPE with T5's conventions: `<pad>`=0 (also the decoder start
    token), `</s>`=1, `<unk>`=2, and `</s>` appended to every encoded text, as `T5TokenizerFast`
    does, so `Seq2SeqTrainer` labels end with EOS.
    """
    out, texts, params = _build_params(out_dir, corpus, kind="seq2seq", arch="t5", seed=seed, d_model=d_model,
                                       layers=layers, heads=heads, vocab_size=vocab_size)
    if _is_complete(out, params):
        return out

    import torch
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    raw = _train_bpe(texts, vocab_size, ["<pad>", "</s>", "<unk>"])
    eos_id = raw.token_to_id("</s>")
    raw.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    if (tokenizer.pad_token_id, tokenizer.eos_token_id) != (0, 1):  # T5 code assumes these
        raise RuntimeError("tiny T5 tokenizer must have pad=0, eos=1")
    # transformers 5's T5Config always ties the embeddings; the `tie_word_embeddings` kwarg now only
    # sets `scale_decoder_outputs` (x d_model**-0.5 before the LM head). Without that scaling a random
    # T5 starts at loss ~61 instead of ~ln(vocab). Both kwargs go through **kwargs, hence the dict.
    passthrough: dict[str, Any] = {"tie_word_embeddings": True, "decoder_start_token_id": 0}
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=d_model // heads,
        d_ff=d_model * 2,
        num_layers=layers,
        num_decoder_layers=layers,
        num_heads=heads,
        feed_forward_proj="relu",
        dropout_rate=0.0,  # tiny models on tiny data learn faster without dropout (Llama has none)
        pad_token_id=0,
        eos_token_id=1,
        **passthrough,
    )
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(config)
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = 1
    model.generation_config.decoder_start_token_id = 0

    _save(model, tokenizer, out, params)
    return out


_BUILDERS = {"llama": build_tiny_causal, "t5": build_tiny_seq2seq}


def main(argv: list[str] | None = None) -> Path:
    """``python -m support.tiny --out DIR [--arch llama|t5] [--seed N]``: build (or reuse) one model."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m support.tiny", description=main.__doc__)
    parser.add_argument("--out", required=True, help="folder to write the checkpoint to")
    parser.add_argument("--arch", choices=sorted(_BUILDERS), default="llama")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = _BUILDERS[args.arch](args.out, seed=args.seed)
    print(f"tiny random-init {args.arch} model (a test stand-in, not a pretrained LM) at {out}")
    return out


__all__ = ["CHAT_TEMPLATE", "DEFAULT_CORPUS", "MARKER", "build_tiny_causal", "build_tiny_seq2seq", "main"]


if __name__ == "__main__":
    main()


def scramble_and_save(src: Path, dst: Path, seed: int, scale: float = 0.2) -> Path:
    """Load ``src``, add seeded noise to every non-norm weight, save to ``dst`` ("a training step")."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    is_seq2seq = AutoConfig.from_pretrained(src).is_encoder_decoder
    model = (AutoModelForSeq2SeqLM if is_seq2seq else AutoModelForCausalLM).from_pretrained(src)
    tok = AutoTokenizer.from_pretrained(src)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if "norm" not in name:
                tensor.add_(torch.randn(tensor.shape, generator=gen) * scale)
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dst)
    tok.save_pretrained(dst)
    return dst
