"""HotpotQA and 2WikiMultihopQA loaders: official JSON/JSONL files or hub splits -> ``dspy.Example``.

    result = load_examples("hotpotqa", "data/hotpot_dev_distractor_v1.json", limit=200)
    result = load_examples("2wiki", "validation", max_context_tokens=1024, count_tokens=tok_len)
    result.examples[0].context   # "Title A: sent sent ...\\nTitle B: ..."

Both benchmarks are read from either layout they are published in:

* the official files: a record is ``{_id, question, answer, type, supporting_facts: [[title, i]],
  context: [[title, [sentences]]], ...}``;
* the Hugging Face hub columns: ``id``, ``supporting_facts: {title: [...], sent_id: [...]}``,
  ``context: {title: [...], sentences: [[...]]}``; some 2Wiki hub copies store those fields as
  JSON-encoded strings, which are decoded.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy

from lmcot.contexts import Paragraph, format_context, truncate_paragraphs
from lmcot.errors import UserError

__all__ = ["DATASETS", "DataError", "LoadResult", "derive_id", "load_examples"]

log = logging.getLogger(__name__)

# Hub locations; ``load_examples(..., hub_id=...)`` overrides the repository.
DATASETS: dict[str, dict[str, str | None]] = {
    "hotpotqa": {"hub_id": "hotpotqa/hotpot_qa", "hub_config": "distractor"},
    "2wiki": {"hub_id": "framolfese/2WikiMultihopQA", "hub_config": None},
}


class DataError(UserError, ValueError):
    """Unusable data; the one-line message names the source, the record (or line) and the field."""


class _RecordError(Exception):
    """A problem inside one record; the loader adds the source and the record's position."""


def _field_error(field_name: str, problem: str) -> _RecordError:
    return _RecordError(f"field '{field_name}' {problem}")


@dataclass
class LoadResult:
    """What :func:`load_examples` read: the examples and how many bad records were skipped."""

    examples: list[dspy.Example]
    skipped: int = 0
    source: str = ""
    truncated: int = 0  # examples whose context was shortened to fit max_context_tokens
    errors: list[str] = field(default_factory=list)  # messages of the skipped records

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[dspy.Example]:
        return iter(self.examples)


# --------------------------------------------------------------------------- record normalisation


def derive_id(question: str) -> str:
    """Stable id for a record whose id is missing: ``"q-" + sha1(question)[:16]``."""
    return "q-" + hashlib.sha1(question.encode("utf-8")).hexdigest()[:16]


def _maybe_json(value: Any) -> Any:
    # Some hub copies of 2Wiki store nested fields as JSON text.
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass  # left as text; the field check reports it
    return value


def _columns_to_rows(value: dict[str, Any], keys: tuple[str, ...], field_name: str, shape: str) -> list[Any]:
    """Hub layout ``{"title": [...], "<other>": [...]}`` -> official ``[[title, other], ...]``."""
    titles = value.get("title")
    other = next((value[k] for k in keys if k in value), None)
    if not isinstance(titles, list) or not isinstance(other, list) or len(titles) != len(other):
        raise _field_error(field_name, f"must be a list of {shape}")
    return [[t, o] for t, o in zip(titles, other)]


def _paragraphs(value: Any) -> list[Paragraph]:
    shape = "[title, sentences]"
    value = _maybe_json(value)
    if isinstance(value, dict):
        value = _columns_to_rows(value, ("sentences", "content"), "context", shape)
    if not isinstance(value, list):
        raise _field_error("context", f"must be a list of {shape}")
    if not value:
        raise _field_error("context", "is empty")
    paragraphs: list[Paragraph] = []
    for i, item in enumerate(value):
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)):
            raise _field_error("context", f"must be a list of {shape} (item {i} is not)")
        title, sentences = item
        if not isinstance(sentences, (list, tuple)) or not all(isinstance(s, str) for s in sentences):
            raise _field_error("context", f"must be a list of {shape} (item {i}: sentences must be strings)")
        paragraphs.append([title, list(sentences)])
    return paragraphs


def _supporting_facts(value: Any) -> list[list[Any]]:
    shape = "[title, sent_idx]"
    value = _maybe_json(value)
    if value is None:
        return []
    if isinstance(value, dict):
        value = _columns_to_rows(value, ("sent_id",), "supporting_facts", shape)
    if not isinstance(value, list):
        raise _field_error("supporting_facts", f"must be a list of {shape}")
    facts = []
    for item in value:
        ok = isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)
        if not ok or isinstance(item[1], bool) or not isinstance(item[1], int):
            raise _field_error("supporting_facts", f"must be a list of {shape}")
        facts.append([item[0], item[1]])
    return facts


def _record_to_example(
    record: Any,
    max_context_tokens: int | None,
    count_tokens: Callable[[str], int] | None,
    truncation_memo: MutableMapping[str, int] | None = None,
) -> tuple[dspy.Example, bool]:
    """Validate one record (official or hub layout); returns the example and whether it was cut."""
    if not isinstance(record, dict):
        raise _RecordError(f"must be a JSON object, got {type(record).__name__}")

    if "question" not in record:
        raise _field_error("question", "is missing")
    question = record["question"]
    if not isinstance(question, str) or not question.strip():
        raise _field_error("question", "must be a non-empty string")

    if "answer" not in record:
        raise _field_error("answer", "is missing")
    answer = record["answer"]
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    if not isinstance(answer, str):
        raise _field_error("answer", "must be a string")

    if "context" not in record:
        raise _field_error("context", "is missing")
    paragraphs = _paragraphs(record["context"])
    supporting_facts = _supporting_facts(record.get("supporting_facts"))

    qtype = "" if record.get("type") is None else record["type"]
    if not isinstance(qtype, str):
        raise _field_error("type", "must be a string")

    id_field = "_id" if "_id" in record else "id"
    raw_id = record.get(id_field)
    if raw_id is None or raw_id == "":
        # 37 real HotpotQA dev records carry "_id": null; derive a stable id instead.
        example_id = derive_id(question)
    elif isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool):
        example_id = str(raw_id)
    else:
        raise _field_error(id_field, "must be a string")

    kept = paragraphs
    if max_context_tokens is not None:
        kept = truncate_paragraphs(paragraphs, max_context_tokens, count_tokens, memo=truncation_memo)

    example = dspy.Example(
        id=example_id,
        question=question,
        context=format_context(kept),
        answer=answer,
        supporting_facts=supporting_facts,
        type=qtype,
        paragraphs=kept,
    ).with_inputs("question", "context")
    return example, kept != paragraphs


# --------------------------------------------------------------------------- sources

# Sources yield (where, record), where = "record 17" / "line 18"; the record is a DataError
# for a JSONL line that is not valid JSON, so that skip_bad can count it.
_Item = tuple[str, Any]


def _read_text(path: Path) -> str:
    try:
        # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8", Notepad) is dropped, not read into the
        # first column's name or the first JSON value; a file without one reads as plain UTF-8.
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e


def _read_json(path: Path) -> Iterator[_Item]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    for i, record in enumerate(data):
        yield f"record {i}", record


def _read_jsonl(path: Path) -> Iterator[_Item]:
    from lmcot.jsonl import parse_jsonl

    for lineno, value, error in parse_jsonl(_read_text(path)):
        yield f"line {lineno}", DataError(f"{path}: line {lineno}: {error}") if error else value


def _read_file(path: Path) -> Iterator[_Item]:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in (".json", ".jsonl"):
        # Unknown extension: a JSON list starts with "[", JSONL with "{".
        with path.open(encoding="utf-8", errors="replace") as f:
            suffix = ".json" if f.read(4096).lstrip()[:1] == "[" else ".jsonl"
    return _read_json(path) if suffix == ".json" else _read_jsonl(path)


def _read_hub(hub_id: str, hub_config: str | None, split: str) -> Iterator[_Item]:
    import datasets  # heavy (pyarrow, fsspec): only when a hub split is asked for

    args = (hub_id, hub_config) if hub_config else (hub_id,)
    try:
        ds = datasets.load_dataset(*args, split=split)
    except Exception as e:  # offline, unknown split, ...: one clear line instead of a traceback
        raise DataError(
            f"{hub_id} (split {split!r}): could not load from the Hugging Face hub "
            f"({type(e).__name__}: {e}); pass a local .json/.jsonl file instead"
        ) from e
    for i, record in enumerate(ds):
        yield f"record {i}", record


def _is_file_source(source: str) -> bool:
    return Path(source).exists() or source.lower().endswith((".json", ".jsonl"))


def _collect_examples(items: Iterable[_Item], origin: str, to_example: Callable[[Any], tuple[dspy.Example, int]],
                      *, limit: int | None, skip_bad: bool) -> LoadResult:
    """The examples ``to_example`` makes of ``items`` (each returns the example and the contexts it cut), the
    first ``limit`` good ones; a bad record raises, or with ``skip_bad`` is counted and logged. Every
    dataset kind (built-in and custom) loads through here, so skipping and its messages are the same."""
    result = LoadResult(examples=[], source=origin)
    for where, record in items:
        if limit is not None and len(result.examples) >= limit:
            break
        try:
            if isinstance(record, DataError):
                raise record
            try:
                example, cut = to_example(record)
            except _RecordError as e:
                raise DataError(f"{origin}: {where}: {e}") from None
        except DataError as e:
            if not skip_bad:
                raise
            log.warning("skipping bad record: %s", e)
            result.skipped += 1
            result.errors.append(str(e))
            continue
        result.examples.append(example)
        result.truncated += cut

    if not result.examples:
        detail = f" ({result.skipped} bad records skipped)" if result.skipped else ""
        raise DataError(f"{origin}: no usable examples{detail}")
    return result


def load_examples(
    dataset: str,
    source: str | Path,
    *,
    limit: int | None = None,
    skip_bad: bool = False,
    max_context_tokens: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
    hub_id: str | None = None,
    truncation_memo: MutableMapping[str, int] | None = None,
) -> LoadResult:
    """Load HotpotQA (``"hotpotqa"``) or 2WikiMultihopQA (``"2wiki"``) examples.

    ``source`` is a local file when it exists or ends in ``.json`` (a list of records) or
    ``.jsonl`` (one record per line); anything else is a hub split such as ``"validation"`` or
    ``"train[:100]"``, read with ``datasets.load_dataset(hub_id, hub_config, split=source)``.

    ``limit`` keeps the first N good examples (records after that are not read). With
    ``skip_bad`` malformed records are skipped and counted in ``.skipped``; otherwise the first
    one raises :class:`DataError`. ``max_context_tokens`` truncates each context with
    :func:`lmcot.contexts.truncate_paragraphs`, counting with ``count_tokens`` (default: the approximate
    :func:`lmcot.contexts.approx_token_count`)
    and remembering the cut in ``truncation_memo`` (one per tokenizer).
    Positions in messages are 0-based record indices for JSON and hub data, 1-based lines for JSONL.
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {sorted(DATASETS)}")
    if limit is not None and limit < 1:
        raise DataError(f"limit must be a positive number of examples, got {limit}")
    source = str(source)

    items: Iterator[_Item]
    if _is_file_source(source):
        origin = source
        items = _read_file(Path(source))
    else:
        repo = hub_id or str(DATASETS[dataset]["hub_id"])
        origin = f"{repo}[{source}]"
        items = _read_hub(repo, DATASETS[dataset]["hub_config"], source)

    return _collect_examples(
        items, origin, lambda record: _record_to_example(record, max_context_tokens, count_tokens, truncation_memo),
        limit=limit, skip_bad=skip_bad)
