"""`lmcot score` through the real CLI: the eight aspects printed, per-row scores written, bad rows
rejected with one line naming file, line and field."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from lmcot.commands.cli import app
from lmcot.config import ASPECTS
from support.paths import HOTPOT

FIXTURE = HOTPOT


def _rows() -> list[dict]:
    from lmcot.data import load_examples

    rows = []
    for ex in load_examples("hotpotqa", str(FIXTURE), limit=3).examples:
        by_title = dict((t, s) for t, s in ex.paragraphs)
        support = " ".join(by_title[t][i].strip() for t, i in ex.supporting_facts
                           if t in by_title and i < len(by_title[t]))
        rows.append({"id": ex.id, "question": ex.question, "context": ex.context,
                     "rationale": f"{support} So the answer is {ex.answer}."})
    return rows


def test_score_prints_eight_aspects_and_writes_scores(tmp_path):
    src = tmp_path / "rationales.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _rows()))
    result = CliRunner().invoke(app, ["score", "--rationales", str(src), "--out", str(tmp_path / "s.jsonl")])
    assert result.exit_code == 0, result.output
    for aspect in ASPECTS:
        assert aspect in result.output
    scored = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert len(scored) == 3
    assert all(0.0 <= row[a] <= 1.0 for row in scored for a in ASPECTS)
    # Rationales quoting the supporting sentences are supported by the context.
    assert min(row["factuality"] for row in scored) > 0.5


def test_score_bad_row_is_one_line_error(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text(json.dumps({"question": "q", "context": "T: s."}) + "\n")
    result = CliRunner().invoke(app, ["score", "--rationales", str(src)])
    assert result.exit_code != 0
    assert "bad.jsonl" in result.output and "line 1" in result.output and "rationale" in result.output
    assert not (tmp_path / "bad.scores.jsonl").exists(), "nothing half-written on bad input"
