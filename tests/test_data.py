"""lmcot.data: loaders for HotpotQA / 2Wiki (real data slices), validation and truncation."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from lmcot.contexts import approx_token_count, format_context, truncate_paragraphs
from lmcot.data import DATASETS, DataError, derive_id, load_examples
from support.paths import HOTPOT, TWOWIKI



def _records(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"))


def _write_json(path: Path, records: Any) -> Path:
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def _to_hub(record: dict[str, Any]) -> dict[str, Any]:
    """An official record in the Hugging Face hotpot_qa column layout."""
    return {
        "id": record["_id"] or "",
        "question": record["question"],
        "answer": record["answer"],
        "type": record["type"],
        "level": record["level"],
        "supporting_facts": {
            "title": [t for t, _ in record["supporting_facts"]],
            "sent_id": [i for _, i in record["supporting_facts"]],
        },
        "context": {
            "title": [t for t, _ in record["context"]],
            "sentences": [s for _, s in record["context"]],
        },
    }


# ----------------------------------------------------------------------------- real fixtures


def test_load_hotpotqa_fixture() -> None:
    records = _records(HOTPOT)
    result = load_examples("hotpotqa", HOTPOT)
    assert len(result.examples) == len(records) == 44
    assert result.skipped == 0 and result.truncated == 0
    assert result.source == str(HOTPOT)

    first = result.examples[0]
    assert first.id == "5a8b57f25542995d1e6f1371"
    assert first.question == "Were Scott Derrickson and Ed Wood of the same nationality?"
    assert first.answer == "yes"
    assert first.type == "comparison"
    assert first.supporting_facts == [["Scott Derrickson", 0], ["Ed Wood", 0]]
    assert set(first.inputs().keys()) == {"question", "context"}
    assert set(first.labels().keys()) == {"id", "answer", "supporting_facts", "type", "paragraphs"}
    assert first.paragraphs == [[t, s] for t, s in records[0]["context"]]
    lines = first.context.split("\n")
    assert len(lines) == 10
    assert lines[0].startswith(
        "Ed Wood (film): Ed Wood is a 1994 American biographical period comedy-drama film directed"
    )
    assert "Tim Burton, and starring Johnny Depp as cult filmmaker Ed Wood. The film concerns" in lines[0]
    for ex in result.examples:
        assert ex.context == format_context(ex.paragraphs)


def test_null_ids_get_stable_distinct_ids() -> None:
    records = _records(HOTPOT)
    null_positions = [i for i, r in enumerate(records) if r["_id"] is None]
    assert len(null_positions) >= 3

    first = load_examples("hotpotqa", HOTPOT).examples
    second = load_examples("hotpotqa", HOTPOT).examples
    derived = [first[i].id for i in null_positions]
    assert derived == [second[i].id for i in null_positions]
    assert len(set(derived)) == len(derived)
    for i in null_positions:
        assert first[i].id == derive_id(records[i]["question"])
        assert first[i].id.startswith("q-") and len(first[i].id) == 18
    assert len({ex.id for ex in first}) == len(first)


def test_two_paragraph_record() -> None:
    ex = load_examples("hotpotqa", HOTPOT).examples[27]
    assert len(ex.paragraphs) == 2
    assert [t for t, _ in ex.paragraphs] == ["Dictyosperma", "Huernia"]
    assert ex.context.count("\n") == 1
    assert ex.answer == "yes"


def test_empty_sentence_leaves_no_double_space() -> None:
    examples = load_examples("hotpotqa", HOTPOT).examples
    ex, paragraph = next((e, p) for e in examples for p in e.paragraphs if "" in p[1])
    assert paragraph[0] == "1989 Houston Oilers season"  # a real record with an empty sentence
    assert "  " not in ex.context


def test_load_2wiki_fixture_keeps_yes_no() -> None:
    records = _records(TWOWIKI)
    result = load_examples("2wiki", TWOWIKI)
    assert len(result.examples) == len(records)
    first = result.examples[0]
    assert first.id == records[0]["_id"]
    assert first.answer == "Cork"
    assert first.type == "compositional"
    assert first.supporting_facts == records[0]["supporting_facts"]
    answers = [ex.answer for ex in result.examples]
    assert answers.count("yes") >= 2 and answers.count("no") >= 2
    types = {ex.type for ex in result.examples}
    assert types == {"compositional", "bridge_comparison", "comparison", "inference"}


def test_hotpot_yes_no_answers_kept() -> None:
    answers = [ex.answer for ex in load_examples("hotpotqa", HOTPOT).examples]
    assert answers.count("yes") + answers.count("no") == sum(
        r["answer"] in ("yes", "no") for r in _records(HOTPOT)
    )


def test_limit_takes_first_n() -> None:
    result = load_examples("hotpotqa", HOTPOT, limit=5)
    assert [ex.id for ex in result.examples] == [r["_id"] for r in _records(HOTPOT)[:5]]
    with pytest.raises(ValueError):
        load_examples("hotpotqa", HOTPOT, limit=0)


def test_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "2wiki.jsonl"
    lines = [json.dumps(r) for r in _records(TWOWIKI)]
    path.write_text("\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:]) + "\n", encoding="utf-8")
    from_jsonl = load_examples("2wiki", path).examples
    from_json = load_examples("2wiki", TWOWIKI).examples
    assert [e.toDict() for e in from_jsonl] == [e.toDict() for e in from_json]


def test_unknown_dataset() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'squad'"):
        load_examples("squad", HOTPOT)


# ----------------------------------------------------------------------------- formatting / truncation


PARAGRAPHS = [
    ["A", ["a0 x", " a1 x", " a2 x"]],
    ["B", ["b0 x"]],
    ["C", ["c0 x", " c1 x"]],
]


def _words(text: str) -> int:
    return len(text.split())


def test_format_context() -> None:
    assert format_context(PARAGRAPHS) == "A: a0 x a1 x a2 x\nB: b0 x\nC: c0 x c1 x"
    assert format_context([]) == ""


def test_approx_token_count() -> None:
    assert approx_token_count("") == 0
    assert approx_token_count("one two three") == 4  # ceil(3 * 1.3)


def test_truncation_round_robin_hand_worked() -> None:
    # Whole context is 17 words. Order: a0, b0, c0, a1, c1, a2.
    assert truncate_paragraphs(PARAGRAPHS, 17, _words) == PARAGRAPHS
    assert truncate_paragraphs(PARAGRAPHS, 9, _words) == [["A", ["a0 x"]], ["B", ["b0 x"]], ["C", ["c0 x"]]]
    assert truncate_paragraphs(PARAGRAPHS, 12, _words) == [
        ["A", ["a0 x", " a1 x"]],
        ["B", ["b0 x"]],
        ["C", ["c0 x"]],
    ]
    assert truncate_paragraphs(PARAGRAPHS, 14, _words) == [
        ["A", ["a0 x", " a1 x"]],
        ["B", ["b0 x"]],
        ["C", ["c0 x", " c1 x"]],
    ]
    # Paragraphs that got no sentence are dropped; nothing fits -> [].
    assert truncate_paragraphs(PARAGRAPHS, 3, _words) == [["A", ["a0 x"]]]
    assert truncate_paragraphs(PARAGRAPHS, 2, _words) == []
    assert PARAGRAPHS[0] == ["A", ["a0 x", " a1 x", " a2 x"]]  # input untouched


@pytest.mark.parametrize("budget", [20, 64, 150, 300, 700])
@pytest.mark.parametrize("counter", [None, len])
def test_truncation_real_contexts_within_budget_and_ordered(budget: int, counter: Any) -> None:
    count = counter or approx_token_count
    # The last 2Wiki fixture record repeats two paragraphs verbatim (real data): match by position.
    for record in _records(HOTPOT)[:15] + _records(TWOWIKI)[:10] + _records(TWOWIKI)[-4:]:
        paragraphs = [[t, s] for t, s in record["context"]]
        kept = truncate_paragraphs(paragraphs, budget, counter)
        assert count(format_context(kept)) <= budget
        assert kept == truncate_paragraphs(copy.deepcopy(paragraphs), budget, counter)  # deterministic
        # Walk the original in order: each kept paragraph is a later paragraph's sentence prefix.
        counts = [0] * len(paragraphs)
        start = 0
        for title, sents in kept:
            assert sents
            index = next(
                i for i in range(start, len(paragraphs))
                if paragraphs[i][0] == title and paragraphs[i][1][: len(sents)] == sents
            )
            counts[index], start = len(sents), index + 1
        # Round robin: when some paragraph has k sentences, every paragraph has at least k - 1
        # of its sentences (or all of them, if it has fewer).
        most = max(counts, default=0)
        for (_, sents), n in zip(paragraphs, counts):
            assert n >= min(len(sents), most - 1)


def test_loaded_contexts_fit_and_ignore_supporting_facts(tmp_path: Path) -> None:
    budget = 120
    result = load_examples("hotpotqa", HOTPOT, max_context_tokens=budget)
    assert result.truncated == len(result.examples)
    for ex in result.examples:
        assert approx_token_count(ex.context) <= budget
        assert ex.context == format_context(ex.paragraphs)

    # Move every supporting fact elsewhere (or drop them): contexts must not change.
    changed = _records(HOTPOT)
    for i, r in enumerate(changed):
        r["supporting_facts"] = [] if i % 2 else [[r["context"][-1][0], 0]]
    path = _write_json(tmp_path / "changed.json", changed)
    other = load_examples("hotpotqa", path, max_context_tokens=budget)
    assert [e.context for e in other.examples] == [e.context for e in result.examples]
    assert [e.paragraphs for e in other.examples] == [e.paragraphs for e in result.examples]


def test_custom_counter_is_used() -> None:
    calls: list[str] = []

    def count(text: str) -> int:
        calls.append(text)
        return len(text)

    ex = load_examples("2wiki", TWOWIKI, limit=1, max_context_tokens=300, count_tokens=count).examples[0]
    assert calls and len(ex.context) <= 300


# ----------------------------------------------------------------------------- malformed data


def _good() -> dict[str, Any]:
    return copy.deepcopy(_records(HOTPOT)[1])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.pop("question"), "field 'question' is missing"),
        (lambda r: r.update(question="  "), "field 'question' must be a non-empty string"),
        (lambda r: r.pop("answer"), "field 'answer' is missing"),
        (lambda r: r.update(answer=None), "field 'answer' must be a string"),
        (lambda r: r.pop("context"), "field 'context' is missing"),
        (lambda r: r.update(context="Ed Wood"), "field 'context' must be a list of [title, sentences]"),
        (lambda r: r.update(context=[]), "field 'context' is empty"),
        (
            lambda r: r["context"].__setitem__(2, ["Title only"]),
            "field 'context' must be a list of [title, sentences] (item 2 is not)",
        ),
        (
            lambda r: r["context"].__setitem__(0, ["T", "not a list"]),
            "field 'context' must be a list of [title, sentences] (item 0: sentences must be strings)",
        ),
        (
            lambda r: r.update(supporting_facts=[["T", "0"]]),
            "field 'supporting_facts' must be a list of [title, sent_idx]",
        ),
        (lambda r: r.update(type=3), "field 'type' must be a string"),
        (lambda r: r.update(_id=["x"]), "field '_id' must be a string"),
    ],
)
def test_malformed_record_message(tmp_path: Path, mutate: Any, message: str) -> None:
    records = [_good(), _good(), _good()]
    mutate(records[2])
    path = _write_json(tmp_path / "hotpot.json", records)
    with pytest.raises(DataError) as info:
        load_examples("hotpotqa", path)
    assert str(info.value) == f"{path}: record 2: {message}"
    assert "\n" not in str(info.value)


def test_record_not_an_object(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "hotpot.json", [_good(), ["not", "a", "record"]])
    with pytest.raises(DataError, match=r"hotpot\.json: record 1: must be a JSON object, got list$"):
        load_examples("hotpotqa", path)


def test_optional_fields_and_numeric_answer(tmp_path: Path) -> None:
    record = _good()
    del record["supporting_facts"], record["type"], record["_id"]
    record["answer"] = 1994
    ex = load_examples("hotpotqa", _write_json(tmp_path / "h.json", [record])).examples[0]
    assert (ex.answer, ex.supporting_facts, ex.type) == ("1994", [], "")
    assert ex.id == derive_id(record["question"])


def test_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[\n{"question": "q",\n "answer" "a"}\n]', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.json: invalid JSON at line 3, column 11: "):
        load_examples("hotpotqa", path)


def test_invalid_jsonl_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(_good()) + "\n{oops\n" + json.dumps(_good()) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"^.*data\.jsonl: line 2: invalid JSON \("):
        load_examples("hotpotqa", path)
    result = load_examples("hotpotqa", path, skip_bad=True)
    assert (len(result.examples), result.skipped) == (2, 1)


def test_not_a_list_and_missing_file(tmp_path: Path) -> None:
    path = _write_json(tmp_path / "obj.json", {"data": []})
    with pytest.raises(DataError, match="expected a JSON list of records, got dict"):
        load_examples("hotpotqa", path)
    with pytest.raises(DataError, match=r"nope\.json: no such file"):
        load_examples("hotpotqa", str(tmp_path / "nope.json"))


def test_skip_bad_counts_and_limit_counts_good_only(tmp_path: Path) -> None:
    records = [_good() for _ in range(6)]
    records[0].pop("question")
    records[3]["context"] = {"title": ["a"], "sentences": []}
    path = _write_json(tmp_path / "hotpot.json", records)
    result = load_examples("hotpotqa", path, skip_bad=True)
    assert (len(result.examples), result.skipped) == (4, 2)
    assert result.errors[0] == f"{path}: record 0: field 'question' is missing"
    limited = load_examples("hotpotqa", path, skip_bad=True, limit=2)
    assert (len(limited.examples), limited.skipped) == (2, 1)


def test_empty_result_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no usable examples"):
        load_examples("hotpotqa", _write_json(tmp_path / "empty.json", []))
    path = _write_json(tmp_path / "bad.json", [{"question": "q"}])
    with pytest.raises(DataError, match=r"no usable examples \(1 bad records skipped\)"):
        load_examples("hotpotqa", path, skip_bad=True)


# ----------------------------------------------------------------------------- hub path


def test_hub_split_hotpotqa(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    records = _records(HOTPOT)[:3] + [r for r in _records(HOTPOT) if r["_id"] is None][:1]
    calls: list[tuple[Any, ...]] = []

    def fake_load_dataset(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        return datasets.Dataset.from_list([_to_hub(r) for r in records])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    result = load_examples("hotpotqa", "validation[:4]")
    assert calls == [(("hotpotqa/hotpot_qa", "distractor"), {"split": "validation[:4]"})]
    assert result.source == "hotpotqa/hotpot_qa[validation[:4]]"

    from_file = load_examples("hotpotqa", HOTPOT).examples
    expected = from_file[:3] + [e for e in from_file if e.id.startswith("q-")][:1]
    assert [e.toDict() for e in result.examples] == [e.toDict() for e in expected]


def test_hub_split_2wiki_json_strings_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    records = _records(TWOWIKI)[:2]
    rows = [
        {
            "id": r["_id"],
            "question": r["question"],
            "answer": r["answer"],
            "type": r["type"],
            "supporting_facts": json.dumps(r["supporting_facts"]),
            "context": json.dumps(r["context"]),
            "evidences": json.dumps(r["evidences"]),
        }
        for r in records
    ]
    calls: list[tuple[Any, ...]] = []

    def fake_load_dataset(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    result = load_examples("2wiki", "train", hub_id="someone/2wiki-copy")
    assert calls == [(("someone/2wiki-copy",), {"split": "train"})]
    expected = load_examples("2wiki", TWOWIKI, limit=2).examples
    assert [e.toDict() for e in result.examples] == [e.toDict() for e in expected]
    assert DATASETS["2wiki"]["hub_config"] is None


def test_hub_failure_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")

    def offline(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("hub unreachable")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"^hotpotqa/hotpot_qa \(split 'validation'\): could not load"):
        load_examples("hotpotqa", "validation")


def test_jsonl_field_error_names_line_and_raw_line_separator(tmp_path: Path) -> None:
    odd = _good()
    odd["question"] += "\u2028"  # legal raw inside a JSON string; must not split the line
    bad = _good()
    bad.pop("answer")
    path = tmp_path / "h.jsonl"
    text = "\n".join(json.dumps(r, ensure_ascii=False) for r in (odd, bad)) + "\n"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_examples("hotpotqa", path)
    assert str(info.value) == f"{path}: line 2: field 'answer' is missing"
    result = load_examples("hotpotqa", path, skip_bad=True)
    assert result.examples[0].question.endswith("\u2028") and result.skipped == 1


def test_unknown_extension_is_sniffed_and_non_utf8_rejected(tmp_path: Path) -> None:
    as_list = _write_json(tmp_path / "data.txt", [_good()])
    assert len(load_examples("hotpotqa", as_list).examples) == 1
    as_lines = tmp_path / "data.ndjson"
    as_lines.write_text(json.dumps(_good()) + "\n", encoding="utf-8")
    assert len(load_examples("hotpotqa", as_lines).examples) == 1
    latin = tmp_path / "latin.json"
    latin.write_bytes('[{"question": "caf\u00e9"}]'.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.json: not UTF-8 text"):
        load_examples("hotpotqa", latin)
