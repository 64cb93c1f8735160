"""Teacher bootstrap (``lmcot.optimizers.bootstrap``) against a real OpenAI-compatible HTTP server.

The teacher is ``build_lm(LargeLMConfig(...))`` (litellm) pointed at ``OracleServer``; every test
gets its own server and DSPy cache folder, so request counts are exact. Resume tests also give the
rerun a fresh cache (or a different model name): then only the resume logic, not DSPy's cache,
can keep a finished sample from being asked for again.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from lmcot.config import KDConfig, LargeLMConfig
from lmcot.jsonl import read_jsonl
from support.oracle_responder import OracleResponder, message_text
from support.oracle_server import OracleServer
from support.paths import HOTPOT

FIELDS = {"id", "sample", "question", "rationale", "answer", "gold", "em", "f1", "ok", "error", "tokens", "cost"}


@pytest.fixture(scope="module")
def examples():
    from lmcot.data import load_examples

    return load_examples("hotpotqa", str(HOTPOT), limit=8).examples


def teacher(srv: OracleServer, model: str = "openai/oracle", **kw):
    from lmcot.lms import build_lm

    return build_lm(LargeLMConfig(model=model, api_base=srv.url, max_tokens=512, **kw))


def kd_cfg(**kw) -> KDConfig:
    return KDConfig(**{"num_samples": 2, "temperature": 0.7, "concurrency": 4, **kw})


def run(trainset, lm, kd, out, **kw):
    from lmcot.optimizers.bootstrap import bootstrap_traces

    return bootstrap_traces(trainset, lm, kd, out, progress=False, **kw)


def lines(path: Path) -> list[dict]:
    """Every line of the file parsed strictly: a torn or invalid line fails the test."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def requests_per_question(srv: OracleServer, examples, model: str | None = None) -> Counter:
    """Chat requests the server received, by question id (read from the request's last user turn)."""
    by_question = {ex.question: ex.id for ex in examples}
    finder = OracleResponder([ex.toDict() for ex in examples])
    counts: Counter = Counter()
    for body in srv.requests:
        if model is not None and body.get("model") != model:
            continue
        user = [message_text(m) for m in body["messages"] if m.get("role") == "user"][-1]
        hit = finder.find(user)
        assert hit is not None, "a request for no known question"
        counts[by_question[hit.question]] += 1
    return counts


def test_traces_written_best_kept_and_summary(examples, fresh_cache, tmp_path):
    trainset = examples[:4]
    with OracleServer(OracleResponder([e.toDict() for e in trainset])) as srv:
        # A priced model name: litellm's local price list gives each call a real cost.
        result = run(trainset, teacher(srv, model="openai/gpt-4o-mini"), kd_cfg(num_samples=3), tmp_path / "kd")
        bodies = srv.requests
    rows = lines(tmp_path / "kd" / "traces.jsonl")
    assert len(rows) == 12 and len(bodies) == 12
    assert {(r["id"], r["sample"]) for r in rows} == {(e.id, i) for e in trainset for i in range(3)}
    assert all(b["temperature"] == 0.7 for b in bodies)
    gold = {e.id: e for e in trainset}
    for r in rows:
        assert FIELDS <= set(r) and r["ok"] and r["error"] is None
        ex = gold[r["id"]]
        assert r["question"] == ex.question and r["gold"] == ex.answer and r["answer"] == ex.answer
        assert r["em"] == 1.0 and r["f1"] == 1.0
        assert r["rationale"].endswith(f"So the answer is {ex.answer}.")
        assert r["tokens"]["prompt"] > 100 and r["tokens"]["completion"] > 5
        assert r["cost"] > 0
    # best: one per question, ties broken by the lowest sample index; trainset order; with context.
    assert [(k["id"], k["sample"]) for k in result.kept] == [(e.id, 0) for e in trainset]
    assert [k["context"] for k in result.kept] == [e.context for e in trainset]

    summary = json.loads((tmp_path / "kd" / "summary.json").read_text())
    assert summary == result.summary
    assert summary["questions"] == 4 and summary["samples"] == 12 and summary["new_samples"] == 12
    assert summary["new_calls"] == 12 and summary["resumed_samples"] == 0 and summary["cache_hits"] == 0
    assert summary["failed_samples"] == 0 and summary["transient_errors"] == 0
    assert summary["kept_examples"] == 4 and summary["pass_rate"] == 1.0 and summary["question_yield"] == 1.0
    assert summary["tokens"] == {"prompt": sum(r["tokens"]["prompt"] for r in rows),
                                 "completion": sum(r["tokens"]["completion"] for r in rows)}
    assert summary["cost"] == pytest.approx(sum(r["cost"] for r in rows))
    assert summary["seconds"] > 0


def test_wrong_answers_are_filtered(examples, fresh_cache, tmp_path):
    trainset = examples[:6]
    with OracleServer(OracleResponder([e.toDict() for e in trainset], wrong_rate=0.5, seed=3)) as srv:
        result = run(trainset, teacher(srv), kd_cfg(num_samples=4, keep="all"), tmp_path / "kd")
    rows = lines(tmp_path / "kd" / "traces.jsonl")
    right = [r for r in rows if r["em"] == 1.0]
    wrong = [r for r in rows if r["em"] == 0.0]
    assert right and wrong, "the imperfect teacher should give both kinds of samples"
    assert all(r["answer"] != r["gold"] for r in wrong)
    assert sorted((k["id"], k["sample"]) for k in result.kept) == sorted((r["id"], r["sample"]) for r in right)
    assert result.summary["pass_rate"] == pytest.approx(len(right) / 24)
    assert result.summary["question_yield"] == pytest.approx(len({r["id"] for r in right}) / 6)

    # The same traces with keep="best": one per question that has a right answer, no new call.
    from lmcot.optimizers.bootstrap import select_kept

    best = select_kept(rows, kd_cfg(num_samples=4, keep="best"))
    assert sorted(k["id"] for k in best) == sorted({r["id"] for r in right})
    for k in best:
        assert k["sample"] == min(r["sample"] for r in right if r["id"] == k["id"])


def test_select_kept_is_deterministic_and_breaks_ties():
    from lmcot.optimizers.bootstrap import select_kept

    def row(qid, sample, em, f1, ok=True, rationale="because"):
        return {"id": qid, "sample": sample, "em": em, "f1": f1, "ok": ok, "rationale": rationale}

    rows = [
        row("a", 0, 0.0, 0.5), row("a", 1, 1.0, 1.0), row("a", 2, 1.0, 1.0), row("a", 3, 0.0, 0.9),
        row("b", 0, 1.0, 1.0, ok=False), row("b", 1, 1.0, 1.0, rationale="  "), row("b", 2, 0.0, 0.6),
        row("c", 0, 0.0, 0.0), row("d", 2, 1.0, 0.8), row("d", 1, 0.0, 0.8),
    ]
    em_best = KDConfig(keep_metric="em", min_score=1.0, keep="best")
    f1_best = KDConfig(keep_metric="f1", min_score=0.6, keep="best")
    f1_all = KDConfig(keep_metric="f1", min_score=0.6, keep="all")
    for _ in range(5):
        random.shuffle(rows)
        assert [(k["id"], k["sample"]) for k in select_kept(rows, em_best)] == [("a", 1), ("d", 2)]
        # f1 first, then em (d: 0.8 both, em 1 wins over the lower index), then lowest sample.
        assert [(k["id"], k["sample"]) for k in select_kept(rows, f1_best)] == [("a", 1), ("b", 2), ("d", 2)]
        assert [(k["id"], k["sample"]) for k in select_kept(rows, f1_all)] == [
            ("a", 1), ("a", 2), ("a", 3), ("b", 2), ("d", 1), ("d", 2)]


def test_unparseable_answer_is_retried_never_recorded_and_recovered_on_rerun(examples, fresh_cache, tmp_path):
    """A garbled reply is asked again (3 tries), never cached and never recorded as final: a rerun
    against a healthy server asks the teacher again and gets the sample (issue 7, item 2)."""
    trainset = examples[:3]
    bad = trainset[1]
    oracle = OracleResponder([e.toDict() for e in trainset])
    garble = {"on": True}

    def responder(body):
        last = message_text(body["messages"][-1])
        return "garbage without any field markers" if garble["on"] and bad.question in last else oracle(body)

    with OracleServer(responder) as srv:
        result = run(trainset, teacher(srv), kd_cfg(), tmp_path / "kd")
        assert not [r for r in lines(tmp_path / "kd" / "traces.jsonl") if r["id"] == bad.id]
        assert result.summary["failed_samples"] == 0 and result.summary["transient_errors"] == 2
        assert result.summary["kept_examples"] == 2 and all("unparsable" in t for t in result.transient)
        garble["on"] = False
        before = srv.request_count
        again = run(trainset, teacher(srv), kd_cfg(), tmp_path / "kd")  # same cache folder
        assert srv.request_count > before, "the garbled replies must not have been cached"
        assert again.summary["resumed_samples"] == 4 and again.summary["kept_examples"] == 3
        assert bad.id in {k["id"] for k in again.kept}


def test_parse_failures_recorded_by_older_versions_are_redone(examples, fresh_cache, tmp_path):
    from lmcot.jsonl import append_jsonl

    trainset = examples[:1]
    ex = trainset[0]
    kd_dir = tmp_path / "kd"
    kd_dir.mkdir()
    append_jsonl(kd_dir / "traces.jsonl", [{"id": ex.id, "sample": 0, "question": ex.question, "rationale": "",
                                           "answer": "", "ok": False, "error": "AdapterParseError: bad",
                                           "em": 0.0, "f1": 0.0}])
    with OracleServer(OracleResponder([e.toDict() for e in trainset])) as srv:
        result = run(trainset, teacher(srv), kd_cfg(num_samples=1), kd_dir)
        assert result.summary["resumed_samples"] == 0 and result.summary["kept_examples"] == 1
        again = run(trainset, teacher(srv), kd_cfg(num_samples=1), kd_dir)
        assert again.summary["resumed_samples"] == 1 and again.summary["kept_examples"] == 1


def test_a_greedy_in_process_teacher_is_asked_once_and_its_unparsable_reply_recorded(
        examples, tiny_causal_path, fresh_cache, monkeypatch):
    """Asking a greedy in-process model again gives the same reply (a retry is a whole generate for
    nothing): one call, recorded as failed, not retried on a rerun."""
    import lmcot.usage
    from lmcot.lms import build_lm
    from lmcot.optimizers.bootstrap import _redo, teacher_sample
    from lmcot.reply_cache import PARSE_ATTEMPTS, attempts_for

    # The random tiny model never writes an "Answer:" line; count its reply as stopped at EOS.
    monkeypatch.setattr(lmcot.usage, "hit_max_tokens", lambda entries: False)
    lm = build_lm(LargeLMConfig(model=str(tiny_causal_path), backend="transformers", max_tokens=8, temperature=0.0))
    assert attempts_for(lm) == 1 and attempts_for(lm, 0.7) == PARSE_ATTEMPTS > 1
    row = teacher_sample(examples[0], 0, lm, KDConfig(temperature=0.0))
    assert row["ok"] is False and row["calls"] == 1
    assert row["error"].startswith("unparsable reply of a greedy in-process teacher") and not _redo(row)


def test_answer_cut_off_at_max_tokens_is_reported_as_truncated(examples, fresh_cache, tmp_path):
    from lmcot.lms import build_lm

    trainset = examples[:1]
    with OracleServer(OracleResponder([e.toDict() for e in trainset])) as srv:
        lm = build_lm(LargeLMConfig(model="openai/oracle", api_base=srv.url, max_tokens=20))
        result = run(trainset, lm, kd_cfg(), tmp_path / "kd")
    rows = lines(tmp_path / "kd" / "traces.jsonl")
    assert len(rows) == 2 and not any(r["ok"] for r in rows)
    assert all(r["error"].startswith("truncated at the teacher's max_tokens (20)") for r in rows)
    assert result.summary["truncated_samples"] == 2 and result.kept == []


def test_rate_limits_are_retried(examples, fresh_cache, tmp_path):
    trainset = examples[:2]
    with OracleServer(OracleResponder([e.toDict() for e in trainset])) as srv:
        srv.fail_next(2, 429)
        result = run(trainset, teacher(srv, num_retries=3), kd_cfg(concurrency=1), tmp_path / "kd")
        statuses = [r.status for r in srv.records]
    assert statuses.count(429) == 2 and statuses.count(200) == 4
    assert result.summary["transient_errors"] == 0 and result.summary["recorded_samples"] == 4
    assert all(r["ok"] for r in lines(tmp_path / "kd" / "traces.jsonl"))


def test_persistent_server_errors_are_counted_not_recorded_then_retried(examples, fresh_cache, tmp_path):
    trainset = examples[:2]
    with OracleServer(OracleResponder([e.toDict() for e in trainset])) as srv:
        srv.fail_next(1000, 503)
        lm = teacher(srv, num_retries=2)
        result = run(trainset, lm, kd_cfg(), tmp_path / "kd")
        # every sample: 1 try + 2 retries, all HttpLM's (the one layer that retries transport errors)
        assert srv.request_count == 4 * 3
        assert result.summary["transient_errors"] == 4 and result.summary["recorded_samples"] == 0
        assert result.summary["missing_samples"] == 4 and result.kept == []
        assert not (tmp_path / "kd" / "traces.jsonl").exists() or lines(tmp_path / "kd" / "traces.jsonl") == []

        srv.fail_next(0)
        again = run(trainset, lm, kd_cfg(), tmp_path / "kd")
    assert again.summary["new_samples"] == 4 and again.summary["transient_errors"] == 0
    assert len(lines(tmp_path / "kd" / "traces.jsonl")) == 4 and len(again.kept) == 2


def test_timeouts_are_transient(examples, fresh_cache, tmp_path):
    trainset = examples[:1]
    with OracleServer(OracleResponder([e.toDict() for e in trainset])) as srv:
        srv.delay = 1.5
        result = run(trainset, teacher(srv, num_retries=0, timeout=0.3), kd_cfg(num_samples=1), tmp_path / "kd")
    assert result.summary["transient_errors"] == 1 and result.summary["recorded_samples"] == 0


def test_fatal_error_stops_the_run_without_recording_failures(examples, fresh_cache, tmp_path):
    """A rejected key fails every call: the run stops with that error instead of writing a
    failed row per sample (which a rerun with a fixed key would then skip)."""
    from dspy.utils.exceptions import LMAuthError

    trainset = examples[:3]
    with OracleServer(OracleResponder([e.toDict() for e in trainset])) as srv:
        srv.fail_next(1000, 401)
        with pytest.raises(LMAuthError):
            run(trainset, teacher(srv, num_retries=0), kd_cfg(concurrency=1), tmp_path / "kd")
        # The failed call, and at most the next one the freed worker had already started: the
        # queued samples were dropped, not tried one by one.
        assert srv.request_count <= 2
        srv.fail_next(0)
        again = run(trainset, teacher(srv, num_retries=0), kd_cfg(), tmp_path / "kd")
    assert again.summary["new_samples"] == 6 and again.summary["failed_samples"] == 0


def test_resume_never_repeats_a_finished_sample(examples, fresh_cache, tmp_path):
    trainset = examples[:6]
    out = tmp_path / "kd"
    with OracleServer(OracleResponder([e.toDict() for e in trainset])) as srv:
        first = run(trainset[:3], teacher(srv, cache=False), kd_cfg(), out)
        assert first.summary["new_samples"] == 6
        # The whole set, with one question listed twice: only the new half is asked for, once.
        again = run([*trainset, trainset[4]], teacher(srv, cache=False), kd_cfg(), out)
        counts = requests_per_question(srv, trainset)
    assert counts == Counter({e.id: 2 for e in trainset})
    assert again.summary["resumed_samples"] == 6 and again.summary["new_samples"] == 6
    assert again.summary["duplicate_ids"] == 1 and again.summary["questions"] == 6
    keys = [(r["id"], r["sample"]) for r in lines(out / "traces.jsonl")]
    assert len(keys) == len(set(keys)) == 12


def test_torn_last_line_is_repaired_and_its_sample_redone(examples, fresh_cache, tmp_path):
    trainset = examples[:2]
    out = tmp_path / "kd"
    with OracleServer(OracleResponder([e.toDict() for e in trainset])) as srv:
        run(trainset, teacher(srv, cache=False), kd_cfg(), out)
        path = out / "traces.jsonl"
        text = path.read_text(encoding="utf-8").splitlines(keepends=True)
        torn = json.loads(text[-1])
        # What a kill in the middle of the last write leaves: half a line, no newline.
        path.write_text("".join(text[:-1]) + text[-1][: len(text[-1]) // 2], encoding="utf-8")
        srv.clear()
        again = run(trainset, teacher(srv, cache=False), kd_cfg(), out)
        assert srv.request_count == 1
    assert again.summary["resumed_samples"] == 3 and again.summary["new_samples"] == 1
    rows = lines(out / "traces.jsonl")
    assert len(rows) == 4 and len({(r["id"], r["sample"]) for r in rows}) == 4
    assert (rows[-1]["id"], rows[-1]["sample"]) == (torn["id"], torn["sample"])


_CHILD = """
import sys
from pathlib import Path
from lmcot.config import KDConfig, LargeLMConfig
from lmcot.data import load_examples
from lmcot.lms import build_lm, configure_cache
from lmcot.optimizers.bootstrap import bootstrap_traces

url, out, cache, data, limit = sys.argv[1:6]
configure_cache(cache)
examples = load_examples("hotpotqa", data, limit=int(limit)).examples
lm = build_lm(LargeLMConfig(model="openai/first", api_base=url, max_tokens=512))
bootstrap_traces(examples, lm, KDConfig(num_samples=2, temperature=0.7, concurrency=2), Path(out), progress=False)
"""


@pytest.mark.slow
def test_killed_run_resumes_without_duplicates_or_repeated_calls(examples, fresh_cache, tmp_path):
    """SIGKILL a bootstrap process mid-run, then finish in this process. The rerun uses another
    model name (so DSPy's cache cannot answer for it): every request it makes is visible, and for
    each question it must ask exactly for the samples the killed run had not recorded."""
    from lmcot.data import load_examples
    from lmcot.optimizers.bootstrap import bootstrap_traces

    trainset = load_examples("hotpotqa", str(HOTPOT), limit=8).examples
    out = tmp_path / "kd"
    path = out / "traces.jsonl"
    with OracleServer(OracleResponder([e.toDict() for e in trainset])) as srv:
        # The server answers 6 requests and holds the rest: the child is stopped half-way, known where.
        srv.hold_after(6)
        child = subprocess.Popen([sys.executable, "-c", _CHILD, srv.url, str(out), str(tmp_path / "child-cache"), str(HOTPOT),
                                  "8"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            assert srv.wait_until_holding(timeout=600) and child.poll() is None, \
                f"bootstrap process died: {child.stderr.read().decode()[-2000:]}"
            os.kill(child.pid, signal.SIGKILL)
        finally:
            if child.poll() is None:
                child.kill()
            child.wait()
            srv.release()
        finished = [(r["id"], r["sample"]) for r in read_jsonl(path)]
        assert len(finished) == len(set(finished)) and len(finished) <= 6
        first_requests = sum(requests_per_question(srv, trainset, model="first").values())
        # Two workers: at most 2 calls in flight (answered but not yet written, or held) at the kill.
        assert 6 < first_requests <= len(finished) + 2

        lm = teacher(srv, model="openai/rerun")
        result = bootstrap_traces(trainset, lm, KDConfig(num_samples=2, temperature=0.7, concurrency=2), out,
                                  progress=False)
        rerun = requests_per_question(srv, trainset, model="rerun")
    done_per_question = Counter(qid for qid, _ in finished)
    assert rerun == Counter({e.id: 2 - done_per_question[e.id] for e in trainset if done_per_question[e.id] < 2})
    rows = lines(path)
    keys = [(r["id"], r["sample"]) for r in rows]
    assert len(keys) == len(set(keys)) == 16
    assert result.summary["resumed_samples"] == len(finished) and result.summary["recorded_samples"] == 16
