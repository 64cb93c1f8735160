"""Answer types (data.answer_type): span (official EM/F1), number, label; the one TaskMetric that scores
a task everywhere, and self-consistency voting under the task's normalisation."""

from __future__ import annotations

import re

import dspy
import pytest

from lmcot.config import ConfigError, load_config
from lmcot.metrics.answer_types import answer_key, label_scores, number_scores, parse_number
from lmcot.metrics.task_metric import TaskMetric, vote_key_for
from lmcot.programs import majority_vote


@pytest.mark.parametrize("text, value", [
    ("$18.00", 18.0), ("18", 18.0), ("18.", 18.0), ("1,000", 1000.0), ("The answer is 18 dollars", 18.0),
    ("3/4", 0.75), ("-5 degrees", -5.0), ("It costs $1,234.50 in all", 1234.5), ("0.75", 0.75),
    ("She had 5, then 3 more. So the answer is 8.", 8.0),  # the stated answer, not a number before it
    ("He is 12 and she is 14", 14.0),  # no stated answer: the last number
    ("COVID-19", 19.0),  # a hyphen glued to a word is no minus sign
    ("-$5", -5.0), ("The loss was -$1,200.", -1200.0), ("$-5", -5.0),  # a sign before the currency symbol
    ("no number here", None), ("", None), (None, None),
])
def test_numbers_are_read_from_answers(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize("pred, gold, em", [
    ("$18.00", "18", 1.0), ("18.", "18", 1.0), ("1,000", "1000", 1.0), ("The answer is 18 dollars", "18", 1.0),
    ("0.75", "3/4", 1.0), ("18.000001", "18", 1.0),  # within the relative tolerance of 1e-6
    ("18.1", "18", 0.0), ("17", "18", 0.0), ("I don't know", "18", 0.0), ("", "0", 0.0), ("0", "0", 1.0),
])
def test_number_em_is_numeric_equality_and_f1_equals_em(pred, gold, em):
    assert number_scores(pred, gold) == (em, em)


def test_labels_match_case_insensitively_without_punctuation_and_count_off_label():
    labels = ("yes", "no")
    assert label_scores("Yes.", "yes", labels) == (1.0, 1.0, False)
    assert label_scores("NO!", "yes", labels) == (0.0, 0.0, False)
    assert label_scores("maybe", "yes", labels) == (0.0, 0.0, True)
    assert label_scores("Yes, because it is", "yes", labels) == (0.0, 0.0, True)  # not a label: wrong, off the set
    # without a label set nothing is off-label; articles are kept ("a" may be a label: A/B/C/D)
    assert label_scores("(A)", "a") == (1.0, 1.0, False)
    assert label_scores("A", "an") == (0.0, 0.0, False)


def test_span_stays_the_official_em_f1():
    task = TaskMetric()
    assert task.em_f1("The Beatles.", "beatles") == (1.0, 1.0)
    em, f1 = task.em_f1("the Rolling Stones band", "Rolling Stones")
    assert em == 0.0 and f1 == pytest.approx(0.8)


def test_a_label_keeps_the_punctuation_that_is_the_label():
    """A sign is part of a numeric label; "+" / "-" labels keep their marks; an empty answer is no label."""
    assert label_scores("-1", "1", ("-1", "0", "1")) == (0.0, 0.0, False)
    assert label_scores("-1.", "-1", ("-1", "0", "1")) == (1.0, 1.0, False)
    assert label_scores("+1", "1", ("-1", "0", "1")) == (1.0, 1.0, False)
    assert label_scores("\u22121", "-1", ("-1", "0", "1")) == (1.0, 1.0, False)
    assert label_scores("+", "-", ("+", "-")) == (0.0, 0.0, False)
    assert label_scores("-.", "-", ("+", "-")) == (1.0, 1.0, False)
    assert label_scores("", "-", ("+", "-")) == (0.0, 0.0, True)
    assert label_scores("A-1", "a1") == (1.0, 1.0, False)  # a dash inside a word is no sign
    assert label_scores("**-**", "-", ("+", "-")) == (1.0, 1.0, False)
    assert label_scores("\u20131", "-1", ("-1", "1")) == (1.0, 1.0, False)  # an en dash as minus, as numbers read it
    assert label_scores("?", "?", ("?", "!")) == (1.0, 1.0, False)


@pytest.mark.parametrize("labels, needle", [
    ("[Entailment, 'entailment.']", "'Entailment' and 'entailment.' are the same label"),
    ("['...', a]", "'...' is no label")])
def test_labels_that_cannot_be_told_apart_are_refused(labels, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_config(None, ["data.dataset=custom", "data.answer_type=label", f"data.labels={labels}"])


def test_off_label_answers_vote_only_when_all_are_off_label():
    key = vote_key_for("label", ("yes", "no"))
    assert majority_vote(["maybe", "maybe", "yes"], key=key) == 2
    assert majority_vote(["maybe", "unsure"], key=key) == 0
    assert majority_vote(["", "maybe", "maybe"], key=key) == 1  # all off-label: the most common answer
    task = TaskMetric("label", ("yes", "no"))
    assert task.vote_key("maybe") == "" and task.vote_key("Yes.") == "yes"
    assert answer_key("-0", "number") == answer_key("0", "number")


def test_task_metric_from_config_scores_with_the_answer_type_labels_and_user_metric():
    cfg = load_config(None, ["data.dataset=custom", "data.answer_type=label", "data.labels=[yes, no]"])
    task = TaskMetric.from_config(cfg, metric=lambda example, prediction, trace=None: prediction.answer == "maybe")
    example = dspy.Example(id="1", question="q", answer="yes")
    assert task.score("Yes", example) == {"em": 1.0, "f1": 1.0, "off_label": False, "metric": 0.0}
    assert task.score("maybe", example) == {"em": 0.0, "f1": 0.0, "off_label": True, "metric": 1.0}
    assert "label" in task.describe() and "yes, no" in task.describe()


def test_self_consistency_votes_under_the_tasks_normalisation():
    answers = ["18 dollars", "$20", "18", "20.0", "$18.00"]
    assert answers[majority_vote(answers, key=vote_key_for("number"))] == "18 dollars"  # three times 18
    assert answer_key("1,000", "number") == answer_key("1000.0", "number")
    # as spans these five are five different answers: the first one wins the tie
    assert majority_vote(answers) == 0
    assert majority_vote(["no.", "Yes", "YES!"], key=vote_key_for("label")) == 1
