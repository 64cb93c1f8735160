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
    from support.tiny import scramble_and_save

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
    from support.scripted import scripted_lm

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

def test_a_batch_takes_the_oldest_requests_neighbours_in_length():
    """The batch choice alone (a pure function of the queue): short and long prompts interleaved in
    arrival order, a batch takes prompts of similar length, and the oldest request goes in once it
    has waited too long."""
    from lmcot.hf_engine import Job, pick_batch

    params = (0.0, None, None, 4, None, ())
    queue = [Job(("word " * (3 if i % 2 else 60)) + str(i), params, queued_at=100.0) for i in range(32)]
    first = pick_batch(queue, 16, now=100.0, max_wait_s=1.0)
    lengths = [len(j.prompt) for j in first]
    assert len(first) == 16 and max(lengths) - min(lengths) < 100, lengths  # not the first 16 to arrive
    other_settings = Job("x", (0.7, None, None, 4, None, ()), queued_at=99.0)
    assert pick_batch([other_settings, *queue], 16, now=100.0, max_wait_s=1.0) == [other_settings]
    seeded = Job("y", (0.7, None, None, 4, 3, ()), queued_at=99.0)
    assert pick_batch([seeded, Job("z", seeded.params)], 16, now=100.0, max_wait_s=1.0) == [seeded]
    # A short oldest request among many long ones: after max_wait_s it is served, not starved.
    short_first = [Job("short", params, queued_at=90.0), *[Job("long " * 50 + str(i), params, queued_at=99.0)
                                                           for i in range(40)]]
    assert short_first[0] not in pick_batch(short_first, 16, now=90.5, max_wait_s=1.0)
    assert short_first[0] in pick_batch(short_first, 16, now=100.0, max_wait_s=1.0)


def _call_together(engine, prompts: list[str], monkeypatch, max_tokens: int) -> list[str]:
    """Each prompt from its own thread through DSPy, every caller held inside the engine's
    ``complete`` (rendering its prompt) until all are there: the engine then sees them all at once.
    Events, not timing."""
    import threading

    import lmcot.hf_engine as hf_engine

    entered, all_in = threading.Semaphore(0), threading.Event()
    render = hf_engine.render_prompt

    def held_render(*args, **kwargs):
        entered.release()
        all_in.wait()
        return render(*args, **kwargs)

    monkeypatch.setattr(hf_engine, "render_prompt", held_render)
    lm = dspy.LM("hf/scrambled", engine=engine, cache=False, max_tokens=max_tokens, temperature=0.0, num_retries=0)
    out: list[str | None] = [None] * len(prompts)

    def call(i: int) -> None:
        out[i] = lm(prompts[i])[0]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for _ in threads:
        entered.acquire()
    all_in.set()
    for t in threads:
        t.join()
    monkeypatch.setattr(hf_engine, "render_prompt", render)
    return out


def _recording(engine) -> list[list[int]]:
    """Prompt lengths of each generate the engine runs."""
    batches: list[list[int]] = []
    original = engine.generate
    engine.generate = lambda ps, *a, **k: (batches.append([len(p) for p in ps]), original(ps, *a, **k))[1]
    return batches


def test_concurrent_requests_fill_batches_of_similar_lengths_with_the_greedy_results_of_one_at_a_time(
        scrambled_path, monkeypatch):
    from lmcot.hf_engine import TransformersEngine
    from lmcot.model_loading import resolve_source

    engine = TransformersEngine(resolve_source(str(scrambled_path)), batch_size=16)
    lm = dspy.LM("hf/scrambled", engine=engine, cache=False, max_tokens=4, temperature=0.0, num_retries=0)
    # Short and long prompts interleaved: a batch should take its neighbours in length, not arrival order.
    prompts = [("word " * (3 if i % 2 else 60)) + str(i) for i in range(32)]
    alone = [lm(p)[0] for p in prompts]
    batches = _recording(engine)
    together = _call_together(engine, prompts, monkeypatch, max_tokens=4)
    assert together == alone  # greedy results do not depend on the batch
    assert sorted(map(len, batches)) == [16, 16]
    assert all(max(b) - min(b) < 100 for b in batches), f"a batch mixed short and long prompts: {batches}"


def test_leader_waits_for_requests_still_on_their_way_in(scrambled_path, monkeypatch):
    """32 callers are inside ``complete`` when the first request is queued: the leader waits for
    every caller on its way in, so all 32 go into one generate."""
    from lmcot.hf_engine import TransformersEngine
    from lmcot.model_loading import resolve_source

    engine = TransformersEngine(resolve_source(str(scrambled_path)), batch_size=32)
    batches = _recording(engine)
    _call_together(engine, [f"prompt number {i}" for i in range(32)], monkeypatch, max_tokens=2)
    assert [len(b) for b in batches] == [32], batches


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

    from support.tiny import scramble_and_save

    from lmcot.hf_engine import TransformersEngine
    from lmcot.memo import memo_dir, set_memo_dir
    from lmcot.model_loading import resolve_source

    path = Path(shutil.copytree(scrambled_path, tmp_path / "model"))
    memos = memo_dir()
    set_memo_dir(tmp_path / "memo")
    try:
        first = TransformersEngine(resolve_source(str(path)))
        assert first.loaded
        again = TransformersEngine(resolve_source(str(path)))
        assert not again.loaded and again.fingerprint == first.fingerprint  # remembered, nothing loaded
        assert again.model is not None and again.fingerprint == first.fingerprint  # loads on first use
        scramble_and_save(path, path, seed=5)  # "retrained" in place
        retrained = TransformersEngine(resolve_source(str(path)))
        assert retrained.loaded and retrained.fingerprint != first.fingerprint
    finally:
        set_memo_dir(memos)


@pytest.mark.slow
def test_python_dash_m_lmcot_runs_the_command():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "lmcot", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "evaluate" in result.stdout and "compile" in result.stdout
