"""The small LM as the perplexity reference LM keeps its revision and trust_remote_code."""

from __future__ import annotations

import pytest

from lmcot.config import config_from_dict
from lmcot.metrics.rationale import choose_reference_lm, reference_lm_for, reference_name, scorer_from_config


def _config(path, **small):
    return config_from_dict({"small_lm": {"model": str(path), **small}})


def test_reference_lm_is_the_small_lm_resolved_with_its_revision_and_trust(tiny_causal_path):
    reference, why = choose_reference_lm(_config(tiny_causal_path, revision="v1", trust_remote_code=True))
    assert why == "the small LM (small_lm.model), an in-process causal LM"
    assert reference_name(reference) == str(tiny_causal_path)  # what messages name, as before
    assert (reference.setting, reference.revision, reference.trust_remote_code) == (str(tiny_causal_path), "v1", True)
    # A named rationale_metrics.reference_lm stays the setting it is; the proxy is None.
    named = config_from_dict({"rationale_metrics": {"reference_lm": "x/y"}})
    assert reference_lm_for(named) == reference_name("x/y") == "x/y"
    assert reference_name(None) is None


def test_perplexity_scorer_loads_the_small_lm_at_its_revision_with_its_trust(tiny_causal_path, monkeypatch):
    import lmcot.model_loading

    loaded = []
    real = lmcot.model_loading.load_model_and_tokenizer

    def recording(model, **kwargs):
        source = lmcot.model_loading.resolve_source(model, trust_remote_code=kwargs.get("trust_remote_code", False),
                                                    revision=kwargs.get("revision"))
        loaded.append((source.setting, source.revision, source.trust_remote_code))
        return real(model, **kwargs)

    monkeypatch.setattr(lmcot.model_loading, "load_model_and_tokenizer", recording)
    scorer = scorer_from_config(_config(tiny_causal_path, revision="v1", trust_remote_code=True))
    assert scorer.backend_of("fluency") == "reference LM"
    assert scorer.lm.name == str(tiny_causal_path)
    assert loaded == [(str(tiny_causal_path), "v1", True)]
    row = {"question": "Who?", "context": "A: B is C.", "rationale": "B is C. So the answer is C."}
    assert 0.0 < scorer.score([row], ["fluency"])[0]["fluency"] <= 1.0


@pytest.mark.parametrize("small", [{"backend": "litellm", "model": "openai/gpt-4o-mini"}])
def test_no_in_process_small_lm_means_the_lexical_proxy(small):
    assert reference_lm_for(config_from_dict({"small_lm": small}), quiet=True) is None
