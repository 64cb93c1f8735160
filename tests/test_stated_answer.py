"""``metrics/stated_answer``: the one reader of "So the answer is X", and the ways a reply says it."""

from __future__ import annotations

import pytest

from lmcot.metrics.answer_types import number_scores
from lmcot.metrics.stated_answer import leading_answer, stated_answer, without_stated_answer


@pytest.mark.parametrize("text, answer", [
    # a rationale that revises itself on one line: the last statement is the one settled on
    ("At first I thought the answer is 5. But she had 2 more, so the answer is 7.", "7"),
    ("Whether the answer is yes depends on the year. It was 1990, so the answer is no.", "no"),
    ('He said "the answer is 5." So the answer is 6.', "6"),
    ("A. The answer is 5. The answer is 6.", "6"),
    # a later mention on the line that announces nothing is a remark, not a revision
    ("So the answer is 8. I hope this answer is helpful.", "8"),
    ("So the answer is 8. This answer is 3 more than she had before.", "8"),
    ("So the answer is 8. Note that the answer is not 9.", "8"),
    ("The answer is __init__", "__init__"),  # underscores after the label are the answer's
    ("A is B. So the answer is B.\nB is old. Thus the answer is C.", "C"),
    # markdown emphasis around the label
    ("Paris is the capital.\n**Answer**: Paris", "Paris"), ("**Answer:** Paris", "Paris"),
    ("__Answer__: Rome", "Rome"), ("The answer is **Paris**.", "Paris"),
    ("No statement here.", None), ("the answer is:", None),
])
def test_the_stated_answer_is_the_last_statement(text, answer):
    assert stated_answer(text) == answer


def test_a_number_answer_follows_the_last_statement_of_a_line():
    assert number_scores("At first the answer is 5. But 2 were eaten, so the answer is 3.", "3") == (1.0, 1.0)


def test_a_remark_after_the_answer_does_not_move_a_number_answer():
    assert number_scores("She had 5, so the answer is 8. This answer is 3 more than she had before.", "8") == (1.0, 1.0)


def test_every_statement_of_a_line_is_removed_from_the_evidence():
    text = "She had 5. At first the answer is 5. But 2 were eaten, so the answer is 3. Done."
    assert without_stated_answer(text) == "She had 5. At first But 2 were eaten, Done."


@pytest.mark.parametrize("reply, answer", [("**Answer:** Paris", "Paris"), ("**Answer**: Paris", "Paris"),
                                           ("**Answer**\nParis", "Paris"), ("**Paris**", "Paris")])
def test_an_answer_only_reply_with_a_markdown_label(reply, answer):
    assert leading_answer(reply) == answer
