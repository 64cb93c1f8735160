"""kd.rationale_form (issue 15): `evidence` distils the teacher's rationales without their answer
statements and prompts the student for reasoning and evidence without a final answer, the same prompt
at KD, RL and inference; the compiled program keeps its form."""

from __future__ import annotations

import json

import pytest
from support.generate_spy import record_prompt_ids
from support.paths import HOTPOT

from lmcot.metrics.stated_answer import answer_statements
from lmcot.optimizers.bootstrap import distillation_rows
from lmcot.programs import LMGuidedCoT, Rationalize, RationalizeEvidence, rationale_messages

Q, C = "Which city hosts the university Anna Keller studied at?", "Anna Keller: Anna Keller studied in Vienna."


@pytest.mark.parametrize("rationale, evidence", [
    # the teacher's usual form: evidence, then the conclusion
    ("Anna Keller studied at the University of Vienna. So the answer is Vienna.",
     "Anna Keller studied at the University of Vienna."),
    # the statement mid-text, reasoning after it
    ("Anna Keller studied in Vienna. Therefore, the answer is Vienna. The university is in Austria.",
     "Anna Keller studied in Vienna. The university is in Austria."),
    # a quoted statement (with its quotes) and the full stop after it
    ('Anna Keller studied in Vienna. "So the answer is Vienna."', "Anna Keller studied in Vienna."),
    # "Answer: X" on a line of its own, and a revised conclusion: both go
    ("Keller studied in Vienna.\nThe answer is Graz.\nAnswer: Vienna", "Keller studied in Vienna."),
    # evidence that merely mentions the answer is evidence, and stays
    ("Anna Keller studied at the University of Vienna.", "Anna Keller studied at the University of Vienna."),
])
def test_evidence_form_drops_every_answer_statement(rationale, evidence):
    rows, counts = distillation_rows([{"id": "a", "rationale": rationale, "answer": "Vienna"}], "evidence")
    assert [r["rationale"] for r in rows] == [evidence]
    assert not answer_statements(rows[0]["rationale"])
    assert counts == {"stated": int(rationale != evidence), "dropped": 0}
    assert rows[0]["answer"] == "Vienna"  # the rest of the row is kept


def test_full_form_keeps_rationales_and_an_answer_only_rationale_is_dropped():
    kept = [{"id": "a", "rationale": "So the answer is Vienna."}, {"id": "b", "rationale": "X is Y. So the answer is Y."}]
    assert distillation_rows(kept, "full") == (kept, {"stated": 0, "dropped": 0})
    rows, counts = distillation_rows(kept, "evidence")
    assert [r["id"] for r in rows] == ["b"] and counts == {"stated": 2, "dropped": 1}
    assert kept[1]["rationale"] == "X is Y. So the answer is Y."  # the input rows are not changed
    with pytest.raises(ValueError, match="rationale_form"):
        distillation_rows(kept, "short")


def test_each_form_has_its_own_prompt():
    full, evidence = rationale_messages(Q, C), rationale_messages(Q, C, form="evidence")
    assert full == rationale_messages(Q, C, form="full")
    assert full[0]["content"] == Rationalize.instructions.strip()
    assert evidence[0]["content"] == RationalizeEvidence.instructions.strip()
    assert "final answer" in evidence[0]["content"] and full[1] == evidence[1]


def test_the_program_runs_the_student_in_its_form():
    import dspy
    from dspy.lm15 import Message, Response, TextPart, Usage

    seen = []

    class Engine:
        def complete(self, request):
            system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
            seen.append(system)
            text = "Anna Keller studied in Vienna." if len(seen) % 2 else "[[ ## answer ## ]]\nVienna\n\n[[ ## completed ## ]]"
            return Response(id=None, model="s", message=Message.assistant([TextPart(text)]), finish_reason="stop",
                            usage=Usage(input_tokens=1, output_tokens=1))

        def close(self):
            pass

    lm = dspy.LM("local/s", engine=Engine(), cache=False, temperature=0.0, max_tokens=8)
    program = LMGuidedCoT(lm, lm, rationale_form="evidence")
    assert program(question=Q, context=C).answer == "Vienna"
    assert seen[0] == RationalizeEvidence.instructions.strip()
    full = program.with_rationale_form("full")
    assert full.rationale_form == "full" and program.rationale_form == "evidence"  # a copy
    assert full.small_lm is lm and full.large_lm is lm
    full(question=Q, context=C)
    assert seen[2] == Rationalize.instructions.strip()


@pytest.mark.parametrize("form", ["full", "evidence"])
def test_kd_rl_and_inference_prompts_are_the_same_in_each_form(form, tiny_causal_path):
    """The ids KD trains on as the prompt and RL's prompt text are what inference feeds the student."""
    from lmcot.config import SmallLMConfig
    from lmcot.hf_engine import hf_engine_of
    from lmcot.lms import build_lm
    from lmcot.optimizers.distill import build_example, prompt_text
    from lmcot.optimizers.training import build_prompt_rows

    lm = build_lm(SmallLMConfig(model=str(tiny_causal_path), device="cpu", dtype="float32", max_tokens=2, cache=False))
    engine = hf_engine_of(lm)
    seen = record_prompt_ids(engine)
    LMGuidedCoT(lm, None, rationale_form=form).write_rationale(Q, C, {})
    example = build_example(engine.tokenizer, False, {"question": Q, "context": C, "rationale": "R."}, 512, form=form)
    n_prompt = example["labels"].count(-100)
    assert example["input_ids"][:n_prompt] == seen[0]
    rl_prompt = build_prompt_rows([{"question": Q, "context": C, "answer": "Vienna"}], engine.tokenizer, False,
                                  rationale_form=form)[0]["prompt"]
    assert rl_prompt == prompt_text(engine.tokenizer, False, Q, C, form)
    other = "full" if form == "evidence" else "evidence"
    assert rl_prompt != prompt_text(engine.tokenizer, False, Q, C, other)


def test_compile_in_evidence_form_distils_evidence_and_saves_the_form(oracle_server, tiny_causal_path, tmp_path,
                                                                    monkeypatch):
    """The compiler strips the teacher's answer statements before distillation, runs the student in the
    evidence form, and program.json records the form, which wins over a caller's config on load."""
    import lmcot.optimizers.distill as distill_module
    from lmcot.config import LMCoTConfig
    from lmcot.programs import LMGuidedCoT
    from lmcot.optimizers.compiler import compile_from_config

    distilled: list[dict] = []

    def fake_distill(kept, student, out_dir, kd, small_cfg, progress=True):
        distilled.extend(kept)  # what KD would train on; the start weights stand in for the trained ones
        return str(tiny_causal_path)

    monkeypatch.setattr(distill_module, "distill", fake_distill)
    cfg = LMCoTConfig.model_validate({
        "small_lm": {"model": str(tiny_causal_path), "max_tokens": 8},
        "large_lm": {"model": "openai/oracle", "api_base": oracle_server.url, "num_retries": 0},
        "data": {"train": str(HOTPOT), "train_limit": 4, "dev": str(HOTPOT), "dev_limit": 2, "max_context_tokens": 200},
        "kd": {"num_samples": 1, "max_steps": 1, "rationale_form": "evidence", "report_to": ["none"]},
        "stages": ["kd"], "cache_dir": str(tmp_path / "cache")})
    report = compile_from_config(cfg, tmp_path / "out", progress=False)
    assert report["compiled"]["n"] == 2
    teacher = [json.loads(x) for x in (tmp_path / "out" / "kd" / "traces.jsonl").read_text().splitlines()]
    assert all(answer_statements(t["rationale"]) for t in teacher)  # the teacher concludes ...
    assert len(distilled) == 4 and not any(answer_statements(r["rationale"]) for r in distilled)  # ... the student not
    done = json.loads((tmp_path / "out" / "kd" / "DONE.json").read_text())
    assert done["summary"]["rationale_form"] == {"form": "evidence", "stated": 4, "dropped": 0}
    saved = json.loads((tmp_path / "out" / "program.json").read_text())
    assert saved["rationale_form"] == "evidence"
    caller = cfg.model_copy(deep=True)
    caller.kd.rationale_form = "full"
    for program in (LMGuidedCoT.from_folder(tmp_path / "out"), LMGuidedCoT.from_folder(tmp_path / "out", caller)):
        assert program.rationale_form == "evidence"
        assert program.rationalize.signature.instructions == RationalizeEvidence.instructions
