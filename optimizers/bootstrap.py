"""Teacher rationales for KD: ``kd.num_samples`` chain-of-thought samples per training question,
written to ``out_dir/traces.jsonl`` as they arrive, then filtered by answer correctness.

    result = bootstrap_traces(trainset, teacher_lm, cfg.kd, OUT / "kd")
    result.kept      # rows to distil: id, sample, question, context, rationale, answer, em, f1, ...
    result.summary   # also in OUT/kd/summary.json

Each sample is one ``dspy.ChainOfThought(AnswerDirectly)`` call on the teacher (``reasoning`` is the
rationale) at ``kd.temperature`` with ``rollout_id=sample``, so DSPy's disk cache keeps the samples
apart. Calls run on ``kd.concurrency`` threads.

Crash safety and cost: every finished sample is appended (flushed, fsynced) to ``traces.jsonl`` at
once. A rerun reads the file (cutting a torn last line), skips the (id, sample) pairs it holds and
asks the teacher only for the rest, so no paid call is repeated. A reply that cannot be parsed is
asked again (``lmcot.reply_cache``: at most 3 tries, the bad replies never cached); if every try
fails it is, like a transient error (rate limit, 5xx, timeout) that survives the teacher's retries
(``lmcot.http_lm.HttpLM``'s loop, the one layer that retries transport errors), *not* recorded, so
the next run tries it again; both are counted
in the summary. Only a reply cut off at ``max_tokens`` (a config problem), a prompt too long for
the teacher, or an unparsable reply of an in-process teacher decoding greedily (it would write the
same again) is recorded as a failed sample (``ok: false``). Parse failures recorded by older
versions are redone on resume.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy

from lmcot.config import KDConfig
from lmcot.jsonl import append_jsonl, read_jsonl, write_json
from lmcot.parallel import map_concurrently

log = logging.getLogger(__name__)

TRACES = "traces.jsonl"
SUMMARY = "summary.json"


@dataclass
class BootstrapResult:
    """What :func:`bootstrap_traces` produced: the kept rows (trainset order, with ``context``)
    and the summary written to ``summary.json``."""

    kept: list[dict[str, Any]]
    summary: dict[str, Any]
    traces_path: Path
    traces: list[dict[str, Any]] = field(default_factory=list, repr=False)
    transient: list[str] = field(default_factory=list, repr=False)  # errors of the samples not recorded


class _Transient(Exception):
    """A sample that failed with a transient error on every try (left out of the traces)."""


def select_kept(traces: list[dict[str, Any]], kd: KDConfig) -> list[dict[str, Any]]:
    """The samples to distil. A sample passes when it parsed, has a rationale and its
    ``kd.keep_metric`` (``em`` or ``f1`` against the gold answer under the task's answer type, or
    ``metric``, the user metric) is >= ``kd.min_score``.
    ``kd.keep == "best"``: one per question, the highest metric (with ``keep_metric: metric``), f1, then
    em, then the lowest sample index;
    ``"all"``: every passing sample. Sorted by (id, sample): independent of arrival order."""
    passing = [t for t in traces
               if t.get("ok") and str(t.get("rationale") or "").strip()
               and float(t.get(kd.keep_metric) or 0.0) >= kd.min_score]
    if kd.keep == "all":
        return sorted(passing, key=lambda t: (str(t["id"]), int(t["sample"])))
    def rank(t: dict[str, Any]) -> tuple:
        # With a user metric, its score decides first; then f1, em and the lowest sample index.
        first = (-float(t.get("metric") or 0.0),) if kd.keep_metric == "metric" else ()
        return (*first, -float(t.get("f1") or 0.0), -float(t.get("em") or 0.0), int(t["sample"]))

    best: dict[str, dict[str, Any]] = {}
    for t in passing:
        cur = best.get(str(t["id"]))
        if cur is None or rank(t) < rank(cur):
            best[str(t["id"])] = t
    return [best[k] for k in sorted(best)]


def _sample_config(kd: KDConfig, sample: int) -> dict[str, Any]:
    config: dict[str, Any] = {"temperature": kd.temperature}
    if kd.temperature > 0:  # DSPy ignores (and warns about) rollout_id at temperature 0
        config["rollout_id"] = sample
    return config


def _usage_of(history: list[dict[str, Any]], model: str) -> tuple[dict[str, int], Any, int, int]:
    """(tokens, cost, paid calls, cached calls) of one sample, by lmcot.usage's one rule: a call
    answered from the cache counts the tokens it used when paid; cost is litellm's list price of the
    tokens (None when it has none). The predictor's own history holds this sample's calls only
    (whatever other threads do), those whose answer failed to parse included."""
    from lmcot.usage import current_ledger, meter_entries

    part = meter_entries(history, model, ledger=current_ledger())
    tokens = {"prompt": part["prompt_tokens"], "completion": part["completion_tokens"]}
    return tokens, part["cost"], part["calls"] - part["cached_calls"], part["cached_calls"]


def _answer_adapter_for(lm):
    from lmcot.programs.answer_adapter import answer_adapter_for

    return answer_adapter_for(lm)


def teacher_sample(example: Any, sample: int, teacher_lm: dspy.LM, kd: KDConfig, *, task: Any = None) -> dict[str, Any]:
    """One teacher sample for one question -> a trace row (``ok: false`` with ``error`` when the
    answer cannot be parsed or the prompt is too long for the teacher). Transport errors of an HTTP
    teacher are retried in one layer, ``lmcot.http_lm.HttpLM``'s loop (``kd.teacher.num_retries`` with
    DSPy's backoff schedule, within ``kd.teacher.total_timeout``; DSPy's own retries are off and a
    list of servers only fails over); one that survives them is raised as ``_Transient`` (not
    recorded: the next run asks again). Other errors (authentication, billing, an unknown model, an
    unreachable host or a spent ``total_timeout``: ``EndpointError``, bugs) propagate and stop the run:
    they would fail every sample, and recording them would poison the resume."""
    from dspy.utils.exceptions import AdapterParseError, ContextWindowExceededError, is_retryable_lm_error

    from lmcot.programs.signatures import AnswerDirectly, context_inputs
    from lmcot.reply_cache import attempts_for, parsed_reply
    from lmcot.usage import hit_max_tokens

    gold = str(example.answer)
    row: dict[str, Any] = {"id": str(example.id), "sample": sample, "question": example.question}
    predictor = dspy.ChainOfThought(AnswerDirectly)  # fresh: its history is this call only
    error: Exception | None = None
    pred = None
    try:
        # The ChatAdapter (with its JSON fallback) is named so a globally configured
        # adapter, e.g. the small LM's RationaleAdapter, cannot leak into teacher calls; an
        # in-process teacher gets the plain prompt it can follow (PlainAnswerAdapter).
        adapter = _answer_adapter_for(teacher_lm) or dspy.ChatAdapter()
        with dspy.context(lm=teacher_lm, adapter=adapter):
            inputs = context_inputs(predictor.predict.signature, example.question, example.get("context"),
                                    config=_sample_config(kd, sample))
            pred = parsed_reply(lambda: predictor(**inputs),
                                what=f"teacher reply for {row['id']} sample {sample}",
                                attempts=attempts_for(teacher_lm, kd.temperature))
    except (AdapterParseError, ContextWindowExceededError) as exc:
        # Properties of this question's answer or prompt: record them, do not ask again.
        error = exc
    except Exception as exc:
        if not is_retryable_lm_error(exc):
            raise
        raise _Transient(f"{type(exc).__name__}: {exc}") from exc
    tokens, cost, calls, cached = _usage_of(predictor.history, teacher_lm.model)
    if pred is not None:
        rationale, answer = str(pred.reasoning or "").strip(), str(pred.answer or "").strip()
        row.update(rationale=rationale, answer=answer, gold=gold, **_scores(task, answer, example, rationale),
                   ok=True, error=None)
    else:
        from lmcot.redact import redact

        message = redact(f"{type(error).__name__}: " + " ".join(str(error).split())[:500])
        if hit_max_tokens(predictor.history):
            limit = teacher_lm.kwargs.get("max_tokens") or teacher_lm.kwargs.get("max_completion_tokens")
            message = f"truncated at the teacher's max_tokens ({limit}): raise it; {message}"
        elif isinstance(error, AdapterParseError) and attempts_for(teacher_lm, kd.temperature) > 1:
            # Garbled or off-format replies, asked again and never cached: not a property of the
            # question, so not recorded; the next run asks again. (An in-process teacher decoding
            # greedily would write the same reply again: its failure is recorded like a too-long prompt.)
            raise _Transient(f"unparsable teacher reply after retries: {message}") from error
        elif isinstance(error, AdapterParseError):
            message = f"unparsable reply of a greedy in-process teacher (asking again gives the same): {message}"
        row.update(rationale="", answer="", gold=gold, em=0.0, f1=0.0, ok=False, error=message)
    row.update(tokens=tokens, cost=cost, calls=calls, cached_calls=cached)
    return row


def _scores(task: Any, answer: str, example: Any, rationale: str) -> dict[str, Any]:
    """em / f1 (and ``metric``) of a teacher answer, under the task's answer type (no task: spans)."""
    from lmcot.metrics.task_metric import TaskMetric

    scores = (task or TaskMetric()).score(answer, example, dspy.Prediction(answer=answer, rationale=rationale))
    return {k: v for k, v in scores.items() if k in ("em", "f1", "metric")}


def _redo(row: dict[str, Any]) -> bool:
    """A parse failure recorded by an older version (no longer final: see the module docstring)."""
    return not row.get("ok") and str(row.get("error") or "").startswith("AdapterParseError")


def _dedupe(trainset: list[Any]) -> tuple[list[Any], int]:
    seen: dict[str, Any] = {}
    for ex in trainset:
        seen.setdefault(str(ex.id), ex)
    return list(seen.values()), len(trainset) - len(seen)


def _progress(enabled: bool, total: int):
    from lmcot.console import progress_bar

    return progress_bar("teacher rationales", disable=not enabled or total == 0)


def bootstrap_traces(trainset: list[dspy.Example], teacher_lm: dspy.LM, kd: KDConfig, out_dir: Path, *,
                     progress: bool = True, task: Any = None) -> BootstrapResult:
    """Sample teacher rationales for every question of ``trainset`` (resumable; see the module
    docstring), keep the ones whose answer passes ``kd.keep_metric >= kd.min_score``, and write
    ``out_dir/traces.jsonl`` + ``out_dir/summary.json``. ``task`` (a ``TaskMetric``) scores the answers;
    recorded traces are scored again on every run, so a changed answer type or metric applies to them."""
    start = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / TRACES
    questions, duplicates = _dedupe(list(trainset))
    if duplicates:
        log.warning("trainset has %d repeated id(s); each question is sampled once", duplicates)
    if kd.temperature <= 0 and kd.num_samples > 1:
        log.warning("kd.temperature=0 with num_samples=%d: the samples of a question will be identical",
                    kd.num_samples)

    # Resume: a killed run may leave a torn last line, which read_jsonl cuts off.
    traces: dict[tuple[str, int], dict[str, Any]] = {}
    for row in read_jsonl(path, repair=True):
        key = (str(row["id"]), int(row["sample"]))
        if key not in traces or _redo(traces[key]):
            traces[key] = row
    for key in [k for k, row in traces.items() if _redo(row)]:
        del traces[key]  # asked again below; the new row, appended later, wins on the next read
    wanted = [(ex, i) for ex in questions for i in range(kd.num_samples)]
    todo = [(ex, i) for ex, i in wanted if (str(ex.id), i) not in traces]
    resumed = len(wanted) - len(todo)

    new_rows: list[dict[str, Any]] = []
    transient: list[str] = []
    with _progress(progress, len(todo)) as bar:
        bar_task = bar.add_task("", total=len(todo))

        def run(job: tuple[Any, int]) -> dict[str, Any] | _Transient:
            try:
                row = teacher_sample(job[0], job[1], teacher_lm, kd, task=task)
            except _Transient as exc:
                return exc
            append_jsonl(path, [row])  # on disk before anything else can go wrong
            return row

        def record(result: dict[str, Any] | _Transient) -> None:
            if isinstance(result, _Transient):
                from lmcot.redact import redact

                transient.append(redact(str(result)))
            else:
                new_rows.append(result)
                traces[(result["id"], result["sample"])] = result
            bar.update(bar_task, advance=1, description=f"failed {sum(not r['ok'] for r in new_rows)}"
                       f" transient {len(transient)}")

        # On an error or Ctrl-C the queued calls are dropped; the running ones finish and are saved.
        map_concurrently(run, todo, max(1, kd.concurrency), on_result=record)

    ids = {str(ex.id) for ex in questions}
    current = [t for (qid, i), t in traces.items() if qid in ids and i < kd.num_samples]
    by_id = {str(ex.id): ex for ex in questions}
    if task is not None:  # the file keeps what the teacher said; what it scores is the task's call, made now
        for t in current:
            if t.get("ok"):
                t.update(_scores(task, str(t.get("answer") or ""), by_id[t["id"]], str(t.get("rationale") or "")))
    kept_rows = select_kept(current, kd)
    order = {str(ex.id): n for n, ex in enumerate(questions)}
    kept = [{**t, "context": by_id[t["id"]].get("context") or ""}
            for t in sorted(kept_rows, key=lambda t: (order[t["id"]], t["sample"]))]
    summary = _summary(questions, current, new_rows, kept, kd, resumed=resumed, transient=transient,
                       duplicates=duplicates, seconds=time.monotonic() - start)
    summary["kept_checkable"] = _checkable(kept, by_id)
    if kept and summary["kept_checkable"] is not None and summary["kept_checkable"] < len(kept):
        log.warning("KD: %d of %d kept teacher rationales state no sentence of the (truncated) context the student "
                    "sees: the student would learn to state facts it cannot read. Raise data.max_context_tokens, "
                    "or give the teacher the same context.", len(kept) - summary["kept_checkable"], len(kept))
    write_json(out_dir / SUMMARY, summary)
    if progress:
        _print_summary(summary, out_dir)
    if summary["truncated_samples"]:
        log.warning("%d teacher sample(s) were cut off at max_tokens and could not be parsed: give the teacher "
                    "a larger max_tokens (they stay recorded as failed; delete %s to redo them)",
                    summary["truncated_samples"], path)
    if transient:
        log.warning("%d teacher sample(s) failed with transient errors and were not recorded; rerun to "
                    "retry them (first: %s)", len(transient), transient[0])
    return BootstrapResult(kept=kept, summary=summary, traces_path=path, traces=current, transient=transient)


def distillation_rows(kept: list[dict[str, Any]], form: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The kept rows as the student learns them, in ``kd.rationale_form``: ``full`` as written;
    ``evidence`` with every answer statement removed (``without_stated_answer``: a final "So the answer
    is X", one mid-text or inside quotes alike), and a row that holds nothing else dropped. Returns the
    rows and counts (``stated``: rows that stated an answer, ``dropped``: rows left empty)."""
    if form == "full":
        return list(kept), {"stated": 0, "dropped": 0}
    if form != "evidence":
        raise ValueError(f"unknown kd.rationale_form {form!r}")
    from lmcot.metrics.stated_answer import answer_statements, without_stated_answer

    rows, stated, dropped = [], 0, 0
    for row in kept:
        text = str(row.get("rationale") or "")
        stated += bool(answer_statements(text))
        evidence = without_stated_answer(text)
        if not evidence:
            dropped += 1
            continue
        rows.append({**row, "rationale": evidence})
    return rows, {"stated": stated, "dropped": dropped}


def _checkable(kept: list[dict[str, Any]], by_id: dict[str, Any]) -> int | None:
    """Kept rationales that state at least one sentence of the context the student is given (the
    token-overlap rule of ``lmcot.metrics.rationale.evidence``): what KD teaches can be read there.
    None for a task without contexts (nothing to check against)."""
    from lmcot.metrics.rationale.evidence import has_passage, states_a_context_sentence

    if not any(has_passage(ex) for ex in by_id.values()):
        return None
    return sum(states_a_context_sentence(row.get("rationale") or "", by_id[row["id"]]) for row in kept)


def _summary(questions: list[Any], current: list[dict[str, Any]], new_rows: list[dict[str, Any]],
             kept: list[dict[str, Any]], kd: KDConfig, *, resumed: int, transient: list[str], duplicates: int,
             seconds: float) -> dict[str, Any]:
    passing = select_kept(current, kd.model_copy(update={"keep": "all"}))
    costs = [t.get("cost") for t in current]
    known = [c for c in costs if c is not None]
    return {
        "questions": len(questions),
        "samples": len(questions) * kd.num_samples,
        "recorded_samples": len(current),
        "new_samples": len(new_rows),
        "new_calls": sum(int(r.get("calls") or 0) for r in new_rows),
        # Every teacher call the recorded samples needed, paid now, earlier, or answered from the cache.
        "teacher_calls": sum(int(t.get("calls") or 0) + int(t.get("cached_calls") or 0) for t in current),
        "resumed_samples": resumed,
        "cache_hits": sum(1 for r in new_rows if int(r.get("calls") or 0) == 0),
        "failed_samples": sum(1 for t in current if not t.get("ok")),
        "truncated_samples": sum(1 for t in current if str(t.get("error") or "").startswith("truncated")),
        "transient_errors": len(transient),
        "missing_samples": len(questions) * kd.num_samples - len(current),
        "duplicate_ids": duplicates,
        "kept_examples": len(kept),
        "pass_rate": len(passing) / len(current) if current else 0.0,
        "question_yield": len({t["id"] for t in passing}) / len(questions) if questions else 0.0,
        "tokens": {"prompt": sum(int((t.get("tokens") or {}).get("prompt") or 0) for t in current),
                   "completion": sum(int((t.get("tokens") or {}).get("completion") or 0) for t in current)},
        # Unknown (null) when no recorded call had a price; a partial sum when only some had one.
        "cost": float(sum(known)) if known else None,
        "keep": {"metric": kd.keep_metric, "min_score": kd.min_score, "mode": kd.keep},
        "seconds": round(seconds, 3),
    }


def _print_summary(summary: dict[str, Any], out_dir: Path) -> None:
    from rich.table import Table
    from rich.text import Text

    from lmcot.console import table_console

    table = Table(title=Text(f"teacher rationales ({out_dir / TRACES})"), show_header=False)
    cost = "unknown" if summary["cost"] is None else f"${summary['cost']:.4f}"
    for name, value in [
        ("questions", summary["questions"]),
        ("samples recorded / expected", f"{summary['recorded_samples']} / {summary['samples']}"),
        ("new this run (resumed)", f"{summary['new_samples']} ({summary['resumed_samples']})"),
        ("failed / transient errors", f"{summary['failed_samples']} / {summary['transient_errors']}"),
        ("pass rate (samples)", f"{summary['pass_rate']:.1%}"),
        ("question yield", f"{summary['question_yield']:.1%}"),
        ("kept examples", summary["kept_examples"]),
        ("tokens prompt / completion", f"{summary['tokens']['prompt']} / {summary['tokens']['completion']}"),
        ("cost", cost),
    ]:
        table.add_row(name, str(value))
    table_console(stderr=True).print(table)
