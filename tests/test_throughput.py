"""Throughput paths give the same results as the plain ones: phased guided evaluation (all rationales,
then all answers) against the per-example path, the engine's batch gathering, lazy model loading and
the truncation memo on cached reruns."""

from __future__ import annotations

import re
from pathlib import Path

import dspy
import pytest
from dspy.lm15 import Message, Response, TextPart, Usage

from lmcot.config import SmallLMConfig
from lmcot.evaluation import evaluate_program, predict_all
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
