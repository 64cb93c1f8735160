"""Tiny random-init models: build, reload offline, generate, tokenizer, idempotency, determinism."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from support.tiny import MARKER, build_tiny_causal, build_tiny_seq2seq, main

PROMPTS = ["Who?", "Scott Derrickson is an American director.", "Which magazine was started first?"]
TEXT = "Ed Wood was an American filmmaker, born 10 October 1924. Ünïcödé 東京 🙂"


@pytest.fixture(scope="module")
def causal_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_causal(tmp_path_factory.mktemp("tiny") / "llama")


@pytest.fixture(scope="module")
def seq2seq_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_seq2seq(tmp_path_factory.mktemp("tiny") / "t5")


def test_causal_reloads_and_batch_generates_with_left_padding(causal_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(causal_dir)
    model = AutoModelForCausalLM.from_pretrained(causal_dir)
    assert model.config.model_type == "llama"
    assert tok.padding_side == "left"
    assert None not in (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id)
    batch = tok(PROMPTS, return_tensors="pt", padding=True)
    assert (batch["attention_mask"][:, -1] == 1).all(), "left padding keeps the last position real"
    out = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert out.shape == (3, batch["input_ids"].shape[1] + 4)
    # Left padding must not change what a prompt generates: compare with the unpadded run.
    alone = tok([PROMPTS[0]], return_tensors="pt")
    ref = model.generate(**alone, max_new_tokens=4, do_sample=False)
    assert out[0, -4:].tolist() == ref[0, -4:].tolist()


def test_causal_tokenizer_round_trips_and_chat_template_renders(causal_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(causal_dir)
    ids = tok(TEXT)["input_ids"]
    assert tok.decode(ids) == TEXT  # byte-level: no <unk>, exact round trip
    assert tok.unk_token_id not in ids
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Who?"},
        {"role": "assistant", "content": "Me."},
        {"role": "user", "content": "Why?"},
    ]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == ("<|system|>\nBe brief.\n<|user|>\nWho?\n<|assistant|>\nMe.</s>\n<|user|>\nWhy?\n<|assistant|>\n")
    no_prompt = tok.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=False)
    assert not no_prompt.endswith("<|assistant|>\n")
    # Rendering then tokenizing equals tokenizing the chat directly (no hidden BOS either way).
    direct = tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert tok(text)["input_ids"] == list(direct)
    assert tok.convert_tokens_to_ids("<|assistant|>") != tok.unk_token_id  # markers are single tokens


def test_seq2seq_reloads_generates_and_follows_t5_conventions(seq2seq_dir: Path) -> None:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(seq2seq_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(seq2seq_dir)
    assert model.config.model_type == "t5" and model.config.tie_word_embeddings
    assert (tok.pad_token_id, tok.eos_token_id) == (0, 1)
    assert model.config.decoder_start_token_id == 0
    ids = tok(TEXT)["input_ids"]
    assert ids[-1] == tok.eos_token_id  # EOS appended, as T5 tokenizers do
    assert tok.decode(ids, skip_special_tokens=True) == TEXT
    batch = tok(PROMPTS, return_tensors="pt", padding=True)
    out = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert out.shape[0] == 3 and out.shape[1] <= 5 and (out[:, 0] == 0).all()
    labels = tok(text_target=["So the answer is yes."], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        loss = model(**tok(["Who?"], return_tensors="pt"), labels=labels).loss
    # Tied embeddings start near ln(vocab) (~7); untied random T5 starts at ~61.
    assert float(loss) < 12


def test_seq2seq_tokens_are_shorter_than_bytes(seq2seq_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(seq2seq_dir)
    text = "The magazine was started in 1989 by an American director in New York. " * 4
    assert len(tok(text)["input_ids"]) < len(text.encode("utf-8")) / 2


def test_idempotent_reuses_existing_build(causal_dir: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in causal_dir.iterdir()}
    assert build_tiny_causal(causal_dir) == causal_dir
    assert {p.name: p.stat().st_mtime_ns for p in causal_dir.iterdir()} == before


def test_changed_params_or_broken_build_are_rebuilt(tmp_path: Path) -> None:
    out = build_tiny_causal(tmp_path / "m", hidden=32, layers=1)
    (out / "model.safetensors").unlink()  # an interrupted build must not be mistaken for complete
    build_tiny_causal(out, hidden=32, layers=1)
    assert (out / "model.safetensors").is_file()
    build_tiny_causal(out, hidden=32, layers=1, seed=1)
    assert '"seed": 1' in (out / MARKER).read_text()


def test_same_seed_same_weights_and_tokenizer(tmp_path: Path) -> None:
    a = build_tiny_seq2seq(tmp_path / "a", seed=3)
    b = build_tiny_seq2seq(tmp_path / "b", seed=3)
    c = build_tiny_seq2seq(tmp_path / "c", seed=4)
    for name in ("model.safetensors", "tokenizer.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()
    x = build_tiny_causal(tmp_path / "x", seed=3)
    y = build_tiny_causal(tmp_path / "y", seed=3)
    assert (x / "model.safetensors").read_bytes() == (y / "model.safetensors").read_bytes()


def test_custom_corpus_changes_the_tokenizer(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    corpus = ["zyzzyva quokka " * 20, "quokka zyzzyva " * 20]
    out = build_tiny_causal(tmp_path / "c", corpus=corpus, vocab_size=300)
    tok = AutoTokenizer.from_pretrained(out)
    assert len(tok(" quokka")["input_ids"]) == 1


def test_command_line_builds_a_model_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = main(["--out", str(tmp_path / "t5"), "--arch", "t5"])
    assert out == tmp_path / "t5" and (out / MARKER).is_file() and (out / "model.safetensors").is_file()
    assert "not a pretrained LM" in capsys.readouterr().out
