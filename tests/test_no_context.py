"""A task without a context, end to end: GSM8K (the quickstart's slice, read through answer_regex), the tiny
random student and the scripted stand-in over HTTP. No prompt shows a context field; KD from the dataset's
rationales sends no teacher request; passage aspects are n/a; the saved program keeps the metric's name only."""

from __future__ import annotations

import json
from pathlib import Path

import dspy
import pytest

from lmcot.config import load_config
from support.paths import ROOT

CONFIG = ROOT / "configs" / "gsm8k-quickstart.yaml"
METRIC = '''
def within_one(example, prediction, trace=None):
    import re
    numbers = re.findall(r"-?\\d+", prediction.answer or "")
    return bool(numbers) and abs(int(numbers[-1]) - int(example.answer)) <= 1
'''


@pytest.fixture(scope="module")
def server():
    from support.oracle_responder import OracleResponder
    from support.oracle_server import OracleServer, config_examples

    responder = OracleResponder(config_examples(str(CONFIG)), wrong_rate=0.0, rationale_sensitive=True,
                                standard_accuracy=0.35, cot_accuracy=0.45)
    with OracleServer(responder) as srv:
        yield srv


def _sets(server, tiny: Path, tmp: Path, *extra: str) -> list[str]:
    return [f"small_lm.model={tiny}", "small_lm.max_tokens=12", f"large_lm.api_base={server.url}",
            "data.train_limit=6", "data.dev_limit=3", "kd.max_steps=2", "kd.batch_size=2", "kd.max_length=384",
            f"cache_dir={tmp / 'cache'}", "eval.concurrency=3", *extra]


def _texts(requests: list[dict]) -> list[str]:
    return ["\n".join(str(m.get("content")) for m in body.get("messages", [])) for body in requests]


def test_every_prompt_of_a_context_free_task_leaves_the_context_out():
    from lmcot.metrics.rationale.judge import judge_messages
    from lmcot.programs.adapter import rationale_messages

    small = "\n".join(m["content"] for m in rationale_messages("How many apples?", ""))
    assert "Context" not in small and "context" not in small and small.rstrip().endswith("Rationale:")
    with_context = "\n".join(m["content"] for m in rationale_messages("How many apples?", "Tom has 3 apples."))
    assert "Context:\nTom has 3 apples." in with_context
    judge = "\n".join(m["content"] for m in judge_messages("How many apples?", "", "3 + 4 = 7.", "relevance"))
    assert "Context" not in judge and "context" not in judge


def test_passage_aspects_are_na_without_a_context():
    from lmcot.config import RationaleMetricsConfig
    from lmcot.metrics.rationale import RationaleScorer, summarize

    rows = [{"question": "How many apples does Tom have?", "context": "", "rationale": "Tom has 3 + 4 = 7 apples."}]
    [scores] = RationaleScorer(RationaleMetricsConfig()).score(rows)
    assert scores["factuality"] is None and scores["consistency"] is None
    assert all(isinstance(scores[a], float) for a in ("relevance", "readability", "fluency"))
    means = summarize([scores])
    assert means["factuality"] is None and means["readability"] == scores["readability"]


def test_kd_from_dataset_rationales_sends_no_teacher_request(server, tiny_causal_path, tmp_path, monkeypatch):
    import lmcot.optimizers.distill as distill
    from lmcot.lms import build_lm
    from lmcot.optimizers import LMCoTCompiler
    from lmcot.programs import LMGuidedCoT
    from lmcot.splits import load_split

    distilled = []

    def record(kept, student, out_dir, *args, **kwargs):  # what KD trains on (training itself: the slow tests)
        distilled.extend(kept)
        return tiny_causal_path

    monkeypatch.setattr(distill, "distill", record)
    cfg = load_config(CONFIG, _sets(server, tiny_causal_path, tmp_path))
    assert cfg.kd.source == "dataset"
    trainset = load_split(cfg, "train")
    program = LMGuidedCoT(build_lm(cfg.small_lm), build_lm(cfg.large_lm))
    before = len(server.requests)
    LMCoTCompiler(cfg, tmp_path / "out", progress=False).compile(program, trainset)
    assert len(server.requests) == before  # not one request: no teacher, no evaluation (no valset)
    assert [r["id"] for r in distilled] == [ex.id for ex in trainset]
    first = distilled[0]
    assert first["context"] == "" and first["rationale"].startswith(trainset[0].rationale)
    assert first["rationale"].endswith(f"So the answer is {trainset[0].answer}.")  # "#### 72" read as 72
    done = json.loads((tmp_path / "out" / "kd" / "DONE.json").read_text())
    assert done["kept"] == 6 and done["summary"]["source"] == "dataset" and done["summary"]["teacher_calls"] == 0


def test_dataset_rationales_end_in_their_stated_answer():
    from lmcot.optimizers.dataset_rationales import dataset_rationales

    examples = [dspy.Example(id="1", question="q", answer="18", rationale="She makes 9 * 2 = $18."),
                dspy.Example(id="2", question="q2", answer="3", rationale="2 + 1 = 3. So the answer is 3."),
                dspy.Example(id="3", question="q3", answer="5")]
    rows = dataset_rationales(examples)
    assert [r["rationale"] for r in rows] == ["She makes 9 * 2 = $18.\nSo the answer is 18.",
                                              "2 + 1 = 3. So the answer is 3."]


def test_kd_source_dataset_needs_rationales(server, tiny_causal_path, tmp_path):
    from lmcot.config import ConfigError
    from lmcot.lms import build_lm
    from lmcot.optimizers import LMCoTCompiler
    from lmcot.programs import LMGuidedCoT

    cfg = load_config(CONFIG, _sets(server, tiny_causal_path, tmp_path))
    bare = [dspy.Example(question="3 + 4?", answer="7").with_inputs("question")]
    with pytest.raises(ConfigError, match="kd.source: dataset: no training example has a rationale"):
        LMCoTCompiler(cfg, tmp_path / "out", progress=False).compile(
            LMGuidedCoT(build_lm(cfg.small_lm), build_lm(cfg.large_lm)), bare)


@pytest.mark.slow
def test_compile_and_evaluate_a_context_free_task_from_the_command_line(server, tiny_causal_path, tmp_path):
    from support.cli import run_cli

    metric = tmp_path / "within_one.py"
    metric.write_text(METRIC)
    out = tmp_path / "prog"
    sets = [a for s in _sets(server, tiny_causal_path, tmp_path, f"metric={metric}:within_one")
            for a in ("--set", s)]
    before = len(server.requests)
    result = run_cli(["compile", "--config", str(CONFIG), "--out", str(out), *sets])
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "metrics.json").read_text())
    for point in ("untrained", "compiled"):
        assert report[point]["n"] == 3 and "metric" in report[point] and "evidence_stated" not in report[point]
        assert "answer_stated" in report[point]
    assert report["compiled"]["metric_name"] == f"{metric}:within_one"
    assert "rationale states evidence" not in result.stdout + result.stderr
    assert "metric " in result.stdout  # the dev table's metric row (its long name wraps in the terminal)
    # the saved program names the metric, never runs it on its own
    doc = json.loads((out / "program.json").read_text())
    assert doc["metric_name"] == f"{metric}:within_one" and doc["config"]["metric"] is None

    # A folder never supplies data paths: without --config, evaluate says so before loading anything
    bare = run_cli(["evaluate", "--program", str(out), "--out", str(tmp_path / "eval"), "--methods", "standard"])
    assert bare.returncode == 2 and "a program folder never supplies data paths" in bare.stderr
    assert not (tmp_path / "eval").exists()
    plain = run_cli(["evaluate", "--program", str(out), "--config", str(CONFIG), "--out", str(tmp_path / "eval"),
                     "--methods", "standard,cot,guided", "--set", f"large_lm.api_base={server.url}",
                     "--set", "data.dev_limit=3", "--set", f"cache_dir={tmp_path / 'cache'}"])
    assert plain.returncode == 0, plain.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert all("metric" not in m and m["answer_type"] == "number" for m in metrics.values())
    again = run_cli(["evaluate", "--program", str(out), "--config", str(CONFIG), "--out", str(tmp_path / "eval2"),
                     "--methods", "guided", "--set", f"large_lm.api_base={server.url}", "--set", "data.dev_limit=3",
                     "--set", f"cache_dir={tmp_path / 'cache'}", "--set", f"metric={metric}:within_one"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "metric" in json.loads((tmp_path / "eval2" / "metrics.json").read_text())["guided"]

    # No request of this run showed a context field, and none was a teacher's (kd.source: dataset)
    texts = _texts(server.requests[before:])
    assert texts and not any("context" in t.lower() for t in texts)
    assert not any(b.get("temperature") for b in server.requests[before:])  # a teacher samples; nothing did


@pytest.mark.slow
def test_experiment_on_a_context_free_task_labels_its_metric_and_adds_the_dataset_row(server, tiny_causal_path,
                                                                                       tmp_path):
    from support.cli import run_cli

    out = tmp_path / "exp"
    sets = _sets(server, tiny_causal_path, tmp_path, "kd.source=teacher", "kd.num_samples=1", "kd.min_score=0.0",
                 "experiment.baselines=[standard]", "experiment.students=[untrained, kd]",
                 "experiment.self_consistency=false", "experiment.quality_analysis=false", "experiment.rl_ablation=[]",
                 "experiment.bootstrap_samples=100", "rationale_metrics.reference_lm=lexical")
    result = run_cli(["experiment", "--config", str(CONFIG), "--out", str(out), *[a for s in sets for a in ("--set", s)]])
    assert result.returncode == 0, result.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    assert set(results["methods"]) == {"standard", "guided_untrained", "guided_kd", "guided_kd_dataset"}
    assert results["methods"]["guided_kd_dataset"]["label"] == "LM-guided CoT, KD from dataset rationales"
    assert results["task"]["answer_type"] == "number" and results["task"]["has_context"] is False
    tables = json.loads((out / "tables.json").read_text())
    assert "accuracy (number match)" in tables["methods"]["columns"]
    assert "F1" not in tables["methods"]["columns"] and not any("evidence" in c for c in tables["methods"]["columns"])
    aspects = {row[0]: row[1:] for row in tables["aspects"]["rows"]}
    assert set(aspects["factuality"]) == {"n/a"} and set(aspects["consistency"]) == {"n/a"}
    assert "n/a" not in aspects["readability"]


def test_no_program_or_optimizer_module_assumes_hotpotqas_shape():
    """supporting facts, titles and paragraphs are read by the data loader and the evidence metric only."""
    import re

    shape = re.compile(r"supporting_facts|paragraphs|\btitles?\b(?!=)")  # not rich's Table(title=...)
    found = [f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
             for folder in ("programs", "optimizers") for path in sorted((ROOT / folder).rglob("*.py"))
             for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if shape.search(line) and not re.search(r"def _title|_title\(", line)]
    assert not found, "\n".join(found)


def test_lmcot_score_reports_passage_aspects_as_na_for_a_context_free_task(tmp_path):
    from support.reliability import invoke

    path = tmp_path / "rationales.jsonl"
    path.write_text(json.dumps({"question": "Tom has 3 apples and buys 4 more. How many?", "context": "",
                                "rationale": "Tom has 3 + 4 = 7 apples. So the answer is 7."}) + "\n")
    result = invoke(["score", "--rationales", path, "--set", "rationale_metrics.reference_lm=lexical"])
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 3}
    assert "n/a" in lines["factuality"] and "n/a" in lines["consistency"] and "n/a" not in lines["readability"]
    [row] = [json.loads(x) for x in (tmp_path / "rationales.scores.jsonl").read_text().splitlines()]
    assert row["factuality"] is None and isinstance(row["readability"], float)
