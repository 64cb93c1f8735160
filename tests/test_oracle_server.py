"""OracleServer / OracleResponder: a real loopback HTTP server driven through litellm and DSPy."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from support import FALLBACK, OracleResponder, OracleServer, load_examples
from support.examples import BRIDGE, COMPARISON

EXAMPLES = [COMPARISON, BRIDGE]
DISTRACTOR_TITLES = {"Paris", "Berlin"}


def context_of(ex: dict) -> str:
    return "\n".join(f"{t}: {' '.join(s)}" for t, s in ex["paragraphs"])


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def port_is_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture()
def srv():
    with OracleServer(OracleResponder(EXAMPLES)) as server:
        yield server


def test_start_stop_port0_and_models_endpoint() -> None:
    server = OracleServer().start()
    try:
        assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}/v1"
        with urllib.request.urlopen(server.url + "/models", timeout=5) as resp:
            assert json.load(resp)["data"][0]["id"] == "oracle"
    finally:
        server.stop()
    assert port_is_closed(server.port)
    server.stop()  # stopping twice is harmless


def test_litellm_completion_and_request_log(srv: OracleServer) -> None:
    import litellm

    msg = user(f"Context:\n{context_of(BRIDGE)}\n\nQuestion:\n{BRIDGE['question']}\n\nAnswer:")
    resp = litellm.completion(model="openai/oracle", api_base=srv.url, api_key="sk-test", messages=msg)
    assert resp.choices[0].message.content == "Vienna"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.completion_tokens == 1 and resp.usage.total_tokens > resp.usage.prompt_tokens
    assert srv.request_count == 1 and srv.requests[0]["messages"] == msg
    assert srv.requests[0]["model"] == "oracle"
    assert srv.records[0].has_auth and "sk-test" not in repr(srv.records)


def test_dspy_predict_chat_and_json_adapters(srv: OracleServer) -> None:
    import dspy

    lm = dspy.LM("openai/oracle", api_base=srv.url, api_key="sk-test", engine="litellm", cache=False)
    inputs = {"question": COMPARISON["question"], "context": context_of(COMPARISON)}
    with dspy.context(lm=lm):
        assert dspy.Predict("question, context -> answer")(**inputs).answer == "yes"
        cot = dspy.ChainOfThought("question, context -> answer")(**inputs)
        assert cot.answer == "yes"
        assert cot.reasoning.startswith("Scott Derrickson is an American director and screenwriter.")
        assert cot.reasoning.endswith("So the answer is yes.")
        with dspy.context(adapter=dspy.JSONAdapter()):
            assert dspy.ChainOfThought("question, context -> answer")(**inputs).answer == "yes"
    system = srv.requests[0]["messages"][0]["content"]
    assert "Your output fields are:\n1. `answer` (str)" in system


def test_n_choices_and_varied_samples(srv: OracleServer) -> None:
    import litellm

    msg = user(f"Question: {BRIDGE['question']}\nThink step by step.")
    resp = litellm.completion(
        model="openai/oracle", api_base=srv.url, api_key="sk-test", messages=msg, n=4, temperature=1.0
    )
    texts = [c.message.content for c in resp.choices]
    assert len(texts) == 4 and [c.index for c in resp.choices] == [0, 1, 2, 3]
    assert all(t.endswith("So the answer is Vienna.") and "Anna Keller" in t for t in texts)
    assert len(set(texts)) > 1  # sampled choices differ in wording


def test_wrong_rate_gives_deterministic_distractors() -> None:
    noisy = OracleResponder(EXAMPLES, wrong_rate=0.5, seed=7)
    body = {"messages": user(f"Question: {BRIDGE['question']}\nAnswer:"), "n": 40, "temperature": 0.7}
    answers = [c["text"] for c in noisy(body)]
    assert {"Vienna"} < set(answers) <= {"Vienna"} | DISTRACTOR_TITLES
    again = OracleResponder(EXAMPLES, wrong_rate=0.5, seed=7)
    assert [c["text"] for c in again(body)] == answers  # same seed, same request -> same samples
    clean = OracleResponder(EXAMPLES)
    assert {c["text"] for c in clean(body)} == {"Vienna"}


def _judge_prompt(rationale: str) -> list[dict]:
    return [
        {"role": "system", "content": "You check rationales."},
        {
            "role": "user",
            "content": f"Context:\n{context_of(BRIDGE)}\n\nQuestion: {BRIDGE['question']}\n\n"
            f"Rationale: {rationale}\n\nDoes the rationale state a fact needed? Answer with Yes or No.",
        },
    ]


def test_judge_logprobs_parsed_by_litellm(srv: OracleServer) -> None:
    import litellm

    def ask(rationale: str):
        return litellm.completion(
            model="openai/oracle",
            api_base=srv.url,
            api_key="sk-test",
            messages=_judge_prompt(rationale),
            logprobs=True,
            top_logprobs=2,
            max_tokens=1,
        ).choices[0]

    good = ask("Anna Keller studied at the University of Vienna.")
    assert good.message.content == "Yes"
    first = good.logprobs.content[0]
    assert first.token == "Yes" and math.isclose(math.exp(first.logprob), 0.9)
    assert {t.token for t in first.top_logprobs} == {"Yes", "No"}
    # The context in the same prompt holds every gold sentence; only the rationale counts.
    bad = ask("Paris is the capital of France.")
    assert bad.message.content == "No"
    p_yes = {t.token: math.exp(t.logprob) for t in bad.logprobs.content[0].top_logprobs}["Yes"]
    assert math.isclose(p_yes, 0.1)

    srv.support_logprobs = False  # a server without logprobs: clients must fall back
    assert getattr(ask("Anna Keller studied at the University of Vienna."), "logprobs", None) is None


def test_default_logprobs_for_plain_text() -> None:
    with OracleServer(lambda body: "Paris is nice") as server:
        import litellm

        resp = litellm.completion(
            model="openai/oracle",
            api_base=server.url,
            api_key="k",
            messages=user("hi"),
            logprobs=True,
            top_logprobs=3,
        )
    content = resp.choices[0].logprobs.content
    assert [t.token for t in content] == ["Paris", " is", " nice"]
    assert math.isclose(math.exp(content[0].logprob), 0.8) and len(content[0].top_logprobs) == 3


def test_fail_next_then_litellm_retries(srv: OracleServer) -> None:
    import litellm

    kwargs = {"model": "openai/oracle", "api_base": srv.url, "api_key": "sk-test", "max_retries": 0}
    msg = user(f"Question: {COMPARISON['question']}\nAnswer:")
    srv.fail_next(1, status=429)
    with pytest.raises(litellm.RateLimitError):
        litellm.completion(messages=msg, **kwargs)
    srv.fail_next(2, status=429)
    resp = litellm.completion(messages=msg, num_retries=2, **kwargs)
    assert resp.choices[0].message.content == "yes"
    srv.fail_next(1, status=500)
    assert litellm.completion(messages=msg, num_retries=1, **kwargs).choices[0].message.content == "yes"
    assert [r.status for r in srv.records] == [429, 429, 429, 200, 500, 200]
    assert srv.request_count == 6


def test_unknown_question_and_responder_forms(monkeypatch) -> None:
    import support.oracle_server as oracle_server_module

    responder = OracleResponder(EXAMPLES)
    assert responder({"messages": user("What is the airspeed of a swallow?")}) == [{"text": FALLBACK}]
    with OracleServer(lambda body: ["a", {"text": "b"}]) as server:
        import litellm

        resp = litellm.completion(
            model="openai/x", api_base=server.url, api_key="k", messages=user("q"), n=3, stop=["zz"]
        )
        assert [c.message.content for c in resp.choices] == ["a", "b", "a"]
        # `delay`: the server sleeps that long before it answers; the sleep is recorded, not timed.
        events: list = []
        monkeypatch.setattr(oracle_server_module, "time",
                            SimpleNamespace(sleep=lambda s: events.append(("sleep", s)), time=time.time))
        server.responder = lambda body: events.append("answer") or "a"
        server.delay = 0.2
        litellm.completion(model="openai/x", api_base=server.url, api_key="k", messages=user("q"))
        assert events == [("sleep", 0.2), "answer"]


def test_responder_reads_a_real_chat_adapter_prompt() -> None:
    import dspy

    sig = dspy.ChainOfThought("question, context -> answer").predict.signature
    inputs = {"question": BRIDGE["question"], "context": context_of(BRIDGE)}
    messages = dspy.ChatAdapter().format(sig, demos=[], inputs=inputs)
    assert OracleResponder.output_fields(messages, {}) == ["reasoning", "answer"]
    text = OracleResponder(EXAMPLES)({"messages": messages})[0]["text"]
    assert text == (
        "[[ ## reasoning ## ]]\nThe Zorbatron was invented by Anna Keller. Anna Keller studied at the "
        "University of Vienna. So the answer is Vienna.\n\n[[ ## answer ## ]]\nVienna\n\n[[ ## completed ## ]]"
    )


@pytest.mark.slow
def test_cli_serves_a_data_file_until_sigterm(tmp_path: Path) -> None:
    # The official format: `context` instead of `paragraphs`, one field JSON-encoded as a string.
    record = {**BRIDGE, "context": BRIDGE["paragraphs"], "_id": None}
    del record["paragraphs"]
    record["supporting_facts"] = json.dumps(record["supporting_facts"])
    data = tmp_path / "dev.json"
    data.write_text(json.dumps([record]))
    assert load_examples(data)[0].gold_sentences[1] == "Anna Keller studied at the University of Vienna."
    with socket.socket() as s:  # a free port for the child
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "support.oracle_server", "--data", str(data), "--port", str(port)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line == f"oracle server listening on http://127.0.0.1:{port}/v1"
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            data=json.dumps({"model": "oracle", "messages": user(f"Question: {BRIDGE['question']}")}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert json.load(resp)["choices"][0]["message"]["content"] == "Vienna"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        proc.stdout.close()
    assert port_is_closed(port)


def test_judge_as_a_dspy_signature(srv: OracleServer) -> None:
    import dspy

    class Judge(dspy.Signature):
        """Does the rationale state a fact needed to answer the question? Answer with Yes or No."""

        question: str = dspy.InputField()
        context: str = dspy.InputField()
        rationale: str = dspy.InputField()
        verdict: bool = dspy.OutputField()

    lm = dspy.LM("openai/oracle", api_base=srv.url, api_key="sk-test", engine="litellm", cache=False)
    judge = dspy.Predict(Judge)
    base = {"question": BRIDGE["question"], "context": context_of(BRIDGE)}
    with dspy.context(lm=lm):
        assert judge(**base, rationale="The Zorbatron was invented by Anna Keller.").verdict is True
        assert judge(**base, rationale="Berlin is the capital of Germany.").verdict is False


def test_judge_reads_only_the_rationale_even_across_blank_lines() -> None:
    responder = OracleResponder(EXAMPLES)

    def verdict(rationale: str) -> str:
        return responder({"messages": _judge_prompt(rationale)})[0]["text"]

    assert verdict("Some preamble.\n\nAnna Keller studied at the University of Vienna.") == "Yes"
    assert verdict("The city is Vienna.") == "Yes"  # the gold answer also counts
    assert verdict("I am not sure.\n\nParis is the capital of France.") == "No"
