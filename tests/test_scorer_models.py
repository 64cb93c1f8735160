"""The scorer's models load through lmcot.model_loading, the one home: its error mapping, the same weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmcot.errors import ModelLoadError

MODELS = Path(__file__).resolve().parents[1] / "metrics" / "rationale" / "models.py"


def test_models_module_loads_nothing_itself():
    text = MODELS.read_text(encoding="utf-8")
    assert "from_pretrained" not in text and "AutoModel" not in text and "AutoTokenizer" not in text


def test_missing_embedding_model_folder_is_one_line(tmp_path):
    from lmcot.metrics.rationale.models import SentenceEmbedder

    with pytest.raises(ModelLoadError, match="model folder not found"):
        SentenceEmbedder(str(tmp_path / "no-such-embedder"))


def test_embedder_through_model_loading_gives_the_same_vectors(tmp_path):
    import torch
    from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, BertTokenizer

    from lmcot.metrics.rationale.models import SentenceEmbedder

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "ed", "wood", "is", "a", "film", "by", "tim", "burton"]
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    texts = ["ed wood is a film", "a film by tim burton"]
    emb = SentenceEmbedder(str(tmp_path), device="cpu")
    emb.warm(texts)
    # What SentenceEmbedder computed when it called transformers itself.
    model, tokenizer = AutoModel.from_pretrained(tmp_path, use_safetensors=True).eval(), AutoTokenizer.from_pretrained(tmp_path)
    enc = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state.float()
    m = enc["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1.0), dim=-1)
    for text, vector in zip(texts, expected):
        assert torch.equal(emb._cache.get(text), vector)
