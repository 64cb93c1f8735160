"""Hand-worked cases for the official HotpotQA / 2Wiki answer metrics."""

from __future__ import annotations

import pytest

from lmcot.metrics import aggregate, answer_em, answer_f1, answer_scores, normalize_answer


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("  New   York\tCity \n", "new york city"),
        ("A.B.C.", "abc"),  # punctuation removed before articles: "a.b.c." -> "abc", not "b c"
        ("a-b", "ab"),  # hyphen is ASCII punctuation: joined, so "a" never stands alone
        ("an apple, the pear and a plum", "apple pear and plum"),
        ("Theatre anthem", "theatre anthem"),  # articles only as whole words
        ("\u201cHello\u201d \u2013 World", "\u201chello\u201d \u2013 world"),  # curly quotes, en-dash survive
        ("Caf\u00e9", "caf\u00e9"),
        ("", ""),
        (None, ""),
    ],
)
def test_normalize_answer(raw: str | None, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_punctuation_and_case_give_exact_match() -> None:
    assert answer_em("Barack Obama.", "barack obama") == 1.0
    assert answer_f1("Barack Obama.", "barack obama") == 1.0


def test_articles_only_answers_match_but_score_no_f1() -> None:
    # Both normalise to "": equal strings (EM 1) but no shared token (F1 0), as officially.
    assert answer_scores("the", "a") == (1.0, 0.0, 0.0, 0.0)


def test_partial_overlap() -> None:
    em, f1, precision, recall = answer_scores("the city of Paris", "Paris")
    assert em == 0.0
    assert precision == pytest.approx(1 / 3)  # ["city", "of", "paris"]
    assert recall == 1.0
    assert f1 == pytest.approx(0.5)


def test_repeated_tokens_count_with_multiplicity() -> None:
    # pred ["new","new","york"], gold ["new","york"]: common = 2 -> P 2/3, R 1, F1 0.8
    em, f1, precision, recall = answer_scores("new new york", "New York")
    assert (em, precision, recall) == (0.0, pytest.approx(2 / 3), 1.0)
    assert f1 == pytest.approx(0.8)
    # pred ["new","york"], gold ["new","new","york"]: P 1, R 2/3
    assert answer_f1("New York", "new new york") == pytest.approx(0.8)


def test_yes_no_rule() -> None:
    assert answer_scores("yes", "no") == (0.0, 0.0, 0.0, 0.0)
    assert answer_f1("Yes.", "yes") == 1.0
    assert answer_em("YES", "yes") == 1.0
    # A longer answer containing "yes" gets nothing against gold "yes" (would be 0.5 otherwise).
    assert answer_f1("yes it is", "yes") == 0.0
    assert answer_f1("no", "no way") == 0.0


def test_noanswer_rule() -> None:
    assert answer_f1("noanswer", "Paris") == 0.0
    assert answer_f1("no answer", "noanswer") == 0.0
    assert answer_scores("noanswer", "NoAnswer") == (1.0, 1.0, 1.0, 1.0)


def test_unicode_punctuation_is_not_stripped() -> None:
    # en-dash is not ASCII punctuation: "1762–1827" stays one token, unlike "1762-1827".
    assert answer_em("1762\u20131827", "1762-1827") == 0.0
    assert answer_em("1762-1827", "17621827") == 1.0
    assert answer_em("\u201cSinister\u201d", "Sinister") == 0.0
    assert answer_em('"Sinister"', "Sinister") == 1.0
    assert answer_f1("\u201cDoctor Strange\u201d", "Doctor Strange") == 0.0


def test_none_prediction_scores_as_empty() -> None:
    assert answer_scores(None, "Paris") == (0.0, 0.0, 0.0, 0.0)
    assert answer_em(None, "") == 1.0
    assert answer_f1(None, "") == 0.0


def test_whitespace_is_collapsed() -> None:
    assert answer_scores("  Ed\n Wood ", "Ed Wood") == (1.0, 1.0, 1.0, 1.0)


def test_returns_floats() -> None:
    for value in answer_scores("a cat", "cat"):
        assert type(value) is float
    assert type(answer_em("x", "y")) is float
    assert type(answer_f1("x", "y")) is float


def test_aggregate_tuples_and_dicts() -> None:
    rows = [answer_scores("Paris", "paris"), answer_scores("city of Paris", "Paris"), (0.0, 0.0)]
    result = aggregate(rows)
    assert result["n"] == 3
    assert result["em"] == pytest.approx(1 / 3)
    assert result["f1"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert aggregate([{"em": 1.0, "f1": 1.0, "id": "x"}, {"em": 0, "f1": 0.5}]) == {
        "em": 0.5,
        "f1": 0.75,
        "n": 2,
    }
    assert aggregate(iter([(1.0, 0.25)])) == {"em": 1.0, "f1": 0.25, "n": 1}


def test_aggregate_empty() -> None:
    assert aggregate([]) == {"em": 0.0, "f1": 0.0, "n": 0}
