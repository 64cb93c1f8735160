"""Memory between compile stages: a model is resident only while a stage uses it.

Guards the laziness with tiny models (no timing, no RSS threshold): the in-process engines' weights
are dropped before a training stage (which loads its own copy), a dropped engine reloads the same
weights on its next call, and a KD-only compile never builds the rationale scorer's models.
"""

from __future__ import annotations

import gc
import weakref

import pytest
from support.paths import HOTPOT


def test_release_drops_the_weights_and_the_next_call_reloads_the_same_ones(tiny_causal_path):
    from lmcot.hf_engine import TransformersEngine
    from lmcot.model_loading import resolve_source

    engine = TransformersEngine(resolve_source(str(tiny_causal_path)), device="cpu", batch_size=2)
    before = engine.generate(["hello there", "a question"], max_new_tokens=6)
    model = weakref.ref(engine.model)
    assert engine.release() is True
    gc.collect()
    assert not engine.loaded and model() is None, "the released weights must not stay referenced"
    # Counting tokens and the architecture need no weights.
    assert engine.tokenizer("hello", add_special_tokens=False).input_ids
    assert engine.is_encoder_decoder is False
    assert not engine.loaded
    assert engine.release() is False  # nothing to drop
    assert engine.generate(["hello there", "a question"], max_new_tokens=6) == before
    assert engine.loaded


def _config(server, tmp_path, student, stages: str, **extra: str):
    from lmcot.config import load_config

    sets = {"small_lm.model": str(student), "small_lm.max_tokens": "16", "small_lm.device": "cpu",
            "large_lm.model": "openai/oracle", "large_lm.api_base": server.url, "large_lm.num_retries": "1",
            "data.train": str(HOTPOT), "data.train_limit": "6", "data.dev": str(HOTPOT), "data.dev_limit": "3",
            "data.max_context_tokens": "120", "kd.num_samples": "1", "kd.max_steps": "2", "kd.batch_size": "2",
            "kd.report_to": "[none]", "rl.max_steps": "1", "rl.num_generations": "2", "rl.batch_size": "2",
            "rl.max_new_tokens": "8", "rl.report_to": "[none]", "cache_dir": str(tmp_path / "cache"),
            "stages": f"[{stages}]", **extra}
    return load_config(None, [f"{k}={v}" for k, v in sets.items()])


@pytest.fixture()
def watched(monkeypatch):
    """Every TransformersEngine and PerplexityScorer built during the test (weakly held), and the
    state of both at the moment each training stage starts."""
    from lmcot.hf_engine import TransformersEngine
    from lmcot.metrics.rationale import models

    engines: weakref.WeakSet = weakref.WeakSet()
    scorers: weakref.WeakSet = weakref.WeakSet()
    seen: dict[str, dict] = {}

    def record(cls, into):
        init = cls.__init__

        def wrapped(self, *args, **kwargs):
            into.add(self)
            init(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", wrapped)

    record(TransformersEngine, engines)
    record(models.PerplexityScorer, scorers)

    def at_start(stage, module, name):
        real = getattr(module, name)

        def wrapped(*args, **kwargs):
            gc.collect()
            seen[stage] = {"engines": len(engines), "loaded": sum(e.loaded for e in engines),
                           "perplexity_scorers": len(scorers)}
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapped)

    import importlib

    at_start("kd", importlib.import_module("lmcot.optimizers.distill"), "distill")
    at_start("rl", importlib.import_module("lmcot.optimizers.rl"), "run_rl")
    return {"seen": seen, "scorers": scorers}


def _compile(cfg, out):
    from lmcot.lms import build_lm, cache_in
    from lmcot.optimizers import LMCoTCompiler
    from lmcot.programs import LMGuidedCoT
    from lmcot.splits import load_split

    with cache_in(cfg.cache_dir):  # the splits' memos where the compile keeps them
        program = LMGuidedCoT(build_lm(cfg.small_lm), build_lm(cfg.large_lm))
        return LMCoTCompiler(cfg, out, progress=False).compile_with_report(
            program, load_split(cfg, "train"), load_split(cfg, "dev"))[1]


@pytest.mark.slow
def test_kd_compile_builds_no_scorer_model_and_trains_with_no_engine_resident(
        oracle_server, tiny_causal_path, tmp_path, watched, monkeypatch):
    from lmcot.metrics.rationale import scorer

    def no_scorer(*args, **kwargs):
        raise AssertionError("a kd-only compile scores no rationale aspect: no scorer, judge or reference LM")

    monkeypatch.setattr(scorer.RationaleScorer, "__init__", no_scorer)
    # A judge aspect and the default reference LM (the student): neither may be built for KD.
    cfg = _config(oracle_server, tmp_path, tiny_causal_path, "kd", **{"rationale_metrics.backends.fluency": "judge"})
    report = _compile(cfg, tmp_path / "out")
    assert report["untrained"]["n"] == 3 and report["compiled"]["n"] == 3
    kd = watched["seen"]["kd"]
    assert kd["engines"] >= 1, "the untrained evaluation ran on an in-process engine"
    assert kd["loaded"] == 0, "the evaluation engine's weights must be dropped before KD training"
    assert kd["perplexity_scorers"] == 0


@pytest.mark.slow
def test_rl_trains_with_no_student_engine_or_idle_scorer_model_resident(
        oracle_server, tiny_causal_path, tmp_path, watched):
    # reference_lm defaults to the untrained student: a perplexity model scores aspects before KD.
    cfg = _config(oracle_server, tmp_path, tiny_causal_path, "kd,rl")
    report = _compile(cfg, tmp_path / "out")
    assert {"untrained", "before_rl", "compiled"} <= report.keys()
    kd, rl = watched["seen"]["kd"], watched["seen"]["rl"]
    assert kd["loaded"] == 0 and kd["perplexity_scorers"] == 0, "KD uses no engine and no scoring model"
    # The untrained and the after-KD engines are both dropped; the reference LM (RL's fluency reward)
    # loads again when a reward needs it.
    assert rl["engines"] >= 2 and rl["loaded"] == 0
