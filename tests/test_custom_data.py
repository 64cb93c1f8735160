"""data.dataset: custom: the user's own layout in JSONL, JSON, CSV, Parquet or a hub dataset; data.fields,
data.answer_regex, the context shapes, and bad input as one line naming the source, record and field."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from lmcot.config import ConfigError, load_config
from lmcot.data import DataError, derive_id
from lmcot.splits import load_split
from support.paths import ROOT

GSM8K_TRAIN = ROOT / "configs" / "gsm8k" / "gsm8k_train.jsonl"
RECORDS = [
    {"uid": "a1", "problem": "Tom has 3 apples and buys 4 more. How many?", "final": "7", "why": "3 + 4 = 7."},
    {"uid": "a2", "problem": "A box holds 6 eggs. How many in 5 boxes?", "final": "30", "why": "5 * 6 = 30."},
]
MAPPING = "data.fields={id: uid, question: problem, answer: final, rationale: why}"


def _cfg(source: Path | str, *sets: str):
    # small_lm over HTTP: no tokenizer to load, contexts counted by the approximate word counter
    return load_config(None, ["data.dataset=custom", f"data.train={source}", "small_lm.backend=litellm",
                              "small_lm.model=openai/x", *sets])


def _write(tmp_path: Path, fmt: str, records: list[dict]) -> Path:
    path = tmp_path / f"data.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif fmt == "json":
        path.write_text(json.dumps(records))
    elif fmt == "csv":
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), path)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
def test_each_file_format_loads_through_the_field_mapping(tmp_path, fmt):
    examples = load_split(_cfg(_write(tmp_path, fmt, RECORDS), MAPPING), "train")
    assert [(e.id, e.question, e.answer, e.rationale, e.context) for e in examples] == [
        ("a1", RECORDS[0]["problem"], "7", "3 + 4 = 7.", ""), ("a2", RECORDS[1]["problem"], "30", "5 * 6 = 30.", "")]
    assert set(examples[0].inputs().keys()) == {"question"}  # no context: not an input at all


def test_csv_values_keep_their_line_breaks_and_unicode_separators(tmp_path):
    """A quoted CSV field may hold line breaks; U+2028 or a form feed in a value breaks no row."""
    records = [{"problem": "Who wrote\u2028 it?", "final": "Tolkien", "why": "Para one.\nPara two."},
               {"problem": "q\x0ctail", "final": "5", "why": "r"}]
    examples = load_split(_cfg(_write(tmp_path, "csv", records), "data.fields={question: problem, answer: final, "
                               "rationale: why}"), "train")
    assert [(e.question, e.answer, e.rationale) for e in examples] == [
        ("Who wrote\u2028 it?", "Tolkien", "Para one.\nPara two."), ("q\x0ctail", "5", "r")]


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path, fmt):
    """Excel's "CSV UTF-8" and Notepad write a BOM; it must not rename the first column or break JSON."""
    path = _write(tmp_path, fmt, RECORDS)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    examples = load_split(_cfg(path, MAPPING), "train")
    assert [(e.id, e.answer) for e in examples] == [("a1", "7"), ("a2", "30")]


def test_a_hub_dataset_is_read_with_datasets_load_dataset(monkeypatch):
    import datasets

    calls = []

    def load_dataset(*args, **kwargs):  # the datasets boundary: nothing downloads here
        calls.append((args, kwargs))
        return datasets.Dataset.from_list(RECORDS)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    cfg = _cfg("train[:2]", MAPPING, "data.hub_id=someone/arith", "data.hub_config=main")
    examples = load_split(cfg, "train")
    assert calls == [(("someone/arith", "main"), {"split": "train[:2]"})]
    assert [e.id for e in examples] == ["a1", "a2"] and examples[1].answer == "30"


def test_a_hub_split_needs_a_hub_id(tmp_path):
    with pytest.raises(DataError, match=r"train: no such file; for a split of a hub dataset set data.hub_id"):
        load_split(_cfg("train"), "train")


def test_gsm8k_loads_as_published_through_answer_regex():
    cfg = _cfg(GSM8K_TRAIN, "data.fields={rationale: answer}", r'data.answer_regex=####\s*(.+)$',
               "data.answer_type=number", "data.train_limit=3")
    first = load_split(cfg, "train")[0]
    raw = json.loads(GSM8K_TRAIN.read_text().splitlines()[0])
    assert first.answer == "72" and raw["answer"].endswith("#### 72")
    assert first.rationale == raw["answer"].split("####")[0].strip()  # the text before the match
    assert first.id == derive_id(raw["question"])  # no id column: derived as for HotpotQA's null ids
    assert first.context == ""


def test_defaults_use_columns_of_the_same_name_and_missing_ids_are_derived(tmp_path):
    path = _write(tmp_path, "jsonl", [{"question": "Is 7 odd?", "answer": "yes"}, {"_id": 5, "question": "2+2?",
                                                                                 "answer": 4}])
    first, second = load_split(_cfg(path), "train")
    assert first.id == derive_id("Is 7 odd?") and second.id == "5" and second.answer == "4"
    assert "rationale" not in first


@pytest.mark.parametrize("context, expected", [
    ("Tom is a farmer. He has 3 apples.", "Tom is a farmer. He has 3 apples."),
    (["Tom is a farmer.", "He has 3 apples."], "Tom is a farmer.\nHe has 3 apples."),
    ('["Tom is a farmer.", "He has 3 apples."]', "Tom is a farmer.\nHe has 3 apples."),  # a CSV cell
    ([["Tom", ["Tom is a farmer.", " He has 3 apples."]]], "Tom: Tom is a farmer. He has 3 apples."),
    ("", ""), (None, ""),
])
def test_a_context_may_be_a_string_a_list_of_strings_or_titled_paragraphs(tmp_path, context, expected):
    path = _write(tmp_path, "jsonl", [{"q": "How many apples?", "a": "3", "passage": context}])
    [example] = load_split(_cfg(path, "data.fields={question: q, answer: a, context: passage}"), "train")
    assert example.context == expected
    assert ("context" in example.inputs()) == bool(expected)
    titled = isinstance(context, list) and isinstance(context[0], list)
    assert ("paragraphs" in example) == titled


def test_a_long_string_context_is_cut_at_a_sentence_end_to_the_budget(tmp_path):
    text = " ".join(f"Sentence number {i} is here." for i in range(40))
    path = _write(tmp_path, "jsonl", [{"question": "q?", "answer": "a", "context": text}])
    [example] = load_split(_cfg(path, "data.max_context_tokens=30"), "train")
    assert text.startswith(example.context) and example.context.endswith(".")
    assert 0 < len(example.context.split()) * 1.3 <= 30


def test_labels_from_yaml_and_boolean_answers_read_as_yes_no(tmp_path):
    path = _write(tmp_path, "jsonl", [{"question": "Is the sky blue?", "answer": True}])
    [example] = load_split(_cfg(path, "data.answer_type=label", "data.labels=[yes, no]"), "train")
    assert example.answer == "yes"


# ----------------------------------------------------------------------------- bad input, one line each


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_mapping_that_names_a_missing_column_names_it_and_lists_the_columns(tmp_path, fmt):
    path = _write(tmp_path, fmt, RECORDS)
    with pytest.raises(DataError) as err:
        load_split(_cfg(path, "data.fields={question: problem, answer: solution}"), "train")
    message = str(err.value)
    assert "column 'solution' (data.fields.answer) does not exist" in message
    assert "the columns are: uid, problem, final, why" in message and str(path) in message
    assert "\n" not in message


def test_a_required_column_under_its_default_name_must_exist(tmp_path):
    path = _write(tmp_path, "jsonl", RECORDS)
    with pytest.raises(DataError, match=r"no column 'question'; map it with data.fields.question \(the columns are: "
                                        r"uid, problem, final, why\)"):
        load_split(_cfg(path), "train")


def test_a_regex_that_matches_no_answer_names_the_record(tmp_path):
    records = [{"question": "q1", "answer": "work\n#### 5"}, {"question": "q2", "answer": "work, no marker"}]
    path = _write(tmp_path, "jsonl", records)
    with pytest.raises(DataError) as err:
        load_split(_cfg(path, r"data.answer_regex=####\s*(.+)$"), "train")
    assert str(err.value).startswith(f"{path}: line 2: data.answer_regex")
    assert "matches no answer in column 'answer'" in str(err.value)
    # --skip-bad skips it and keeps the good one
    [kept] = load_split(_cfg(path, r"data.answer_regex=####\s*(.+)$", "data.skip_bad=true"), "train")
    assert kept.answer == "5"


def test_a_gold_answer_that_is_not_a_number_is_refused_under_answer_type_number(tmp_path):
    path = _write(tmp_path, "json", [{"question": "q1", "answer": "$1,000"}, {"question": "q2", "answer": "eighteen"}])
    with pytest.raises(DataError, match=r"record 1: gold answer 'eighteen' is not a number \(data.answer_type: number\)"):
        load_split(_cfg(path, "data.answer_type=number"), "train")
    # a worked solution is not a gold number either (answer_regex forgotten)
    with pytest.raises(DataError, match=r"line 1: gold answer 'Natalia sold"):
        load_split(_cfg(GSM8K_TRAIN, "data.answer_type=number"), "train")


def test_a_gold_label_outside_the_labels_is_refused(tmp_path):
    path = _write(tmp_path, "jsonl", [{"question": "q1", "answer": "maybe"}])
    with pytest.raises(DataError, match=r"line 1: gold answer 'maybe' is not one of data.labels \['yes', 'no'\]"):
        load_split(_cfg(path, "data.answer_type=label", "data.labels=[yes, no]"), "train")


@pytest.mark.parametrize("sets, key", [
    (["data.answer_regex=([unclosed"], "data.answer_regex: Value error, not a regular expression"),
    (["data.answer_regex=####.+"], "data.answer_regex: Value error, needs a group"),
    (["data.fields={question: q, answr: a}"], "data.fields: Value error, unknown field(s) ['answr']"),
    (["data.fields={rationale: answer}"], "set data.answer_regex"),
    (["data.labels=[a, b]"], "data.labels applies to answer_type: label"),
])
def test_bad_custom_settings_fail_at_config_time_naming_the_key(sets, key):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.dataset=custom", *sets])
    assert key in str(err.value)


def test_custom_keys_need_the_custom_dataset():
    with pytest.raises(ConfigError, match="data.fields applies to data.dataset: custom"):
        load_config(None, ["data.fields={question: q}"])


@pytest.mark.parametrize("records, sets, needles", [
    (RECORDS, ["data.fields={question: problem, answer: solution}"],
     ["column 'solution' (data.fields.answer) does not exist", "the columns are: uid, problem, final, why"]),
    ([{"question": "q1", "answer": "no marker"}], [r"data.answer_regex=####\s*(.+)$"],
     ["line 1: data.answer_regex", "matches no answer"]),
    ([{"question": "q1", "answer": "eighteen"}], ["data.answer_type=number"],
     ["line 1: gold answer 'eighteen' is not a number (data.answer_type: number)"]),
])
def test_cli_bad_data_is_one_line_before_any_call(oracle_server, tiny_causal_path, tmp_path, records, sets, needles):
    path = _write(tmp_path, "jsonl", records)
    before = len(oracle_server.requests)
    args = ["compile", "--out", tmp_path / "out", "--set", f"small_lm.model={tiny_causal_path}",
            "--set", "large_lm.model=openai/oracle", "--set", f"large_lm.api_base={oracle_server.url}",
            "--set", "data.dataset=custom", "--set", f"data.train={path}", "--set", f"cache_dir={tmp_path / 'c'}"]
    for s in sets:
        args += ["--set", s]
    from support.reliability import assert_one_line_error, invoke

    assert_one_line_error(invoke(args), str(path), *needles)
    assert len(oracle_server.requests) == before
    assert not (tmp_path / "out").exists()


def test_load_split_cuts_contexts_with_the_small_lms_tokenizer_by_default(tiny_causal_path):
    """One way to load a split (issue 20): the library default is the CLI's count, not the word approximation."""
    from lmcot.contexts import approx_token_count, context_token_counter
    from support.paths import HOTPOT

    cfg = load_config(None, [f"small_lm.model={tiny_causal_path}", f"data.dev={HOTPOT}", "data.dev_limit=6",
                             "data.max_context_tokens=120"])
    default = [ex.context for ex in load_split(cfg, "dev")]
    as_the_cli = [ex.context for ex in load_split(cfg, "dev", count_tokens=context_token_counter(cfg))]
    approximate = [ex.context for ex in load_split(cfg, "dev", count_tokens=approx_token_count)]
    assert default == as_the_cli
    assert default != approximate  # the two counts cut differently: the default must be the tokenizer's


def test_prepared_examples_keep_the_inputs_the_user_chose():
    import dspy

    from lmcot.custom_data import prepare_examples

    chosen = dspy.Example(question="Pick one", choices="a, b", answer="a").with_inputs("question", "choices")
    unset = dspy.Example(question="2 + 2?", answer="4")  # with_inputs never called
    plain = {"question": "3 + 4?", "context": "Numbers.", "answer": "7"}
    a, b, c = prepare_examples([chosen, unset, plain], "span", None, what="trainset")
    assert set(a.inputs().keys()) == {"question", "choices"} and a.id
    assert set(b.inputs().keys()) == {"question"} and b.context == ""
    assert set(c.inputs().keys()) == {"question", "context"}


@pytest.mark.parametrize("answer, needle", [(["Paris", "City of Paris"], "got list"), ("  ", "no answer"),
                                            (True, "got bool (write 'yes' / 'no')"), ({"a": 1}, "got dict")])
def test_prepared_examples_need_one_gold_answer_as_text(answer, needle):
    """The Python API refuses what the file loaders refuse: a list of golds was scored against its repr."""
    import dspy

    from lmcot.custom_data import prepare_examples

    with pytest.raises(DataError, match=re.escape(needle)) as err:
        prepare_examples([dspy.Example(question="Q?", answer="A"), dspy.Example(question="Where?", answer=answer)],
                         what="devset")
    assert str(err.value).startswith("devset[1]")
    from decimal import Decimal

    import numpy as np

    numeric = prepare_examples([dspy.Example(question=f"Q{i}?", answer=a)
                                for i, a in enumerate([18, np.int64(18), Decimal("2.5")])])
    assert [str(e.answer) for e in numeric] == ["18", "18", "2.5"]
