"""Repetition controls (``small_lm.repetition_penalty``, ``small_lm.no_repeat_ngram_size``): one setting
reaches in-process generation, the names in DSPy's cache, TRL's GRPO/RLOO config and the seq2seq RL
loop; the defaults change nothing; a bad value is a one-line config error. Tiny offline models."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.rl_helpers import rl_config, trainset

from lmcot.config import ConfigError, SmallLMConfig, config_from_dict, load_config


@pytest.mark.parametrize(("setting", "words"), [
    ("small_lm.repetition_penalty=0.9", "small_lm.repetition_penalty: Input should be greater than or equal to 1"),
    ("small_lm.repetition_penalty=5", "small_lm.repetition_penalty: Input should be less than or equal to 2"),
    ("small_lm.repetition_penalty=lots", "small_lm.repetition_penalty: Input should be a valid number"),
    ("small_lm.no_repeat_ngram_size=-1", "small_lm.no_repeat_ngram_size: Input should be greater than or equal to 0"),
    ("large_lm.repetition_penalty=1.2", "large_lm: Value error, repetition_penalty / no_repeat_ngram_size apply to "
                                        "in-process models"),
])
def test_a_bad_repetition_setting_is_a_one_line_config_error(setting, words):
    with pytest.raises(ConfigError) as err:
        load_config(None, [setting])
    assert str(err.value).startswith(f"config: {words}") and "\n" not in str(err.value)


def test_defaults_are_off():
    cfg = config_from_dict({})
    assert (cfg.small_lm.repetition_penalty, cfg.small_lm.no_repeat_ngram_size) == (1.0, 0)
    assert load_config(None, ["large_lm.backend=transformers", "large_lm.model=x",
                              "large_lm.repetition_penalty=1.1"]).large_lm.repetition_penalty == 1.1


def _spy_generate(engine) -> list[dict]:
    """Record every ``model.generate`` call's keyword arguments, and its new token ids under "_new"."""
    seen: list[dict] = []
    orig = engine.model.generate

    def spy(*args, **kwargs):
        out = orig(*args, **kwargs)
        seen.append({**kwargs, "_new": out[:, kwargs["input_ids"].shape[1]:].tolist()})
        return out

    engine.model.generate = spy
    return seen


def test_the_setting_reaches_generate_and_names_the_lm(tiny_causal_path):
    from lmcot.lms import build_lm, small_lm_config

    base = dict(model=str(tiny_causal_path), device="cpu", dtype="float32", max_tokens=16, cache=False)
    plain = build_lm(SmallLMConfig(**base))
    seen = _spy_generate(plain.engine)
    plain("hello")
    assert seen[-1]["repetition_penalty"] == 1.0 and seen[-1]["no_repeat_ngram_size"] == 0

    cfg = SmallLMConfig(**base, repetition_penalty=1.3, no_repeat_ngram_size=2)
    damped = build_lm(cfg)
    seen = _spy_generate(damped.engine)
    damped("hello")
    assert seen[-1]["repetition_penalty"] == 1.3 and seen[-1]["no_repeat_ngram_size"] == 2
    ids = seen[-1]["_new"][0]
    bigrams = list(zip(ids, ids[1:]))
    assert len(ids) == 16 and len(bigrams) == len(set(bigrams))  # it really bites: no bigram twice
    # DSPy's cache key holds the LM's name: another setting must never get the plain LM's cached outputs.
    assert damped.model != plain.model and damped.model.endswith("+rp1.3+nrng2")
    assert "+" not in plain.model.rsplit("@", 1)[1]  # defaults: the name (and old caches) unchanged
    # The compiler rebuilds the student from the LM itself; the settings come back with it.
    assert small_lm_config(damped) == cfg
    state = damped.engine.dump_state()
    assert (state["repetition_penalty"], state["no_repeat_ngram_size"]) == (1.3, 2)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_the_setting_reaches_trls_rollouts(algorithm, tmp_path):
    from lmcot.optimizers.rl_grpo import rl_trainer_config

    cfg = config_from_dict({})
    plain = rl_trainer_config(algorithm, cfg.rl, cfg.small_lm, Path(tmp_path), "cpu")
    assert plain.repetition_penalty == 1.0 and plain.generation_kwargs is None  # TRL's own defaults
    small = cfg.small_lm.model_copy(update={"repetition_penalty": 1.2, "no_repeat_ngram_size": 3})
    damped = rl_trainer_config(algorithm, cfg.rl, small, Path(tmp_path), "cpu")
    assert damped.repetition_penalty == 1.2 and damped.generation_kwargs == {"no_repeat_ngram_size": 3}


@pytest.mark.slow
def test_the_setting_reaches_the_seq2seq_rl_rollouts(tiny_seq2seq_path, tmp_path, monkeypatch):
    from lmcot.optimizers import rl_seq2seq
    from lmcot.optimizers.rewards import RewardSet

    seen: list[dict] = []
    load = rl_seq2seq._load_policy

    def load_and_spy(*args, **kwargs):
        model, tokenizer, is_seq2seq = load(*args, **kwargs)
        orig = model.generate

        def spy(*a, **kw):
            seen.append(kw)
            return orig(*a, **kw)

        model.generate = spy
        return model, tokenizer, is_seq2seq

    monkeypatch.setattr(rl_seq2seq, "_load_policy", load_and_spy)
    rl = rl_config(max_steps=1, batch_size=4, num_generations=2, max_new_tokens=6)
    small = SmallLMConfig(device="cpu", repetition_penalty=1.25, no_repeat_ngram_size=2)
    rewards = RewardSet(rl, answer_lm=None, extra={"len": lambda rows: [float(len(r["rationale"])) for r in rows]})
    rl_seq2seq.train_seq2seq(str(tiny_seq2seq_path), trainset(4), rewards, rl, small, tmp_path / "rl")
    assert seen and seen[0]["repetition_penalty"] == 1.25 and seen[0]["no_repeat_ngram_size"] == 2


def test_rl_resume_key_changes_with_the_setting_only_when_set():
    from lmcot.optimizers.stage_markers import rollout_sampling as _rollout_sampling

    assert _rollout_sampling(SmallLMConfig()) == {}
    assert _rollout_sampling(SmallLMConfig(repetition_penalty=1.1)) == {"repetition_penalty": 1.1}
