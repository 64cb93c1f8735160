"""Any question-answer task in the user's own layout (``data.dataset: custom``) -> ``dspy.Example``.

    result = load_custom(config.data, "configs/gsm8k/train.jsonl")
    result.examples[0]   # Example(id=..., question=..., answer="72", rationale="Natalia sold ...", context="")

Sources: a JSONL, JSON (a list of objects), CSV or Parquet file (by extension), or a split of a hub
dataset (``data.hub_id``, ``data.hub_config``; the source is the split, e.g. ``train[:100]``) read with
``datasets.load_dataset``. ``data.fields`` maps lmcot's names (``id``, ``question``, ``context``,
``answer``, ``rationale``) to the columns; an unmapped name uses the column of the same name when there is
one. Only ``question`` and ``answer`` are required; a missing id is derived from the question.

A context may be a string, a list of strings (passages, one per line) or HotpotQA's ``[[title,
[sentences]]]`` (formatted and cut as the built-in loaders do); no context (no column, or an empty
value) gives ``context=""`` and the prompts leave the field out. ``data.answer_regex``: the answer is
the regex's first group inside the answer column; when ``fields.rationale`` names the same column, the
rationale is the text before the match (GSM8K's ``"...steps...\\n#### 18"``).

Bad input is one line naming the source, the record and the field: a mapped column that does not exist
(with the columns that do), a regex that matches no answer, a gold answer its answer type cannot score.
"""

from __future__ import annotations

import csv
import io
import json
import numbers
import re
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import dspy

from lmcot.answer_text import gold_problem
from lmcot.contexts import approx_token_count, format_context, truncate_paragraphs, truncate_text
from lmcot.data import (DataError, LoadResult, _collect_examples, _paragraphs, _read_json, _read_jsonl, _read_text,
                        _RecordError, _supporting_facts, derive_id)

__all__ = ["FILE_SUFFIXES", "load_custom", "prepare_examples"]

FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
_REQUIRED = ("question", "answer")


# --------------------------------------------------------------------------- sources


def _read_csv(path: Path) -> tuple[list[str], Iterator[tuple[str, Any]]]:
    # The stdlib reader: values stay the exact strings of the file (pandas would turn "007" into 7).
    # newline="" as the csv module asks: a quoted field keeps its line breaks, and U+2028 or a form
    # feed inside a value is no row break (``str.splitlines`` broke rows at both).
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    columns = list(reader.fieldnames or [])

    def rows():
        for i, row in enumerate(reader):
            yield f"row {i + 1}", dict(row)

    return columns, rows()


def _read_parquet(path: Path) -> tuple[list[str], Iterator[tuple[str, Any]]]:
    import pyarrow.parquet as pq  # installed with datasets

    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file: one line, not a traceback
        raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from exc
    return list(table.column_names), ((f"record {i}", r) for i, r in enumerate(table.to_pylist()))


def _read_file(path: Path) -> tuple[list[str] | None, Iterator[tuple[str, Any]]]:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_csv(path)
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix not in (".json", ".jsonl"):  # no known extension: a JSON list starts with "[", JSONL with "{"
        with path.open(encoding="utf-8", errors="replace") as f:
            suffix = ".json" if f.read(4096).lstrip()[:1] == "[" else ".jsonl"
    return None, (_read_json(path) if suffix == ".json" else _read_jsonl(path))


def _read_hub(hub_id: str, hub_config: str | None, split: str) -> tuple[list[str], Iterator[tuple[str, Any]]]:
    import datasets  # heavy: only when a hub split is asked for

    args = (hub_id, hub_config) if hub_config else (hub_id,)
    try:
        ds = datasets.load_dataset(*args, split=split)
    except Exception as e:  # offline, unknown split, ...: one clear line instead of a traceback
        raise DataError(f"{hub_id} (split {split!r}): could not load with datasets.load_dataset "
                        f"({type(e).__name__}: {e}); pass a local file instead") from e
    return list(ds.column_names), ((f"record {i}", r) for i, r in enumerate(ds))


def _is_file(source: str) -> bool:
    return Path(source).exists() or source.lower().endswith(FILE_SUFFIXES)


# --------------------------------------------------------------------------- context


def _context(value: Any, max_tokens: int | None, count: Callable[[str], int] | None,
             memo: MutableMapping[str, int] | None) -> tuple[str, list | None, bool]:
    """(context text, paragraphs when HotpotQA-shaped, whether it was cut)."""
    if value is None or value == "" or value == []:
        return "", None, False
    if isinstance(value, str) and value.lstrip()[:1] == "[":
        try:
            value = json.loads(value)  # a CSV / Parquet cell holding a JSON list
        except json.JSONDecodeError:
            pass
    if isinstance(value, list) and all(isinstance(p, str) for p in value):
        value = "\n".join(p.strip() for p in value if p.strip())
    if isinstance(value, str):
        text = value.strip()
        if max_tokens is None or not text:
            return text, None, False
        cut = truncate_text(text, max_tokens, count or approx_token_count, memo)
        return cut, None, cut != text
    paragraphs = _paragraphs(value)  # [[title, [sentences]]] (or the hub's columns): its own checks
    kept = paragraphs if max_tokens is None else truncate_paragraphs(paragraphs, max_tokens, count, memo=memo)
    return format_context(kept), kept, kept != paragraphs


# --------------------------------------------------------------------------- records


class _Mapping:
    """Which column holds each of lmcot's fields, checked against the columns the source has."""

    def __init__(self, data: Any, origin: str):
        self.fields, self.origin, self.columns = dict(data.fields), origin, None

    def check(self, columns: list[str], where: str) -> None:
        """Every mapped and every required column exists (once, on the source's columns or first record)."""
        self.columns = list(columns)
        have = ", ".join(map(str, columns)) or "(none)"
        for name in ("id", "question", "context", "answer", "rationale"):
            column = self.fields.get(name)
            if column is not None and column not in columns:
                raise DataError(f"{self.origin}: {where}: column {column!r} (data.fields.{name}) does not exist; "
                                f"the columns are: {have}")
            if column is None and name in _REQUIRED and name not in columns:
                raise DataError(f"{self.origin}: {where}: no column {name!r}; map it with data.fields.{name} "
                                f"(the columns are: {have})")

    def column(self, name: str, record: dict | None = None) -> str | None:
        """The column of ``name``, or None when the record has none (only optional fields): the mapped
        column, else the column of the same name (``_id`` for ``id``, as in HotpotQA's files)."""
        if name in self.fields:
            return self.fields[name]
        have = record if record is not None else (self.columns or [])
        if name == "id" and "id" not in have and "_id" in have:
            return "_id"
        return name if name in have or name in _REQUIRED else None


def _text(record: dict, column: str, name: str, *, required: bool) -> str | None:
    value = record.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _RecordError(f"column {column!r} (data.fields.{name}) is empty")
        return None
    if isinstance(value, bool):  # BoolQ-style true/false answers are the labels yes / no
        return "yes" if value else "no"
    if not isinstance(value, (str, int, float)):
        raise _RecordError(f"column {column!r} (data.fields.{name}) must be text, got {type(value).__name__}")
    return str(value).strip()


def _to_example(record: Any, mapping: _Mapping, data: Any, regex: re.Pattern | None,
                max_tokens: int | None, count: Callable[[str], int] | None,
                memo: MutableMapping[str, int] | None) -> tuple[dspy.Example, bool]:
    if not isinstance(record, dict):
        raise _RecordError(f"must be an object, got {type(record).__name__}")
    missing = [c for c in (mapping.column(n) for n in _REQUIRED) if c not in record]
    if missing:
        raise _RecordError(f"column {missing[0]!r} is missing")
    question = _text(record, mapping.column("question"), "question", required=True)
    answer_column = mapping.column("answer")
    answer = _text(record, answer_column, "answer", required=True)
    rationale_column = mapping.column("rationale", record)
    rationale = _text(record, rationale_column, "rationale", required=False) if rationale_column else None
    if regex is not None:
        match = regex.search(answer)
        if match is None or not (match.group(1) or "").strip():
            raise _RecordError(f"data.answer_regex {regex.pattern!r} matches no answer in column {answer_column!r} "
                               f"({answer[-60:]!r})")
        if rationale_column == answer_column:
            rationale = answer[: match.start()].strip() or None
        answer = match.group(1).strip()
    problem = gold_problem(answer, data.answer_type, data.labels)
    if problem:
        raise _RecordError(problem)
    id_column = mapping.column("id", record)
    raw_id = record.get(id_column) if id_column else None
    example_id = derive_id(question) if raw_id is None or raw_id == "" else str(raw_id)
    context_column = mapping.column("context", record)
    try:
        context, paragraphs, cut = _context(record.get(context_column) if context_column else None,
                                            max_tokens, count, memo)
    except _RecordError as e:
        raise _RecordError(f"{e} (data.fields.context: a string, a list of strings or [[title, [sentences]]])"
                           ) from None
    fields: dict[str, Any] = {"id": example_id, "question": question, "context": context, "answer": answer}
    if rationale:
        fields["rationale"] = rationale
    if paragraphs is not None:
        fields.update(paragraphs=paragraphs, supporting_facts=_supporting_facts(record.get("supporting_facts")))
    example = dspy.Example(**fields).with_inputs(*(("question", "context") if context else ("question",)))
    return example, cut


def load_custom(data: Any, source: str | Path, *, limit: int | None = None, skip_bad: bool = False,
                max_context_tokens: int | None = None, count_tokens: Callable[[str], int] | None = None,
                truncation_memo: MutableMapping[str, int] | None = None) -> LoadResult:
    """Examples of a custom task from ``source`` as ``data`` (a ``DataConfig``) describes it (module docstring)."""
    if limit is not None and limit < 1:
        raise DataError(f"limit must be a positive number of examples, got {limit}")
    source = str(source)
    if _is_file(source):
        origin = source
        columns, items = _read_file(Path(source))
    else:
        if not data.hub_id:
            raise DataError(f"{source}: no such file; for a split of a hub dataset set data.hub_id (and "
                            "data.hub_config)")
        origin = f"{data.hub_id}[{source}]"
        columns, items = _read_hub(data.hub_id, data.hub_config, source)
    mapping = _Mapping(data, origin)
    if columns is not None:
        mapping.check(columns, "columns")
    regex = re.compile(data.answer_regex, re.MULTILINE) if data.answer_regex else None
    return _collect_examples(
        _columns_checked(items, mapping), origin,
        lambda record: _to_example(record, mapping, data, regex, max_context_tokens, count_tokens, truncation_memo),
        limit=limit, skip_bad=skip_bad)


def _columns_checked(items: Iterator[tuple[str, Any]], mapping: _Mapping) -> Iterator[tuple[str, Any]]:
    """``items``, the first record's keys checked as the columns when the source had none (JSON / JSONL).
    A missing column is the source's fault, not a record's: it raises even with skip_bad."""
    for where, record in items:
        if mapping.columns is None and isinstance(record, dict):
            mapping.check(list(record), where)
        yield where, record


def prepare_examples(examples: list[Any], answer_type: str = "span", labels: Any = None,
                     what: str = "trainset") -> list[dspy.Example]:
    """Examples as the compiler and the evaluation loop use them, from any ``dspy.Example`` list (the
    Python API needs no data section): each has an ``id`` (derived from the question when missing) and a
    ``context`` (``""`` when the task has none), and its gold answer is one its answer type can score.
    Examples that already have both are returned as they are (same objects)."""
    out = []
    for i, ex in enumerate(examples):
        get = ex.get if hasattr(ex, "get") else (lambda k, d=None: getattr(ex, k, d))
        question, answer = get("question"), get("answer")
        if not isinstance(question, str) or not question.strip():
            raise DataError(f"{what}[{i}]: no question (each example needs question= and answer=)")
        if answer is None or (isinstance(answer, str) and not answer.strip()):
            raise DataError(f"{what}[{i}]: no answer (each example needs question= and answer=)")
        if isinstance(answer, bool) or not isinstance(answer, (str, numbers.Number)):  # numpy ints and Decimals too
            # as the file loaders: one gold answer, as text (a list would be scored as its repr)
            raise DataError(f"{what}[{i}] (id {get('id')!r}): answer must be one gold answer as text, got "
                            f"{type(answer).__name__}" + (" (write 'yes' / 'no')" if isinstance(answer, bool) else ""))
        problem = gold_problem(str(answer), answer_type, labels)
        if problem:
            raise DataError(f"{what}[{i}] (id {get('id')!r}): {problem}")
        if get("id") not in (None, "") and get("context") is not None and isinstance(ex, dspy.Example):
            out.append(ex)
            continue
        fields = dict(ex.toDict() if hasattr(ex, "toDict") else ex)
        fields["id"] = str(fields.get("id") or derive_id(question))
        fields["context"] = fields.get("context") or ""
        inputs = [k for k in _input_keys(ex) or ("question", "context") if k in fields]
        if fields["context"] and "context" not in inputs:
            inputs.append("context")
        if not fields["context"]:
            inputs = [k for k in inputs if k != "context"]
        out.append(dspy.Example(**fields).with_inputs(*inputs))
    return out


def _input_keys(ex: Any) -> list[str]:
    """The input fields a ``dspy.Example`` was given (``with_inputs``); none for a dict or an Example without."""
    if not isinstance(ex, dspy.Example):
        return []
    try:
        return list(ex.inputs().keys())
    except ValueError:  # with_inputs was never called
        return []
