"""RL rewards: answer F1 through a real HTTP large LM, zero weights cost nothing, the aggregation
math, TRL's shared per-batch computation, and the logged total of real GRPO / seq2seq runs."""

from __future__ import annotations

import asyncio
import math

import pytest
from support.rl_helpers import (
    CountingReward,
    StandInScorer,
    first_half_letters,
    reward_log,
    rl_config,
    trainset,
)

from lmcot.config import LargeLMConfig  # noqa: E402
from lmcot.metrics.answer import answer_f1  # noqa: E402
from lmcot.optimizers.rewards import RewardSet, zscore  # noqa: E402

ORACLE_DATA = [
    {"question": "Which magazine was started first, Arthur's Magazine or First for Women?",
     "answer": "Arthur's Magazine",
     "paragraphs": [["Arthur's Magazine", ["Arthur's Magazine was an American literary periodical."]],
                    ["First for Women", ["First for Women is a woman's magazine."]]],
     "supporting_facts": [["Arthur's Magazine", 0]]},
    {"question": "Were Scott Derrickson and Ed Wood of the same nationality?", "answer": "yes",
     "paragraphs": [["Scott Derrickson", ["Scott Derrickson is an American director."]]],
     "supporting_facts": [["Scott Derrickson", 0]]},
]


@pytest.fixture()
def answer_server(tmp_path):
    """The oracle large LM on 127.0.0.1 and a DSPy cache in tmp (so every call reaches the server)."""
    from lmcot.lms import build_lm, cache_in
    from support.oracle_responder import OracleResponder
    from support.oracle_server import OracleServer

    with cache_in(tmp_path):
        srv = OracleServer(OracleResponder(ORACLE_DATA)).start()
        try:
            yield srv, build_lm(LargeLMConfig(model="openai/oracle", api_base=srv.url, num_retries=0))
        finally:
            srv.stop()


def _row(question: str, gold: str, rationale: str = "Some reasoning.") -> dict:
    return {"question": question, "context": "Arthur's Magazine: an American literary periodical.", "answer": gold,
            "rationale": rationale}


def test_answer_f1_reward_asks_the_large_lm(answer_server):
    srv, lm = answer_server
    rewards = RewardSet(rl_config(weights={"answer_f1": 1.0}), answer_lm=lm)
    q1, q2 = ORACLE_DATA[0]["question"], ORACLE_DATA[1]["question"]
    rows = [_row(q1, "Arthur's Magazine"),          # oracle answers the gold: F1 1
            _row(q1, "the magazine of Arthur"),     # partial overlap with the oracle's answer
            _row(q2, "no"),                         # oracle says yes: F1 0
            _row("A question the oracle does not know?", "Paris")]
    comps = rewards.components(rows)
    assert list(comps) == ["answer_f1"]
    expected = [1.0, answer_f1("Arthur's Magazine", "the magazine of Arthur"), 0.0, 0.0]
    assert 0 < expected[1] < 1
    assert comps["answer_f1"] == pytest.approx(expected)
    # Rows 0 and 1 make the same request (same question, context and rationale; only the gold differs):
    # it is sent once and scored against each row's gold.
    assert srv.request_count == 3
    # The Answer prompt carries each rollout's rationale to the large LM.
    rows2 = [_row(q1, "Arthur's Magazine", rationale="UNIQUE-RATIONALE-MARKER")]
    rewards.components(rows2)
    assert "UNIQUE-RATIONALE-MARKER" in str(srv.requests[-1]["messages"])


def test_equal_rollouts_are_asked_once_however_many_run_at_once(answer_server):
    """A GRPO group whose completions coincide: sent together, identical requests would all miss DSPy's
    cache and each be paid for (CI once saw such a pair); one call per distinct rationale instead."""
    srv, lm = answer_server
    srv.delay = 0.1  # long enough for concurrent calls to overlap
    q1 = ORACLE_DATA[0]["question"]
    rewards = RewardSet(rl_config(weights={"answer_f1": 1.0}, reward_concurrency=8), answer_lm=lm)
    rows = [_row(q1, "Arthur's Magazine", rationale=r) for r in ("Same.", "Same.", "Other.", "Same.", "Other.")]
    assert rewards.components(rows)["answer_f1"] == [1.0] * 5
    assert srv.request_count == 2
    assert sorted(str(b["messages"]).count("Same.") > 0 for b in srv.requests) == [False, True]


def test_zero_weight_rewards_are_not_computed(answer_server):
    srv, lm = answer_server
    scorer = StandInScorer()
    extra = CountingReward(first_half_letters)
    rewards = RewardSet(rl_config(weights={"factuality": 2.0, "answer_f1": 0.0}), answer_lm=lm, scorer=scorer,
                        extra={"letters": extra}, weights={"letters": 0.0})
    rows = [_row(ORACLE_DATA[0]["question"], "Arthur's Magazine", "one two three")]
    comps = rewards.components(rows)
    assert list(comps) == ["factuality"]
    assert srv.request_count == 0 and extra.calls == 0
    assert scorer.calls == [(1, ["factuality"])]  # only the weighted aspect, in one call
    funcs, weights = rewards.trl_reward_functions()
    assert [f.__name__ for f in funcs] == ["factuality"] and weights == [2.0]
    # With answer_f1 off no large LM is needed at all; with an aspect on, a scorer is.
    RewardSet(rl_config(weights={"factuality": 1.0}), answer_lm=None, scorer=scorer)
    with pytest.raises(ValueError, match="scorer"):
        RewardSet(rl_config(weights={"factuality": 1.0}), answer_lm=lm)
    with pytest.raises(ValueError, match="answer_lm"):
        RewardSet(rl_config(weights={"answer_f1": 1.0}), answer_lm=None)
    with pytest.raises(ValueError, match="every reward weight is 0"):
        RewardSet(rl_config(), answer_lm=None)


def test_from_config_builds_the_rationale_scorer_only_when_needed():
    from lmcot.config import LMCoTConfig
    from lmcot.metrics.rationale import RationaleScorer

    off = {name: 0.0 for name in rl_config().weights.model_dump()}
    cfg = LMCoTConfig(rl={"weights": {**off, "readability": 1.0, "relevance": 0.5}})  # cheap backends by default
    rewards = RewardSet.from_config(cfg, answer_lm=None)
    assert isinstance(rewards.scorer, RationaleScorer) and rewards.names == ["relevance", "readability"]
    rows = [_row("Which magazine?", "x", "Arthur's Magazine was an American literary periodical."), _row("q", "x", "")]
    comps = rewards.components(rows)
    assert all(0.0 <= v <= 1.0 for vs in comps.values() for v in vs)
    assert comps["relevance"][0] > comps["relevance"][1] == 0.0  # an empty rationale scores 0
    only_extra = LMCoTConfig(rl={"weights": off})
    assert RewardSet.from_config(only_extra, None, extra={"letters": first_half_letters}).scorer is None


def _fixed_rewards(aggregation: str) -> RewardSet:
    return RewardSet(rl_config(aggregation=aggregation), answer_lm=None,
                     extra={"a": lambda rows: [1.0, 2.0, 3.0, 6.0][: len(rows)],
                            "b": lambda rows: [0.5] * len(rows),
                            "c": lambda rows: [1.0, 0.0, 0.0, 1.0][: len(rows)]},
                     weights={"a": 0.5, "b": 2.0, "c": -1.0})


def test_weighted_sum_math():
    rewards = _fixed_rewards("weighted_sum")
    comps = rewards.components([_row("q", "g")] * 4)
    assert comps == {"a": [1.0, 2.0, 3.0, 6.0], "b": [0.5] * 4, "c": [1.0, 0.0, 0.0, 1.0]}
    assert rewards.total(comps) == pytest.approx([0.5 + 1 - 1, 1 + 1, 1.5 + 1, 3 + 1 - 1])
    metrics = rewards.log_metrics(comps)
    assert metrics["reward"] == pytest.approx(sum(rewards.weights[n] * metrics[f"rewards/{n}/mean"] for n in "abc"))
    assert metrics["rewards/a/mean"] == pytest.approx(3.0)


def test_normalize_sum_math():
    rewards = _fixed_rewards("normalize_sum")
    comps = rewards.components([_row("q", "g")] * 4)
    za = [(x - 3.0) / math.sqrt(3.5) for x in [1.0, 2.0, 3.0, 6.0]]  # population std of a is sqrt(3.5)
    zc = [1.0, -1.0, -1.0, 1.0]
    assert zscore([0.5] * 4) == [0.0] * 4  # a constant component contributes nothing
    assert rewards.total(comps) == pytest.approx([0.5 * a - c for a, c in zip(za, zc)])
    metrics = rewards.log_metrics(comps)
    assert metrics["raw_rewards/a/mean"] == pytest.approx(3.0)
    assert metrics["rewards/a/mean"] == pytest.approx(0.0, abs=1e-12)


def test_trl_reward_functions_share_one_computation():
    scorer = StandInScorer()
    counted = CountingReward(first_half_letters)
    rewards = RewardSet(rl_config(weights={"fluency": 1.0, "factuality": 0.5}), answer_lm=None, scorer=scorer,
                        extra={"letters": counted}, weights={"letters": 3.0})
    funcs, weights = rewards.trl_reward_functions()
    assert [f.__name__ for f in funcs] == ["factuality", "fluency", "letters"] and weights == [0.5, 1.0, 3.0]
    rows = trainset(2)
    completions = ["alpha beta gamma", "zzz yyy", "mad cab", ""]
    cols = {k: [rows[i // 2][k] for i in range(4)] for k in ("question", "context", "answer")}

    async def all_at_once():
        return await asyncio.gather(*[f(prompts=["p"] * 4, completions=completions, **cols) for f in funcs])

    results = asyncio.run(all_at_once())
    assert len(scorer.calls) == 1 and counted.calls == 1  # three functions, one computation
    expected = rewards.components([dict(question=cols["question"][i], context=cols["context"][i],
                                        answer=cols["answer"][i], rationale=c) for i, c in enumerate(completions)])
    assert dict(zip(rewards.names, results)) == expected
    rewards.close()


def test_trl_functions_return_zscores_and_log_raw_means_for_normalize_sum():
    rewards = _fixed_rewards("normalize_sum")
    funcs, weights = rewards.trl_reward_functions()
    logged: dict[str, float] = {}
    cols = {k: ["x"] * 4 for k in ("question", "context", "answer")}

    async def all_at_once():
        return await asyncio.gather(*[f(prompts=["p"] * 4, completions=["c1", "c2", "c3", "c4"], **cols,
                                        log_metric=logged.__setitem__) for f in funcs])

    results = dict(zip(rewards.names, asyncio.run(all_at_once())))
    assert results["a"] == pytest.approx([(x - 3.0) / math.sqrt(3.5) for x in [1.0, 2.0, 3.0, 6.0]])
    assert results["b"] == [0.0] * 4
    assert logged == pytest.approx({"raw_rewards/a/mean": 3.0, "raw_rewards/b/mean": 0.5, "raw_rewards/c/mean": 0.5})
    # What TRL computes from these (sum of weight x returned value) is the normalise-then-sum total.
    comps = rewards.components([_row("x", "x")] * 4)
    trl_total = [sum(w * results[n][i] for n, w in zip(rewards.names, weights)) for i in range(4)]
    assert trl_total == pytest.approx(rewards.total(comps))
    rewards.close()


def _check_logged_totals(entries: list[dict], weights: dict[str, float]) -> None:
    assert entries, "no reward entries were logged"
    for e in entries:
        total = sum(w * e[f"rewards/{n}/mean"] for n, w in weights.items())
        assert e["reward"] == pytest.approx(total, rel=1e-5, abs=1e-6)


@pytest.mark.slow
def test_grpo_log_reward_is_weighted_sum_of_components(tiny_causal_path, answer_server, tmp_path):
    from lmcot.config import SmallLMConfig
    from lmcot.optimizers.rl_grpo import train_grpo

    srv, lm = answer_server
    rl = rl_config(max_steps=2, weights={"fluency": 1.5, "answer_f1": 0.7})
    rewards = RewardSet(rl, answer_lm=lm, scorer=StandInScorer(), extra={"letters": first_half_letters},
                        weights={"letters": -2.0})
    data = [dict(r, question=d["question"], answer=d["answer"]) for r, d in zip(trainset(2), ORACLE_DATA)]
    train_grpo(str(tiny_causal_path), data, rewards, rl, SmallLMConfig(device="cpu"), tmp_path / "grpo")
    entries = reward_log(tmp_path / "grpo")
    assert [e["step"] for e in entries] == [1, 2]
    _check_logged_totals(entries, {"fluency": 1.5, "answer_f1": 0.7, "letters": -2.0})
    # The oracle knows both questions and answers their gold whatever the rationale says.
    assert all(e["rewards/answer_f1/mean"] == pytest.approx(1.0) for e in entries)
    assert srv.request_count > 0


@pytest.mark.slow
def test_seq2seq_log_reward_is_weighted_sum_of_components(tiny_seq2seq_path, tmp_path):
    from lmcot.config import SmallLMConfig
    from lmcot.optimizers.rl_seq2seq import train_seq2seq

    rl = rl_config(max_steps=2, kl=0.01, weights={"factuality": 0.25, "fluency": 1.5})
    rewards = RewardSet(rl, answer_lm=None, scorer=StandInScorer(), extra={"letters": first_half_letters},
                        weights={"letters": 3.0})
    train_seq2seq(str(tiny_seq2seq_path), trainset(4), rewards, rl, SmallLMConfig(device="cpu"), tmp_path / "s2s")
    entries = reward_log(tmp_path / "s2s")
    assert [e["step"] for e in entries] == [1, 2]
    assert all("kl" in e and "loss" in e for e in entries)
    _check_logged_totals(entries, {"factuality": 0.25, "fluency": 1.5, "letters": 3.0})


# -- one limit for every reward call of a step ------------------------------------------------------
def _judge_and_answer_server():
    """One server for both roles: a judge question gets log-probabilities (P(yes) from the rationale's
    number), anything else the answer "yes". It records how many calls were in flight at most. With
    ``state["gate"] = (limit, calls)`` a call waits until min(limit, calls not yet done) are in
    flight (at most 20 s), so a busy machine that starts the calls slowly cannot hide overlap."""
    import threading

    from lmcot.metrics.rationale.judge import ASPECT_QUESTIONS
    from support.oracle_server import OracleServer

    state, cond = {"now": 0, "max": 0, "done": 0, "gate": None}, threading.Condition()

    def responder(body):
        text = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        with cond:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
            cond.notify_all()
            if state["gate"] is not None:
                limit, calls = state["gate"]
                cond.wait_for(lambda: state["now"] >= min(limit, calls - state["done"]), timeout=20)
            state["now"] -= 1
            state["done"] += 1
            cond.notify_all()
        if any(q in text for q in ASPECT_QUESTIONS.values()):
            n = int(text.split("Reason number ", 1)[1].split(".", 1)[0])
            p = (n + 1) / 20 * (1.0 if ASPECT_QUESTIONS["factuality"] in text else 0.5)
            return {"text": "Yes", "logprobs": {"Yes": p, "No": 1 - p}}
        return "[[ ## answer ## ]]\nyes\n\n[[ ## completed ## ]]"

    return OracleServer(responder), state


def test_answer_and_judge_calls_share_one_limit(tmp_path):
    """All calls of a step (8 aspects x 4 rollouts on the judge + 4 answers = 36) are in flight
    together up to rl.reward_concurrency, never more, with the same rewards, in the same order,
    as one call at a time."""
    from lmcot.config import ASPECTS, RationaleMetricsConfig
    from lmcot.lms import build_lm, cache_in, configure_cache
    from lmcot.metrics.rationale import RationaleScorer

    q = ORACLE_DATA[1]["question"]
    server, state = _judge_and_answer_server()
    with server as srv, cache_in(tmp_path / "first"):  # DSPy's cache as it was, after the test
        def rewards(concurrency: int) -> RewardSet:
            configure_cache(tmp_path / str(concurrency))  # every call reaches the server
            lm = build_lm(LargeLMConfig(model="openai/limit", api_base=srv.url, num_retries=0))
            scorer = RationaleScorer(RationaleMetricsConfig(backends={a: "judge" for a in ASPECTS}), judge_lm=lm)
            return RewardSet(rl_config(weights={a: 1.0 for a in (*ASPECTS, "answer_f1")}), answer_lm=lm,
                             scorer=scorer, concurrency=concurrency)

        rows = [_row(q, "yes", f"Reason number {i}.") for i in range(4)]
        one_at_a_time = rewards(1).components(rows)
        assert state["max"] == 1
        for limit in (5, 40):
            state.update(max=0, done=0, gate=(limit, 36))
            assert rewards(limit).components(rows) == one_at_a_time
            assert state["max"] == min(limit, 36)
    assert one_at_a_time["factuality"] == pytest.approx([(n + 1) / 20 for n in range(4)])
    assert one_at_a_time["answer_f1"] == [1.0] * 4


def test_reward_concurrency_is_bounded():
    from lmcot.config import ConfigError, load_config

    assert load_config(None, ["rl.reward_concurrency=128"]).rl.reward_concurrency == 128
    for bad in ("0", "5000"):
        with pytest.raises(ConfigError, match=r"^config: rl\.reward_concurrency"):
            load_config(None, [f"rl.reward_concurrency={bad}"])


@pytest.mark.parametrize("rule", ["follow", "lenient"])
def test_answer_reward_sees_a_wrong_stated_conclusion(rule, tmp_path):
    """RL sees the truth (issue 15): with the conclusion-following reader behind answer_f1, a rationale
    that quotes the gold evidence and then concludes a wrong answer earns less than the same evidence
    with no conclusion. The lenient rule (the stand-in before issue 15) paid both the same."""
    from lmcot.lms import build_lm, cache_in
    from support.oracle_responder import OracleResponder
    from support.oracle_server import OracleServer

    evidence = "Arthur's Magazine was an American literary periodical."
    q = ORACLE_DATA[0]["question"]
    rows = [_row(q, "Arthur's Magazine", rationale=f"{evidence} So the answer is First for Women."),
            _row(q, "Arthur's Magazine", rationale=evidence),
            _row(q, "Arthur's Magazine", rationale=f"{evidence} So the answer is Arthur's Magazine.")]
    with OracleServer(OracleResponder(ORACLE_DATA, rationale_sensitive=True, reader_rule=rule)) as srv, \
            cache_in(tmp_path):
        lm = build_lm(LargeLMConfig(model=f"openai/oracle-{rule}", api_base=srv.url, num_retries=0))
        wrong, plain, right = RewardSet(rl_config(weights={"answer_f1": 1.0}), answer_lm=lm).components(rows)["answer_f1"]
    assert plain == right == 1.0
    if rule == "follow":
        assert wrong < plain and wrong == 0.0
    else:
        assert wrong == plain  # what the lenient stand-in rewarded


def test_reward_set_names_say_which_rewards_are_on():
    """The training table names each RL student's rewards: an ablation variant keeps its name when the
    configured aspect weights differ (the experiment quickstart's 1.0 / 0.5)."""
    from lmcot.aspects import ASPECTS
    from lmcot.optimizers.rewards import reward_set_name

    quality = {a: (1.0 if a in ("factuality", "relevance") else 0.5) for a in ASPECTS}
    assert reward_set_name({**quality, "answer_f1": 2.0}) == "rationale quality + answer F1, weighted"
    assert reward_set_name({**quality, "answer_f1": 0.0}) == "rationale quality only, weighted"
    assert reward_set_name({**{a: 1.0 for a in ASPECTS}, "answer_f1": 1.0}) == "rationale quality + answer F1"
    assert reward_set_name({**{a: 0.0 for a in ASPECTS}, "answer_f1": 2.0}) == "answer F1 only"
    assert reward_set_name({**{a: 0.0 for a in ASPECTS}, "factuality": 1.0, "answer_f1": 1.0}) == "weighted rewards"
