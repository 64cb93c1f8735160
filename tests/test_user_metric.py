"""A user metric (DSPy's metric(example, prediction, trace=None)): loaded only from the user's own config or
command line, checked before any paid call, reported beside em/f1, KD's keep filter and RL's answer reward."""

from __future__ import annotations

import json
from pathlib import Path

import dspy
import pytest

from lmcot.config import KDConfig, RLConfig, load_config
from lmcot.metrics.task_metric import TaskMetric
from lmcot.metrics.user_metric import MetricError, as_user_metric, load_metric
from support.reliability import assert_one_line_error, invoke

GOOD = '''
def exact(example, prediction, trace=None):
    return float(prediction.answer.strip() == example.answer)
'''
BAD = {
    "does not import": ("import not_a_module_anywhere\ndef m(example, prediction, trace=None):\n    return 1.0\n",
                        "m", "does not import (ModuleNotFoundError"),
    "missing name": (GOOD, "nope", "has no 'nope'"),
    "not callable": ("m = 3\n", "m", "m is a int, not a function"),
    "wrong signature": ("def m(example):\n    return 1.0\n", "m", "a metric takes (example, prediction, trace=None)"),
    "raises": ("def m(example, prediction, trace=None):\n    raise KeyError('score')\n", "m",
               "raised KeyError: 'score' on example"),
    "not a number": ("def m(example, prediction, trace=None):\n    return 'good'\n", "m", "returned 'good' (str), not a number"),
    "nan": ("def m(example, prediction, trace=None):\n    return float('nan')\n", "m", "not a number"),
}


def _file(tmp_path: Path, source: str, name: str = "my_metric.py") -> Path:
    path = tmp_path / name
    path.write_text(source)
    return path


def _example() -> dspy.Example:
    return dspy.Example(id="e1", question="Tom has 3 apples and buys 4 more. How many?", answer="7").with_inputs("question")


def test_a_metric_from_a_file_is_loaded_checked_and_called(tmp_path):
    metric = load_metric(f"{_file(tmp_path, GOOD)}:exact")
    assert metric.check_on(_example()) == 1.0  # the gold as prediction
    assert metric(_example(), dspy.Prediction(answer="8")) == 0.0
    # a module path works the same (the file's folder on sys.path)
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        assert load_metric("my_metric:exact").check_on(_example()) == 1.0
    finally:
        sys.path.remove(str(tmp_path))


def test_a_two_argument_metric_and_a_bool_result_are_accepted():
    metric = as_user_metric(lambda example, prediction: prediction.answer == "7")
    assert metric(_example(), dspy.Prediction(answer="7")) == 1.0


@pytest.mark.parametrize("case", list(BAD))
def test_each_unusable_metric_is_a_one_line_error_naming_the_key(tmp_path, case):
    source, name, needle = BAD[case]
    spec = f"{_file(tmp_path, source)}:{name}"
    with pytest.raises(MetricError) as err:
        load_metric(spec).check_on(_example())
    assert str(err.value).startswith(f"metric={spec}") and needle in str(err.value)
    assert "\n" not in str(err.value)


def test_a_missing_file_or_module_is_named(tmp_path):
    with pytest.raises(MetricError, match=r"metric=.*nowhere.py:m: .*nowhere.py: no such file"):
        load_metric(f"{tmp_path / 'nowhere.py'}:m")
    with pytest.raises(MetricError, match=r"module 'no_such_package.metrics' does not import"):
        load_metric("no_such_package.metrics:m")


def test_the_metric_setting_is_checked_for_its_shape_at_config_time():
    from lmcot.config import ConfigError

    with pytest.raises(ConfigError, match="metric: Value error, 'just_a_name': expected 'package.module:function'"):
        load_config(None, ["metric=just_a_name"])


class _Says(dspy.Module):
    """A program that answers the same thing to every question (no LM: the metric is under test)."""

    def __init__(self, answer: str):
        super().__init__()
        self.said = answer

    def forward(self, question: str, context: str | None = None) -> dspy.Prediction:
        return dspy.Prediction(answer=self.said, rationale="")


def test_evaluation_reports_the_metric_beside_em_and_f1_for_bare_examples(tmp_path):
    from lmcot.programs.evaluation import evaluate_program

    devset = [dspy.Example(question="3 + 4?", answer="7").with_inputs("question"),
              dspy.Example(question="2 + 2?", answer="4").with_inputs("question")]
    rows, summary = evaluate_program(_Says("7"), devset, metric=f"{_file(tmp_path, GOOD)}:exact", progress=False)
    assert [r["metric"] for r in rows] == [1.0, 0.0] and summary["metric"] == 0.5
    assert summary["em"] == 0.5 and summary["metric_name"].endswith("my_metric.py:exact")
    assert rows[0]["id"].startswith("q-")  # ids derived for examples that had none


def test_label_tasks_count_answers_outside_the_labels(tmp_path):
    from lmcot.programs.evaluation import evaluate_program

    task = TaskMetric("label", ("yes", "no"))
    devset = [dspy.Example(question="Is 7 odd?", answer="yes").with_inputs("question")]
    _, summary = evaluate_program(_Says("probably"), devset, task=task, progress=False)
    assert summary["em"] == 0.0 and summary["off_label"] == 1 and summary["answer_type"] == "label"


def test_kd_keeps_the_teacher_rationales_the_metric_accepts(oracle_server, hotpot_examples, tmp_path):
    from lmcot.lms import build_lm
    from lmcot.config import LargeLMConfig
    from lmcot.optimizers.bootstrap import bootstrap_traces

    trainset = hotpot_examples[:3]
    wanted = str(trainset[1].id)
    task = TaskMetric(metric=as_user_metric(lambda example, prediction, trace=None: str(example.id) == wanted))
    teacher = build_lm(LargeLMConfig(model="openai/oracle", api_base=oracle_server.url, max_tokens=512))
    result = bootstrap_traces(trainset, teacher, KDConfig(num_samples=1, temperature=0.7, keep_metric="metric"),
                              tmp_path / "kd", progress=False, task=task)
    assert [r["id"] for r in result.kept] == [wanted]  # every teacher answer is right (em 1); the metric decides
    assert all("metric" in t for t in result.traces)


def test_rl_answer_reward_is_the_metric_and_context_free_tasks_drop_passage_aspects(oracle_server, caplog):
    from lmcot.config import LargeLMConfig
    from lmcot.lms import build_lm
    from lmcot.optimizers.rewards import RewardSet

    large = build_lm(LargeLMConfig(model="openai/oracle", api_base=oracle_server.url))
    task = TaskMetric("number", metric=as_user_metric(lambda example, prediction, trace=None: 0.25))
    rows = [{"question": "Tom has 3 apples and buys 4 more. How many?", "context": "", "answer": "7",
             "rationale": "3 + 4 = 7. So the answer is 7."}]
    weights = {a: 0.0 for a in ("relevance", "logicality", "coherence", "fluency", "naturalness", "readability")}
    rewards = RewardSet(RLConfig(), answer_lm=large, scorer=None, task=task, with_context=False,
                        weights={**weights, "factuality": 1.0, "consistency": 1.0})
    assert rewards.names == ["answer_f1"]  # factuality and consistency are n/a without a passage
    assert "factuality, consistency (judged against a passage) are n/a" in caplog.text
    assert rewards.components(rows) == {"answer_f1": [0.25]}


def test_a_program_folder_never_brings_its_metric_back(tmp_path, tiny_causal_path):
    import shutil

    from lmcot.programs import LMGuidedCoT
    from lmcot.programs.program_io import program_config, save_program

    cfg = load_config(None, [f"metric={tmp_path / 'm.py'}:exact"])
    shutil.copytree(tiny_causal_path, tmp_path / "prog" / "small_lm")
    save_program(LMGuidedCoT(), tmp_path / "prog", cfg)
    doc = json.loads((tmp_path / "prog" / "program.json").read_text())
    assert doc["metric_name"] == f"{tmp_path / 'm.py'}:exact" and doc["config"]["metric"] is None
    # a folder edited by hand to name a metric: ignored on load
    doc["config"]["metric"] = "evil.py:run"
    (tmp_path / "prog" / "program.json").write_text(json.dumps(doc))
    assert program_config(tmp_path / "prog").metric is None


# ----------------------------------------------------------------------- the command line, before any call


@pytest.fixture()
def task_file(tmp_path) -> Path:
    path = tmp_path / "arith.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [{"question": "3 + 4?", "answer": "7"},
                                                           {"question": "2 + 2?", "answer": "4"}]))
    return path


@pytest.mark.parametrize("case", list(BAD))
def test_cli_refuses_an_unusable_metric_in_one_line_before_any_call(oracle_server, task_file, tmp_path, case):
    source, name, needle = BAD[case]
    spec = f"{_file(tmp_path, source)}:{name}"
    before = len(oracle_server.requests)
    result = invoke(["evaluate", "--methods", "standard", "--out", tmp_path / "out",
                     "--set", "large_lm.model=openai/oracle", "--set", f"large_lm.api_base={oracle_server.url}",
                     "--set", "data.dataset=custom", "--set", f"data.dev={task_file}", "--set", f"metric={spec}",
                     "--set", f"cache_dir={tmp_path / 'cache'}", "--set", "data.max_context_tokens=null"])
    assert_one_line_error(result, f"metric={spec}", needle)
    assert len(oracle_server.requests) == before  # no paid call
    assert not (tmp_path / "out").exists()
