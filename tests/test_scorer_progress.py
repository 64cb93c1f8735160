"""The scorer's progress bars go through lmcot.console.progress_bar: off a terminal, plain lines."""

from __future__ import annotations

from lmcot.config import RationaleMetricsConfig
from lmcot.metrics.rationale import RationaleScorer
from lmcot.metrics.rationale.models import _batches

ROWS = [{"question": "Who directed Ed Wood?", "context": "Ed Wood: Ed Wood is a film by Tim Burton.",
         "rationale": f"Tim Burton directed Ed Wood {i} times. So the answer is Tim Burton."} for i in range(3)]


def test_cheap_scores_print_a_plain_line_off_a_terminal(capsys):
    scores = RationaleScorer(RationaleMetricsConfig()).score(ROWS, progress=True)
    err = capsys.readouterr().err
    assert "rationale scores (cheap): 3/3 (100%)" in err
    assert scores == RationaleScorer(RationaleMetricsConfig()).score(ROWS)  # the bar changes nothing scored
    assert capsys.readouterr().err == ""  # no bar without progress


def test_model_batches_print_a_plain_line_off_a_terminal(capsys):
    texts = [f"text {i}" for i in range(5)]
    assert [t for chunk in _batches(texts, 2, True, "reference LM perplexity") for t in chunk] == texts
    assert "reference LM perplexity: 5/5 (100%)" in capsys.readouterr().err
