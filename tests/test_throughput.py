"""Throughput paths give the same results as the plain ones: phased guided evaluation (all rationales,
then all answers) against the per-example path, the engine's batch gathering, lazy model loading and
the truncation memo on cached reruns."""

from __future__ import annotations

import re
import time
from pathlib import Path

import dspy
import pytest
from dspy.lm15 import Message, Response, TextPart, Usage

from lmcot.config import SmallLMConfig
from lmcot.programs.evaluation import evaluate_program, predict_all
from lmcot.lms import build_lm
from lmcot.programs import LMGuidedCoT


class EchoEngine:
    """Scripted large LM (tests only): answers with the first words of the rationale it was given, so
    a prediction changes whenever its rationale does."""

    def __init__(self, fail_on: str | None = None):
        self.fail_on = fail_on

    def complete(self, request):
        text = "\n".join(m.text or "" for m in request.messages)
        if self.fail_on and self.fail_on in text:
            raise RuntimeError("scripted failure")
        found = re.search(r"\[\[ ## rationale ## \]\]\n(.*?)(\n\n\[\[|\Z)", text, re.S)
        words = (found.group(1) if found else "").split()[:3]
        reply = f"[[ ## answer ## ]]\n{' '.join(words) or 'none'}\n\n[[ ## completed ## ]]"
        return Response(id=None, model="echo", message=Message.assistant([TextPart(reply)]), finish_reason="stop",
                        usage=Usage(input_tokens=5, output_tokens=3))

    def close(self) -> None:
        pass


def echo_lm(**kw) -> dspy.LM:
    return dspy.LM("local/echo", engine=EchoEngine(**kw), cache=False, temperature=0.0, max_tokens=32)


@pytest.fixture(scope="module")
def scrambled_path(tmp_path_factory, tiny_causal_path) -> Path:
    from test_engine import scramble_and_save

    return scramble_and_save(Path(tiny_causal_path), tmp_path_factory.mktemp("scrambled") / "llama", seed=1)


def varied(examples, n):
    return [dspy.Example(id=f"{i}", question=ex.question, context=ex.context[: 40 + 70 * (i % 5)], answer=ex.answer)
            .with_inputs("question", "context") for i, ex in enumerate(examples[:n])]


def test_phased_guided_evaluation_predicts_what_the_per_example_path_does(scrambled_path, hotpot_examples):
    small = build_lm(SmallLMConfig(model=str(scrambled_path), max_tokens=10, cache=False, batch_size=4))
    program = LMGuidedCoT(small, echo_lm())
    examples = varied(hotpot_examples, 10)
    one_by_one = [program(**ex.inputs()) for ex in examples]
    assert len({p.rationale for p in one_by_one}) > 5, "the scrambled model should write distinct rationales"

    sizes: list[int] = []
    orig = small.engine.model.generate
    small.engine.model.generate = lambda *a, **k: (sizes.append(int(k["input_ids"].shape[0])), orig(*a, **k))[1]
    rows = predict_all(program, examples, concurrency=2, label="guided", progress=False)

    assert [r["rationale"] for r in rows] == [p.rationale for p in one_by_one]
    assert [r["answer"] for r in rows] == [p.answer for p in one_by_one]
    assert [r["id"] for r in rows] == [ex.id for ex in examples]
    # 10 rationales in batches of 4 (the rationale phase has 8 threads for concurrency 2).
    assert sum(sizes) == 10 and len(sizes) <= 4, sizes


def test_phased_samples_and_failures_are_kept_per_example(hotpot_examples):
    from test_programs import scripted_lm

    examples = varied(hotpot_examples, 4)

    failed: list[int] = []

    def write(messages, config, index):
        if examples[2].question in messages[-1]["content"] and not failed:
            failed.append(index)  # one of example 2's three samples fails
            raise RuntimeError("small LM down")
        return f"because {messages[-1]['content'][-60:].split()[-2]} t{config.temperature}"

    small, small_engine = scripted_lm("small", write)
    program = LMGuidedCoT(small, echo_lm(fail_on=examples[1].question), num_samples=3)
    rows, summary = evaluate_program(program, examples, concurrency=4, label="guided", progress=False)

    assert len(small_engine.calls) == 12  # every sample of every example, in the one rationale phase
    # A failed answer (example 1) or a failed rationale sample (example 2) fails that example only.
    assert summary["errors"] == 2 and "scripted failure" in rows[1]["error"] and "small LM down" in rows[2]["error"]
    for row, ex in zip(rows, examples):
        if row["error"] is None:
            assert len(row["rationales"]) == 3 and row["rationale"] in row["rationales"]
            assert row == {**row, **_single(program, ex)}


def _single(program, ex):
    pred = program(**ex.inputs())
    return {"answer": pred.answer, "rationales": pred.rationales, "answers": pred.answers}


# --------------------------------------------------------------------------- engine batching

def test_concurrent_requests_fill_one_batch_and_batches_group_similar_lengths(scrambled_path):
    from concurrent.futures import ThreadPoolExecutor

    from lmcot.hf_engine import TransformersEngine, _Job

    engine = TransformersEngine(str(scrambled_path), batch_size=16)
    batches: list[list[int]] = []
    original = engine.generate
    engine.generate = lambda prompts, *a, **k: (batches.append([len(p) for p in prompts]), original(prompts, *a, **k))[1]
    # Short and long prompts interleaved: a batch should take its neighbours in length, not arrival order.
    prompts = [("word " * (3 if i % 2 else 60)) + str(i) for i in range(32)]
    alone = [original([p], 0.0, None, None, 4)[0] for p in prompts]

    def submit(p):
        return engine._submit(_Job(p, (0.0, None, None, 4, None, ())))

    # Hold the leader's seat until all 32 are queued, so what is measured is the choice of batch.
    with engine._cond:
        engine._leader_active = True
    with ThreadPoolExecutor(32) as pool:
        futures = [pool.submit(submit, p) for p in prompts]
        while len(engine._queue) < 32:
            time.sleep(0.01)
        with engine._cond:
            engine._leader_active = False
            engine._cond.notify_all()
        together = [f.result(timeout=120) for f in futures]
    assert together == alone  # greedy results do not depend on the batch
    assert sorted(map(len, batches)) == [16, 16]
    assert all(max(b) - min(b) < 100 for b in batches), f"a batch mixed short and long prompts: {batches}"


def test_leader_gathers_while_requests_keep_arriving(scrambled_path):
    """32 requests arriving 5 ms apart (160 ms in all) with a 50 ms quiet window: one generate. A
    fixed wait from the first arrival (the old 5 ms rule) would have split them."""
    import threading

    from lmcot.hf_engine import TransformersEngine, _Job

    engine = TransformersEngine(str(scrambled_path), batch_size=32, batch_wait_ms=50)
    sizes: list[int] = []
    original = engine.generate
    engine.generate = lambda prompts, *a, **k: (sizes.append(len(prompts)), original(prompts, *a, **k))[1]
    threads = []
    for i in range(32):
        job = _Job(f"prompt number {i}", (0.0, None, None, 2, None, ()))
        threads.append(threading.Thread(target=engine._submit, args=(job,)))
        threads[-1].start()
        time.sleep(0.005)
    for t in threads:
        t.join(timeout=120)
    assert sizes == [32], sizes


# --------------------------------------------------------------------------- cached reruns

def test_truncation_memo_gives_the_same_examples_without_counting(tmp_path, hotpot_examples):
    from lmcot.data import load_examples
    from lmcot.memo import JsonMemo

    source = str(Path(__file__).parent / "fixtures" / "hotpotqa_dev_slice.json")
    counted: list[str] = []

    def count(text: str) -> int:
        counted.append(text)
        return len(text.split())

    plain = load_examples("hotpotqa", source, max_context_tokens=120, count_tokens=count).examples
    memo = JsonMemo(tmp_path / "memo.json")
    first = load_examples("hotpotqa", source, max_context_tokens=120, count_tokens=count, truncation_memo=memo).examples
    memo.save()
    counted.clear()
    again = load_examples("hotpotqa", source, max_context_tokens=120, count_tokens=count,
                          truncation_memo=JsonMemo(tmp_path / "memo.json")).examples
    assert counted == []
    assert [e.toDict() for e in again] == [e.toDict() for e in first] == [e.toDict() for e in plain]
    assert any(e.paragraphs != h.paragraphs for e, h in zip(plain, hotpot_examples)), "nothing was cut"
    # Another budget is another key: counted afresh.
    load_examples("hotpotqa", source, max_context_tokens=80, count_tokens=count,
                  truncation_memo=JsonMemo(tmp_path / "memo.json"))
    assert counted


def test_remembered_fingerprint_follows_the_checkpoint_files(tmp_path, scrambled_path):
    import shutil

    from test_engine import scramble_and_save

    from lmcot.hf_engine import TransformersEngine
    from lmcot.memo import set_memo_dir

    path = Path(shutil.copytree(scrambled_path, tmp_path / "model"))
    set_memo_dir(tmp_path / "memo")
    try:
        first = TransformersEngine(str(path))
        assert first.loaded
        again = TransformersEngine(str(path))
        assert not again.loaded and again.fingerprint == first.fingerprint  # remembered, nothing loaded
        assert again.model is not None and again.fingerprint == first.fingerprint  # loads on first use
        scramble_and_save(path, path, seed=5)  # "retrained" in place
        retrained = TransformersEngine(str(path))
        assert retrained.loaded and retrained.fingerprint != first.fingerprint
    finally:
        set_memo_dir(None)


def test_python_dash_m_lmcot_runs_the_command():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "lmcot", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "evaluate" in result.stdout and "compile" in result.stdout
