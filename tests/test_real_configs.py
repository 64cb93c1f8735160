"""The shipped configs that use the real SmolLM2 student resolve to the installed GGUF file."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["quickstart.yaml", "real_reader.yaml", "experiment-quickstart.yaml"])
def test_real_model_configs_validate_and_resolve(name):
    from lmcot.checkpoint import resolve_package_file
    from lmcot.config import load_config

    cfg = load_config(ROOT / "configs" / name)
    assert Path(resolve_package_file(cfg.small_lm.model)).is_file()
    assert (ROOT / cfg.data.train).is_file() and (ROOT / cfg.data.dev).is_file()
    if name == "real_reader.yaml":
        assert cfg.large_lm.backend == "transformers"
        assert Path(resolve_package_file(cfg.large_lm.model)).is_file()


def test_quickstart_data_keeps_gold_paragraphs():
    import json

    for split in ("train", "dev"):
        for rec in json.loads((ROOT / "configs" / "quickstart" / f"hotpotqa_{split}.json").read_text()):
            titles = {t for t, _ in rec["context"]}
            assert {t for t, _ in rec["supporting_facts"]} <= titles and len(titles) == 4


def test_real_scale_configs_validate():
    """The GPU + API-key configs load as they are shipped (hub ids; nothing is loaded here)."""
    from lmcot.config import load_config

    for name in ("hotpotqa.yaml", "experiment-hotpotqa.yaml"):
        cfg = load_config(ROOT / "configs" / name)
        assert cfg.large_lm.api_key_env and cfg.small_lm.backend == "transformers"
