"""Every RationaleScorer a library module builds comes from scorer_from_config, the one factory."""

from __future__ import annotations

from pathlib import Path

import lmcot.metrics.rationale as rationale
from lmcot.config import RationaleMetricsConfig
from lmcot.metrics.rationale import RationaleScorer
from lmcot.programs import LMGuidedCoT

ROOT = Path(__file__).resolve().parents[1]
ROWS = ["Ed Wood is a film by Tim Burton. So the answer is Tim Burton.", "Tim Burton. Tim Burton. Tim Burton."]


def test_quality_select_without_a_scorer_uses_the_factory_and_loads_no_model(monkeypatch):
    built = []
    real = rationale.scorer_from_config

    def recording(config, **kwargs):
        built.append(kwargs)
        return real(config, **kwargs)

    monkeypatch.setattr(rationale, "scorer_from_config", recording)
    program = LMGuidedCoT(None, None, num_samples=2, select="quality")
    monkeypatch.setattr(program, "_ask", lambda question, context, rationale: "Tim Burton")
    pred = program._answer_best("Who directed Ed Wood?", "Ed Wood: Ed Wood is a film by Tim Burton.", ROWS)
    assert built == [{"reference_lm": rationale.LEXICAL}]
    scorer = program.scorer
    assert scorer.reference_lm is None and scorer.judge_lm is None and scorer.cfg == RationaleMetricsConfig()
    # The same scores as the all-cheap scorer it replaces, so the same rationale is picked.
    rows = [{"question": "Who directed Ed Wood?", "context": "Ed Wood: Ed Wood is a film by Tim Burton.",
             "rationale": r} for r in ROWS]
    assert pred.scores == RationaleScorer(RationaleMetricsConfig()).score(rows)
    assert pred.rationale == ROWS[pred.selected]


def test_no_library_module_builds_a_rationale_scorer_itself():
    import ast

    for folder in ("lmcot", "metrics", "programs", "optimizers", "experiment", "commands"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == ROOT / "metrics" / "rationale" / "scorer.py":  # the factory itself
                continue
            calls = [node.lineno for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                     if isinstance(node, ast.Call)
                     and getattr(node.func, "id", getattr(node.func, "attr", None)) == "RationaleScorer"]
            assert not calls, f"{path}:{calls}: build it with scorer_from_config"
