"""``lmcot evaluate`` end to end: the real CLI, a real HTTP hop through litellm to the oracle server
(a large LM that knows the gold answers) and the tiny in-process small LM."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import dspy
import pytest
from typer.testing import CliRunner

from lmcot.commands.cli import app
from lmcot.metrics import answer_em, answer_f1
from lmcot.usage import UsageMeter
from support.paths import HOTPOT, TWOWIKI

SECRET = "sk-test-SECRET123"
KEY_VAR = "LMCOT_TEST_EVAL_KEY"
N = 20


# ``evaluate`` points DSPy's process-wide cache at its cache_dir: the session's comes back after.


@pytest.fixture(scope="module")
def secret_env():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_VAR, SECRET)
        yield


def base_args(server, small_path, cache_dir, dev=HOTPOT) -> list[str]:
    return [
        "evaluate",
        "--set", "large_lm.model=openai/oracle",
        "--set", f"large_lm.api_base={server.url}",
        "--set", f"large_lm.api_key_env={KEY_VAR}",
        "--set", "large_lm.num_retries=0",
        "--set", f"data.dev={dev}",
        "--set", f"small_lm.model={small_path}",
        "--set", "small_lm.max_tokens=16",
        "--set", f"cache_dir={cache_dir}",
    ]


def invoke(args: list[str]):
    return CliRunner().invoke(app, args, catch_exceptions=True)


def error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error:")]


def read_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def talkative_small_path(tiny_causal_path, tmp_path_factory) -> Path:
    """The tiny model with seeded noise on its weights: the raw random-init model mostly writes
    nothing at all, this one writes (nonsense) rationales, so they can be followed into the
    large LM's prompts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_causal_path)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if "norm" not in name:
                tensor.add_(torch.randn(tensor.shape, generator=gen) * 0.2)
    path = tmp_path_factory.mktemp("talkative") / "llama"
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_causal_path).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def first_run(oracle_server, talkative_small_path, tmp_path_factory, secret_env):
    root = tmp_path_factory.mktemp("eval")
    out, cache = root / "out", root / "cache"
    args = base_args(oracle_server, talkative_small_path, cache) + ["--limit", str(N), "--out", str(out)]
    before = oracle_server.request_count
    records_before = len(oracle_server.records)
    result = invoke(args)
    assert result.exit_code == 0, result.output
    return {"args": args, "out": out, "cache": cache, "requests": oracle_server.request_count - before,
            "records": oracle_server.records[records_before:]}


def test_metrics_for_all_three_methods(first_run):
    metrics = json.loads((first_run["out"] / "metrics.json").read_text())
    assert set(metrics) == {"standard", "cot", "guided"}
    for method, m in metrics.items():
        assert m["n"] == N, method
        assert m["errors"] == 0, method
    # the oracle knows the gold answers: both large-LM-only baselines are exact, and so is the
    # guided pipeline (its answer step reaches the oracle with the right question and parses back)
    assert metrics["standard"]["em"] == 1.0 and metrics["standard"]["f1"] == 1.0
    assert metrics["cot"]["em"] == 1.0
    assert metrics["guided"]["em"] == 1.0
    # usage: each method billed for its own calls, on the right model
    std, guided = metrics["standard"]["usage"], metrics["guided"]["usage"]
    assert std["by_model"]["openai/oracle"]["calls"] == N
    assert sum(p["calls"] for name, p in std["by_model"].items() if name.startswith("hf/")) == 0
    assert std["prompt_tokens"] > 0 and std["cached_calls"] == 0
    small_name = next(name for name in guided["by_model"] if name.startswith("hf/"))
    assert guided["by_model"][small_name]["calls"] == N
    assert guided["by_model"]["openai/oracle"]["calls"] == N
    # one HTTP request per large-LM call (standard, cot, guided), no retries
    assert first_run["requests"] == 3 * N


def test_predictions_file(first_run, hotpot_examples):
    rows = read_rows(first_run["out"])
    assert len(rows) == 3 * N
    gold_ids = [ex.id for ex in hotpot_examples[:N]]
    by_method: dict[str, list[dict]] = {}
    for row in rows:
        assert {"id", "method", "answer", "gold", "em", "f1"} <= set(row)
        assert row["em"] == answer_em(row["answer"], row["gold"])
        assert row["f1"] == answer_f1(row["answer"], row["gold"])
        by_method.setdefault(row["method"], []).append(row)
    assert set(by_method) == {"standard", "cot", "guided"}
    for method, method_rows in by_method.items():
        assert [r["id"] for r in method_rows] == gold_ids, method
        assert [r["gold"] for r in method_rows] == [ex.answer for ex in hotpot_examples[:N]]
    for row in by_method["guided"]:
        assert isinstance(row["rationale"], str)
        assert row["rationales"] == [row["rationale"]]
    assert sum(1 for r in by_method["guided"] if r["rationale"]) >= N // 2
    for row in by_method["cot"]:
        assert row["rationale"]  # the large LM's own reasoning is kept


def test_small_lm_rationales_reach_the_large_lm_over_http(first_run):
    rows = [r for r in read_rows(first_run["out"]) if r["method"] == "guided" and r["rationale"]]
    assert rows
    sent = ["\n".join(str(m.get("content")) for m in r.body.get("messages", []))
            for r in first_run["records"] if r.body]
    answer_prompts = [t for t in sent if "[[ ## rationale ## ]]" in t]
    assert len(answer_prompts) == N
    for row in rows:
        assert any(row["question"] in t and row["rationale"] in t for t in answer_prompts), row["id"]


def test_no_secret_in_any_output_file(first_run):
    out = first_run["out"]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"metrics.json", "predictions.jsonl", "config.json"}
    for p in files:
        assert SECRET.encode() not in p.read_bytes(), p
    config = json.loads((out / "config.json").read_text())
    assert config["large_lm"]["api_key_env"] == KEY_VAR
    assert config["large_lm"]["model"] == "openai/oracle"
    assert config["small_lm"]["max_tokens"] == 16
    # the key was sent to the server, just never written down
    # (POSTs: the start-up probe of api_base is a keyless GET that calls no model)
    calls = [r for r in first_run["records"] if r.method == "POST"]
    assert calls and all(r.has_auth for r in calls)


def test_rerun_makes_no_new_request(first_run, oracle_server, tmp_path, monkeypatch):
    # A new run builds its caches afresh (no memory cache carried over): the answers come from disk.
    before = oracle_server.request_count
    args = [a for a in first_run["args"]]

    def no_model(*_, **__):
        raise AssertionError("a rerun answered from the cache loaded the small LM")

    # Nor is the small LM (weights or tokenizer) loaded: its fingerprint and every context's
    # truncation are remembered from the first run (lmcot.memo).
    monkeypatch.setattr("lmcot.hf_engine.load_model_and_tokenizer", no_model)
    monkeypatch.setattr("transformers.AutoTokenizer.from_pretrained", no_model)
    monkeypatch.setenv("COLUMNS", "200")  # the table on one line per method, whatever the worker's terminal says
    result = invoke(args[: args.index("--out")] + ["--out", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    assert oracle_server.request_count == before
    metrics = json.loads((tmp_path / "again" / "metrics.json").read_text())
    first = json.loads((first_run["out"] / "metrics.json").read_text())
    for method in first:
        assert metrics[method]["em"] == first[method]["em"]
        again, paid = metrics[method]["usage"], first[method]["usage"]
        assert again["cached_calls"] == again["calls"]
        # One rule with the experiment: a cached call counts the tokens (and small-LM seconds) it used
        # when it was paid, and the table says they were cached.
        assert again["estimated_calls"] == 0 and again["paid_cost"] == 0.0
        for key in ("prompt_tokens", "completion_tokens", "small_lm_seconds"):
            assert again[key] == paid[key], (method, key)
        large = again["by_model"]["openai/oracle"]
        tokens = large["prompt_tokens"] + large["completion_tokens"]
        assert tokens > 0 and large["cached_tokens"] == tokens
        assert f"{tokens} ({tokens} cached)" in result.output, result.output
    assert metrics["guided"]["usage"]["small_lm_seconds"] > 0
    assert read_rows(tmp_path / "again") == read_rows(first_run["out"])


@pytest.fixture()
def bad_dev(tmp_path) -> Path:
    records = json.loads(HOTPOT.read_text())
    del records[3]["question"]
    path = tmp_path / "bad_dev.json"
    path.write_text(json.dumps(records))
    return path


def test_malformed_dev_file_fails_with_one_line(oracle_server, tiny_causal_path, tmp_path, bad_dev, secret_env):
    before = oracle_server.request_count
    result = invoke(base_args(oracle_server, tiny_causal_path, tmp_path / "cache", dev=bad_dev)
                    + ["--limit", str(N), "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)  # a handled error, not a crash
    assert "Traceback" not in result.output
    lines = error_lines(result)
    assert len(lines) == 1, result.output
    assert str(bad_dev) in lines[0] and "record 3" in lines[0] and "question" in lines[0]
    assert oracle_server.request_count == before
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_skip_bad_skips_and_reports(oracle_server, tiny_causal_path, tmp_path, bad_dev, secret_env, caplog):
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        result = invoke(base_args(oracle_server, tiny_causal_path, tmp_path / "cache", dev=bad_dev)
                        + ["--methods", "standard", "--limit", str(N), "--out", str(out), "--skip-bad"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"standard"}
    assert metrics["standard"]["n"] == N  # the bad record is skipped, the next good one fills in
    ids = [r["id"] for r in read_rows(out)]
    records = json.loads(HOTPOT.read_text())
    assert records[3]["_id"] not in ids
    assert ids == [r["_id"] for i, r in enumerate(records[: N + 1]) if i != 3]
    reported = caplog.text + result.output
    assert "skipped 1 malformed record" in reported
    assert "record 3" in reported


def test_unknown_config_key_is_one_line(tmp_path):
    result = invoke(["evaluate", "--set", "large_lm.temprature=0.1", "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)
    lines = error_lines(result)
    assert len(lines) == 1, result.output
    assert "large_lm.temprature" in lines[0] and "unknown key" in lines[0]


def test_unknown_key_in_config_file_names_the_file(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("eval:\n  limit: 5\n")
    result = invoke(["evaluate", "--config", str(cfg)])
    assert result.exit_code != 0
    lines = error_lines(result)
    assert len(lines) == 1 and str(cfg) in lines[0] and "eval.limit" in lines[0]


def test_unset_key_variable_is_one_line(oracle_server, tiny_causal_path, tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_VAR, raising=False)
    result = invoke(base_args(oracle_server, tiny_causal_path, tmp_path / "cache")
                    + ["--methods", "standard", "--limit", "2", "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    lines = error_lines(result)
    assert len(lines) == 1 and KEY_VAR in lines[0]


def test_twowiki_evaluates(oracle_server, tiny_causal_path, tmp_path, secret_env):
    out = tmp_path / "out"
    result = invoke(base_args(oracle_server, tiny_causal_path, tmp_path / "cache", dev=TWOWIKI)
                    + ["--set", "data.dataset=2wiki", "--limit", "8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"standard", "cot", "guided"}
    assert all(m["n"] == 8 and m["errors"] == 0 for m in metrics.values())
    assert metrics["standard"]["em"] == 1.0
    gold = [r["answer"] for r in json.loads(TWOWIKI.read_text())[:8]]
    assert [r["gold"] for r in read_rows(out) if r["method"] == "standard"] == gold


def test_self_consistency_by_rationale_quality(oracle_server, talkative_small_path, tmp_path, secret_env):
    """`--set eval.num_samples=3 --set eval.select=quality`: three rationales scored on the aspects,
    one large-LM answer per question (from the best one) instead of three and a vote."""
    out = tmp_path / "out"
    before = oracle_server.request_count
    result = invoke(base_args(oracle_server, talkative_small_path, tmp_path / "cache")
                    + ["--set", "eval.num_samples=3", "--set", "eval.select=quality",
                       "--set", "rationale_metrics.reference_lm=lexical", "--methods", "guided", "--limit", "4",
                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = read_rows(out)
    assert len(rows) == 4 and not any(r.get("error") for r in rows)
    assert oracle_server.request_count - before == 4  # one answer call per question
    for r in rows:
        assert len(r["rationales"]) == 3 and len(r["scores"]) == 3
        assert r["rationale"] == r["rationales"][r["selected"]]


# --------------------------------------------------------------------------- UsageMeter

class _CountingEngine:
    """Replies ``text`` (``{n}``: the call number) with fixed usage (7 in, 3 out) and counts calls."""

    def __init__(self, text: str):
        self.text, self.calls = text, 0
        self._lock = threading.Lock()

    def complete(self, request):
        from dspy.lm15 import Message, Response, TextPart, Usage

        with self._lock:
            self.calls += 1
            text = self.text.format(n=self.calls)
        return Response(id=None, model="scripted", message=Message.assistant([TextPart(text)]),
                        finish_reason="stop", usage=Usage(input_tokens=7, output_tokens=3))

    def close(self) -> None:
        pass


def test_usage_meter_counts_calls_and_tokens_per_method(fresh_cache):
    from lmcot.programs import LMGuidedCoT, StandardPrompting

    small_engine = _CountingEngine("rationale {n}")  # distinct, so no two answer calls are alike
    large_engine = _CountingEngine("[[ ## answer ## ]]\nx\n\n[[ ## completed ## ]]")
    small = dspy.LM("local/small", engine=small_engine, cache=True)
    large = dspy.LM("local/large", engine=large_engine, cache=True)
    questions = [f"Question {i}?" for i in range(3)]

    from lmcot.usage import UsageLedger

    ledger = UsageLedger(fresh_cache.parent / "usage.jsonl")
    meter = UsageMeter([small, large, large, None], ledger=ledger)  # duplicates and missing LMs are fine
    assert len(meter.lms) == 2
    standard = StandardPrompting(large)
    for q in questions:
        standard(question=q, context="c")
    report = meter.report()
    assert report["calls"] == 3 and report["cached_calls"] == 0
    large_part = report["by_model"]["local/large"]
    assert {k: large_part[k] for k in ("calls", "cached_calls", "prompt_tokens", "completion_tokens", "cost")} == {
        "calls": 3, "cached_calls": 0, "prompt_tokens": 21, "completion_tokens": 9, "cost": None}
    assert report["by_model"]["local/small"]["calls"] == 0
    assert report["cost"] is None  # no known price

    # a meter started later bills only what came after it
    meter = UsageMeter([small, large], ledger=ledger)
    guided = LMGuidedCoT(small, large, num_samples=2)
    for q in questions:
        guided(question=q, context="c")
    report = meter.report()
    assert report["by_model"]["local/small"]["calls"] == 6
    assert report["by_model"]["local/large"]["calls"] == 6
    assert (report["prompt_tokens"], report["completion_tokens"]) == (12 * 7, 12 * 3)
    assert small_engine.calls == 6 and large_engine.calls == 3 + 6

    # answered from the cache: counted with the tokens recorded when they were paid, marked cached, not paid again
    meter = UsageMeter([small, large], ledger=ledger)
    for q in questions:
        standard(question=q, context="c")
    report = meter.report()
    assert large_engine.calls == 9
    assert report["calls"] == 3 and report["cached_calls"] == 3 and report["estimated_calls"] == 0
    assert (report["prompt_tokens"], report["completion_tokens"], report["cached_tokens"]) == (21, 9, 30)
    assert report["paid_cost"] == 0.0
