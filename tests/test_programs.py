"""The programs with scripted LMs (no network): who calls which LM with what prompt, self-consistency
voting, the small LM's plain prompt, and saving/loading programs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import dspy
import pytest
from support.scripted import chat_reply, scripted_lm

from lmcot.config import ConfigError, LMCoTConfig
from lmcot.lms import build_lm
from lmcot.metrics import normalize_answer
from lmcot.programs.program_io import PROGRAM_FILE, save_program
from lmcot.programs import (
    Answer,
    AnswerDirectly,
    CoTPrompting,
    LMGuidedCoT,
    RationaleAdapter,
    Rationalize,
    StandardPrompting,
    majority_vote,
    rationale_messages,
)

SECRET = "sk-test-SECRET123"
QUESTION = "Which band recorded Abbey Road?"
CONTEXT = "Abbey Road: Abbey Road is an album by the Beatles.\nThe Who: The Who are an English rock band."


def user_turn(messages) -> str:
    return messages[-1]["content"]


@pytest.fixture()
def trap_lm():
    """A global LM that must never be called: programs use the LMs they were given."""

    def fail(*_):
        raise AssertionError("the global dspy LM was called")

    lm, _ = scripted_lm("trap", fail)
    with dspy.context(lm=lm):
        yield lm


# --------------------------------------------------------------------------- routing

def test_guided_cot_routes_rationalize_to_small_and_answer_to_large(trap_lm):
    rationale = "Abbey Road is an album by the Beatles, so the band is the Beatles."
    small, small_engine = scripted_lm("small", lambda m, c, i: rationale)
    large, large_engine = scripted_lm("large", lambda m, c, i: chat_reply(answer="The Beatles"))
    pred = LMGuidedCoT(small, large)(question=QUESTION, context=CONTEXT)

    assert pred.answer == "The Beatles"
    assert pred.rationale == rationale
    assert pred.rationales == [rationale] and pred.answers == ["The Beatles"]
    assert len(small_engine.calls) == 1 and len(large_engine.calls) == 1
    # The small LM sees only the plain Rationalize prompt ...
    assert small_engine.calls[0]["messages"] == rationale_messages(QUESTION, CONTEXT)
    assert "[[ ##" not in small_engine.prompts()[0]
    # ... and the large LM only the Answer prompt, with the rationale in it.
    large_prompt = large_engine.prompts()[0]
    assert "[[ ## rationale ## ]]\n" + rationale in large_prompt
    assert QUESTION in large_prompt and "Abbey Road is an album by the Beatles." in large_prompt
    assert "`answer`" in large_engine.calls[0]["messages"][0]["content"]
    assert Rationalize.instructions.strip() not in large_prompt


def test_guided_cot_with_one_sample_is_greedy(trap_lm):
    small, small_engine = scripted_lm("small", lambda m, c, i: "r")
    large, _ = scripted_lm("large", lambda m, c, i: chat_reply(answer="x"))
    LMGuidedCoT(small, large, num_samples=1, sample_temperature=0.9)(question=QUESTION, context=CONTEXT)
    assert [c["config"].temperature for c in small_engine.calls] == [0.0]


def test_num_samples_must_be_positive():
    with pytest.raises(ValueError):
        LMGuidedCoT(None, None, num_samples=0)


# --------------------------------------------------------------------------- the small LM's prompt

def test_rationale_adapter_prompt_shape():
    messages = rationale_messages(QUESTION, CONTEXT)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == Rationalize.instructions.strip()
    user = messages[1]["content"]
    assert user == f"Context:\n{CONTEXT}\n\nQuestion:\n{QUESTION}\n\nRationale:"
    assert user.index(CONTEXT) < user.index(QUESTION)  # context first: left-truncation keeps the question
    assert user.endswith("Rationale:")


def test_rationale_adapter_keeps_demos_as_turns():
    demo = {"question": "Q1?", "context": "C1", "rationale": "  R1.  "}
    messages = RationaleAdapter().format(Rationalize, demos=[demo], inputs={"question": "Q2?", "context": "C2"})
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1]["content"] == "Context:\nC1\n\nQuestion:\nQ1?\n\nRationale:"
    assert messages[2]["content"] == "R1."
    assert messages[3]["content"].startswith("Context:\nC2")


def test_rationale_adapter_parses_the_whole_completion():
    completion = "  First, Abbey Road: it is by the Beatles.\n[[ ## answer ## ]]\nAnswer: The Beatles\n\n"
    parsed = RationaleAdapter().parse(Rationalize, completion)
    assert parsed == {"rationale": completion.strip()}


def test_rationale_adapter_refuses_several_outputs():
    class TwoOutputs(dspy.Signature):
        question: str = dspy.InputField()
        rationale: str = dspy.OutputField()
        answer: str = dspy.OutputField()

    with pytest.raises(ValueError, match="exactly one output field"):
        RationaleAdapter().format(TwoOutputs, demos=[], inputs={"question": "q"})


def test_empty_small_lm_output_is_an_empty_rationale(trap_lm):
    small, _ = scripted_lm("small", lambda m, c, i: "")
    large, large_engine = scripted_lm("large", lambda m, c, i: chat_reply(answer="The Beatles"))
    pred = LMGuidedCoT(small, large)(question=QUESTION, context=CONTEXT)
    assert pred.rationale == "" and pred.answer == "The Beatles"
    assert len(large_engine.calls) == 1


# --------------------------------------------------------------------------- self-consistency

WORDS = ["alpha", "bravo", "charlie", "delta", "echo"]


def voting_lms(answers_by_word: dict[str, str], cache: bool = False):
    small, small_engine = scripted_lm("small", lambda m, c, i: f"Rationale {WORDS[i % len(WORDS)]}.", cache=cache)

    def answer(messages, config, i):
        text = user_turn(messages)
        word = next(w for w in WORDS if f"Rationale {w}." in text)
        return chat_reply(answer=answers_by_word[word])

    large, large_engine = scripted_lm("large", answer, cache=cache)
    return small, small_engine, large, large_engine


def test_self_consistency_majority_over_normalised_answers(trap_lm):
    mapping = {"alpha": "Rolling Stones", "bravo": "The Beatles.", "charlie": "The Who", "delta": "beatles",
               "echo": "the  Beatles"}
    small, small_engine, large, large_engine = voting_lms(mapping)
    pred = LMGuidedCoT(small, large, num_samples=5, sample_temperature=0.7)(question=QUESTION, context=CONTEXT)

    assert len(small_engine.calls) == 5 and len(large_engine.calls) == 5
    assert all(c["config"].temperature == 0.7 for c in small_engine.calls)
    assert sorted(pred.rationales) == sorted(f"Rationale {w}." for w in WORDS)
    # answers line up with their rationales
    for r, a in zip(pred.rationales, pred.answers):
        assert mapping[r.split()[1].rstrip(".")] == a
    assert normalize_answer(pred.answer) == "beatles"  # 3 votes ("The Beatles." / "beatles" / "the  Beatles") vs 1 vs 1
    first_beatles = next(i for i, a in enumerate(pred.answers) if normalize_answer(a) == "beatles")
    assert (pred.answer, pred.rationale) == (pred.answers[first_beatles], pred.rationales[first_beatles])


def test_self_consistency_tie_goes_to_the_first_answer(trap_lm):
    mapping = {"alpha": "Paris", "bravo": "London", "charlie": "paris.", "delta": "London", "echo": "Rome"}
    small, _, large, _ = voting_lms(mapping)
    pred = LMGuidedCoT(small, large, num_samples=5)(question=QUESTION, context=CONTEXT)
    keys = [normalize_answer(a) for a in pred.answers]
    first_tied = next(k for k in keys if k in {"paris", "london"})
    assert normalize_answer(pred.answer) == first_tied
    assert pred.answer == pred.answers[keys.index(first_tied)]


def test_equal_samples_are_answered_once_and_each_gets_its_vote(trap_lm):
    """Samples that wrote the same rationale make the same answer request: sent together they would
    all miss the cache and each be paid for (a CI run once caught such a repeat). One call each (the
    scripted LM caches nothing, so every request sent would be counted)."""

    def answer(messages, config, index):
        return chat_reply(answer="Paris" if "Same." in user_turn(messages) else "Rome")

    large, large_engine = scripted_lm("large", answer)
    program = LMGuidedCoT(None, large, num_samples=4)
    program.write_rationales = lambda question, context, k=None: ["Same.", "Other.", "Same.", "Same."]
    pred = program(question=QUESTION, context=CONTEXT)
    assert len(large_engine.calls) == 2
    assert pred.answers == ["Paris", "Rome", "Paris", "Paris"] and pred.answer == "Paris"


def test_samples_are_not_served_from_cache_as_one(trap_lm, fresh_cache):
    mapping = dict(zip(WORDS, ["a1", "b2", "c3", "d4", "e5"]))
    small, small_engine, large, large_engine = voting_lms(mapping, cache=True)
    program = LMGuidedCoT(small, large, num_samples=5)
    first = program(question=QUESTION, context=CONTEXT)
    # five identical requests, yet five calls: each sample has its own rollout id in the cache key
    assert len(small_engine.calls) == 5
    assert len(set(first.rationales)) == 5
    # a rerun is served from the cache, sample by sample
    second = program(question=QUESTION, context=CONTEXT)
    assert len(small_engine.calls) == 5 and len(large_engine.calls) == 5
    assert second.rationales == first.rationales and second.answer == first.answer


def test_samples_reach_an_in_process_small_lm_as_one_batch(tiny_causal_path, trap_lm):
    from lmcot.config import SmallLMConfig

    small = build_lm(SmallLMConfig(model=str(tiny_causal_path), max_tokens=8, cache=False))
    sizes = []
    orig = small.engine.model.generate
    small.engine.model.generate = lambda *a, **k: (sizes.append(int(k["input_ids"].shape[0])), orig(*a, **k))[1]
    large, _ = scripted_lm("large", lambda m, c, i: chat_reply(answer="x"))
    pred = LMGuidedCoT(small, large, num_samples=4)(question=QUESTION, context=CONTEXT)
    assert len(pred.rationales) == 4
    assert sum(sizes) == 4 and len(sizes) <= 2, sizes


@pytest.mark.parametrize("answers, expected", [
    (["The Beatles."], 0),
    (["The Beatles.", "The Who", "beatles"], 0),
    (["The Who", "The Beatles.", "beatles"], 1),
    (["Paris", "London", "london", "paris"], 0),  # tie: first appearance
    (["", "x"], 1),  # empty answers do not vote ...
    (["the", "a", "Yes", "yes"], 2),  # ... nor do answers that normalise to nothing
    ([None, "x"], 1),
    (["", "the", "."], 0),  # unless all are empty: then the first
    (["", ""], 0),
])
def test_majority_vote(answers, expected):
    assert majority_vote(answers) == expected


def test_majority_vote_needs_an_answer():
    with pytest.raises(ValueError):
        majority_vote([])


# --------------------------------------------------------------------------- baselines

def test_standard_prompting_calls_only_the_large_lm(trap_lm):
    large, engine = scripted_lm("large", lambda m, c, i: chat_reply(answer="The Beatles"))
    pred = StandardPrompting(large)(question=QUESTION, context=CONTEXT)
    assert pred.answer == "The Beatles"
    assert len(engine.calls) == 1
    prompt = engine.prompts()[0]
    assert QUESTION in prompt and "rationale" not in prompt.lower() and "reasoning" not in prompt
    assert AnswerDirectly.instructions.split()[0] in prompt


def test_cot_prompting_calls_only_the_large_lm_and_asks_for_step_by_step_reasoning(trap_lm):
    large, engine = scripted_lm(
        "large", lambda m, c, i: chat_reply(reasoning="Abbey Road is by the Beatles.", answer="The Beatles"))
    pred = CoTPrompting(large)(question=QUESTION, context=CONTEXT)
    assert pred.answer == "The Beatles"
    assert pred.rationale == "Abbey Road is by the Beatles."
    assert len(engine.calls) == 1
    system = engine.calls[0]["messages"][0]["content"]
    assert "`reasoning`" in system
    assert "step by step" in system.lower()
    assert system.index("`reasoning`") < system.index("`answer`")  # reasoning is written first


# --------------------------------------------------------------------------- saving and loading

@pytest.fixture()
def program_config(monkeypatch, tmp_path, tiny_causal_path):
    monkeypatch.setenv("LMCOT_TEST_KEY", SECRET)
    out = tmp_path / "compiled"
    shutil.copytree(tiny_causal_path, out / "small_lm")
    cfg = LMCoTConfig.model_validate({
        "small_lm": {"model": str(out / "small_lm"), "max_tokens": 8},
        "large_lm": {"model": "openai/oracle", "api_base": "http://127.0.0.1:9/v1", "api_key_env": "LMCOT_TEST_KEY"},
    })
    return cfg, out


def test_dspy_state_file_round_trip(program_config, tmp_path):
    cfg, _ = program_config
    program = LMGuidedCoT(build_lm(cfg.small_lm), build_lm(cfg.large_lm))
    program.rationalize.demos = [dspy.Example(question="Q1?", context="C1", rationale="R1")]
    program.answer.signature = program.answer.signature.with_instructions("Answer tersely.")
    path = tmp_path / "p.json"
    program.save(path)

    state = json.loads(path.read_text())
    assert {"rationalize", "answer", "metadata"} <= set(state)
    assert SECRET not in path.read_text()

    fresh = LMGuidedCoT(build_lm(cfg.small_lm), build_lm(cfg.large_lm))
    fresh.load(path, allow_unsafe_lm_state=True)  # the small LM's engine is a custom class
    assert [d["rationale"] for d in fresh.rationalize.demos] == ["R1"]
    assert fresh.answer.signature.instructions == "Answer tersely."
    assert fresh.small_lm.model == program.small_lm.model
    assert fresh.large_lm.model == "openai/oracle"


def test_save_program_keeps_no_secret_and_loads_back(program_config):
    cfg, out = program_config
    program = LMGuidedCoT(build_lm(cfg.small_lm), build_lm(cfg.large_lm), num_samples=3, sample_temperature=0.5,
                          select="quality:factuality")
    assert program.large_lm.kwargs.get("api_key") == SECRET  # the key is really in use ...
    program.rationalize.demos = [dspy.Example(question="Q1?", context="C1", rationale="R1")]
    save_program(program, out, cfg)

    for file in out.rglob("*"):  # ... and in no file of the program folder
        if file.is_file():
            assert SECRET.encode() not in file.read_bytes(), f"secret written to {file}"

    loaded = LMGuidedCoT.from_folder(out)
    assert isinstance(loaded, LMGuidedCoT)
    assert loaded.num_samples == 3 and loaded.sample_temperature == 0.5
    assert loaded.select == "quality:factuality" and loaded.scorer is not None  # how it picks among samples
    assert loaded.deepcopy().select == "quality:factuality"
    assert loaded.small_lm is not None and loaded.small_lm.model == program.small_lm.model
    # Without a config, the large LM is the one the program ran with, by name only: the endpoint and
    # the key variable are the caller's to give (a folder is untrusted input), never the folder's.
    assert loaded.large_lm is not None and loaded.large_lm.model == "openai/oracle"
    assert loaded.large_lm.kwargs.get("api_base") is None and loaded.large_lm.kwargs.get("api_key") != SECRET
    assert [d["rationale"] for d in loaded.rationalize.demos] == ["R1"]
    assert LMGuidedCoT.from_folder(out / PROGRAM_FILE).small_lm.model == program.small_lm.model
    # With the caller's config: its endpoint, its key from the environment, the folder's small LM.
    mine = LMGuidedCoT.from_folder(out, cfg)
    assert mine.large_lm.kwargs.get("api_key") == SECRET
    assert mine.large_lm.kwargs.get("api_base") == "http://127.0.0.1:9/v1"
    assert mine.small_lm.model == program.small_lm.model


def test_program_folder_can_be_moved(program_config, tmp_path):
    cfg, out = program_config
    cfg = cfg.model_copy(deep=True)
    cfg.small_lm.model = "small_lm"  # relative to the program folder
    save_program(LMGuidedCoT(build_lm(cfg.small_lm.model_copy(update={"model": str(out / "small_lm")})),
                             build_lm(cfg.large_lm)), out, cfg)
    moved = tmp_path / "elsewhere"
    shutil.move(str(out), moved)
    loaded = LMGuidedCoT.from_folder(moved)
    assert Path(loaded.small_lm.engine.model_id) == moved / "small_lm"


def test_loading_needs_the_key_variable(program_config, monkeypatch):
    cfg, out = program_config
    save_program(LMGuidedCoT(build_lm(cfg.small_lm), build_lm(cfg.large_lm)), out, cfg)
    monkeypatch.delenv("LMCOT_TEST_KEY")
    with pytest.raises(ConfigError, match="LMCOT_TEST_KEY"):
        LMGuidedCoT.from_folder(out, cfg)  # the caller's config names the key variable


def test_loading_something_that_is_not_a_program(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(PROGRAM_FILE)):
        LMGuidedCoT.from_folder(tmp_path)
    (tmp_path / PROGRAM_FILE).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not an lmcot program"):
        LMGuidedCoT.from_folder(tmp_path)


def test_answer_signature_has_the_rationale_input():
    assert list(Answer.input_fields) == ["question", "context", "rationale"]
    assert list(Answer.output_fields) == ["answer"]
