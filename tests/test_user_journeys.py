"""What a user meets on the command line when something is off: an api_base nobody listens on, a
large LM that fails every call during compile, Ctrl-C, scoring evaluate's predictions.jsonl, and
starting the stand-in server with ``python -m``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import dspy
import pytest
from typer.testing import CliRunner

from lmcot.commands.cli import app
from lmcot.config import ConfigError, LargeLMConfig, SmallLMConfig, config_from_dict
from support.paths import HOTPOT, ROOT





@pytest.fixture()
def closed_url() -> str:
    """An http URL on 127.0.0.1 whose port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def invoke(args: list[str]):
    return CliRunner().invoke(app, args, catch_exceptions=True)


def error_lines(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error:")]


# ----------------------------------------------------------------------------- unreachable api_base


def test_check_endpoint(closed_url, monkeypatch):
    from lmcot.preflight import check_endpoint

    with pytest.raises(ConfigError, match=r"^large_lm\.api_base=http://127\.0\.0\.1:\d+/v1: cannot connect"):
        check_endpoint(LargeLMConfig(model="openai/x", api_base=closed_url), "large_lm")
    from support.oracle_server import OracleServer

    with OracleServer() as srv:  # an HTTP server that answers (any status): fine
        check_endpoint(LargeLMConfig(model="openai/x", api_base=srv.url), "x")
    # (a server that accepts but never answers: tests/test_reliability.py)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    check_endpoint(LargeLMConfig(model="openai/gpt-4o-mini"), "large_lm")  # the provider's endpoint: not probed
    check_endpoint(SmallLMConfig(), "small_lm")  # in-process
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:1")  # a proxy carries the request: not checked
    monkeypatch.setenv("no_proxy", "")
    check_endpoint(LargeLMConfig(model="openai/x", api_base=closed_url), "large_lm")


def test_evaluate_with_unreachable_api_base_fails_at_once(closed_url, tmp_path, monkeypatch):
    from lmcot.http_lm import HttpLM

    # "At once", counted rather than timed: one refused connection (the start-up probe's; the probe and
    # litellm's httpx both open sockets through socket.create_connection), no retry, no backoff wait.
    port, tries, waits = int(closed_url.rsplit(":", 1)[1].split("/")[0]), [], []
    connect = socket.create_connection

    def counting(address, *args, **kwargs):
        tries.extend([address] if address[1] == port else [])
        return connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counting)
    monkeypatch.setattr(HttpLM, "_sleep", staticmethod(waits.append))
    result = invoke(["evaluate", "--set", f"data.dev={HOTPOT}", "--set", "large_lm.model=openai/oracle",
                     "--set", f"large_lm.api_base={closed_url}",  # the default retries: none may be used
                     "--methods", "standard", "--limit", "1", "--out", str(tmp_path / "out"),
                     "--set", f"cache_dir={tmp_path / 'cache'}", "--set", "data.max_context_tokens=null"])
    assert result.exit_code == 2
    [line] = error_lines(result)
    assert f"large_lm.api_base={closed_url}: cannot connect" in line
    assert len(tries) == 1 and waits == [], (tries, waits)
    assert not (tmp_path / "out").exists()


def test_compile_checks_a_separate_teacher(oracle_server, closed_url, tmp_path, tiny_causal_path):
    result = invoke(["compile", "--out", str(tmp_path / "out"), "--set", f"large_lm.api_base={oracle_server.url}",
                     "--set", f"small_lm.model={tiny_causal_path}",
                     "--set", "kd.teacher.model=openai/oracle", "--set", f"kd.teacher.api_base={closed_url}",
                     "--set", "kd.teacher.num_retries=0", "--set", "kd.num_samples=1",
                     "--set", f"data.train={HOTPOT}", "--set", "data.train_limit=1",
                     "--set", f"cache_dir={tmp_path / 'cache'}"])
    assert result.exit_code == 2
    [line] = error_lines(result)
    assert f"kd.teacher.api_base={closed_url}" in line
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------ compile when the large LM fails every call


def _program_and_data(tiny_causal_path, large_url: str):
    from lmcot.data import load_examples
    from lmcot.lms import build_lm
    from lmcot.programs import LMGuidedCoT

    small = build_lm(SmallLMConfig(model=str(tiny_causal_path), max_tokens=8))
    large = build_lm(LargeLMConfig(model="openai/oracle", api_base=large_url, num_retries=0))
    examples = load_examples("hotpotqa", str(HOTPOT), limit=4, max_context_tokens=60).examples
    return LMGuidedCoT(small, large), examples[:2], examples[2:]


def test_compile_stops_when_every_dev_example_fails(tiny_causal_path, closed_url, tmp_path, monkeypatch):
    import lmcot.optimizers.bootstrap as bootstrap
    from lmcot.optimizers import LMCoTCompiler

    monkeypatch.setattr(bootstrap, "bootstrap_traces", lambda *a, **k: pytest.fail("went on to KD"))
    program, trainset, valset = _program_and_data(tiny_causal_path, closed_url)
    cfg = config_from_dict({"cache_dir": str(tmp_path / "cache"), "stages": ["kd"]})
    with pytest.raises(RuntimeError, match=r"^untrained dev evaluation: every example failed; first error: "
                                           r".*Connection"):
        LMCoTCompiler(cfg, tmp_path / "out", progress=False).compile(program, trainset, valset)


def _kd_failure(tiny_causal_path, closed_url, tmp_path) -> str:
    """The error a `--stages kd` compile stops with (the bootstrap is monkeypatched by the caller)."""
    from lmcot.optimizers import LMCoTCompiler

    program, trainset, _ = _program_and_data(tiny_causal_path, closed_url)
    cfg = config_from_dict({"cache_dir": str(tmp_path / "cache"), "stages": ["kd"]})
    with pytest.raises(RuntimeError) as err:
        LMCoTCompiler(cfg, tmp_path / "out", progress=False).compile(program, trainset, None)
    return str(err.value)


def test_kd_names_the_transient_errors_when_nothing_was_recorded(tiny_causal_path, closed_url, tmp_path,
                                                                    monkeypatch):
    import lmcot.optimizers.bootstrap as bootstrap

    def unreachable(trainset, teacher, kd, out_dir, **kwargs):
        return bootstrap.BootstrapResult(kept=[], summary={"transient_errors": 4}, traces_path=out_dir / "t.jsonl",
                                         transient=["LMServerError: Connection error."] * 4)

    monkeypatch.setattr(bootstrap, "bootstrap_traces", unreachable)
    message = _kd_failure(tiny_causal_path, closed_url, tmp_path)
    assert "4 teacher call(s) failed" in message and "Connection error" in message and "rerun" in message
    assert "passed the filter" not in message


def test_kd_says_the_recorded_rationales_failed_the_filter_when_others_did_not_parse(
        tiny_causal_path, closed_url, tmp_path, monkeypatch):
    """A small in-process teacher (configs/real_reader.yaml on CPU): some replies parse and are wrong,
    the rest never parse. The teacher is reachable; the message must not say otherwise."""
    import lmcot.optimizers.bootstrap as bootstrap

    def weak_teacher(trainset, teacher, kd, out_dir, **kwargs):
        return bootstrap.BootstrapResult(kept=[], summary={"transient_errors": 1}, traces_path=out_dir / "t.jsonl",
                                         traces=[{"id": "q", "sample": 0, "ok": True, "em": 0.0}] * 2,
                                         transient=["unparsable teacher reply after retries: AdapterParseError"])

    monkeypatch.setattr(bootstrap, "bootstrap_traces", weak_teacher)
    message = _kd_failure(tiny_causal_path, closed_url, tmp_path)
    assert "none of the 2 recorded teacher rationales passed the filter (em >= 1.0)" in message
    assert "1 teacher call(s) failed" in message and "reachable" not in message


# ---------------------------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_in_compile_says_how_to_resume(oracle_server, tmp_path, monkeypatch, tiny_causal_path):
    import lmcot.optimizers.compiler as compiler

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compiler, "compile_from_config", interrupted)
    result = invoke(["compile", "--out", str(tmp_path / "out"), "--set", f"large_lm.api_base={oracle_server.url}",
                     "--set", f"small_lm.model={tiny_causal_path}"])
    assert result.exit_code == 130
    assert "interrupted:" in result.output and "rerun the same command to resume" in result.output


def test_ctrl_c_in_evaluate_says_nothing_was_written(oracle_server, tmp_path, monkeypatch):
    import lmcot.programs.evaluation

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(lmcot.programs.evaluation, "evaluate_from_config", interrupted)
    result = invoke(["evaluate", "--set", f"large_lm.api_base={oracle_server.url}", "--out", str(tmp_path / "o"),
                     "--methods", "standard", "--set", "data.max_context_tokens=null"])
    assert result.exit_code == 130
    assert "interrupted:" in result.output and "cached" in result.output


# ------------------------------------------------------------------- lmcot score on predictions.jsonl


def test_score_reads_evaluate_predictions(oracle_server, tiny_causal_path, tmp_path):
    out = tmp_path / "eval"
    result = invoke(["evaluate", "--set", f"data.dev={HOTPOT}", "--set", "data.max_context_tokens=200",
                     "--set", "large_lm.model=openai/oracle", "--set", f"large_lm.api_base={oracle_server.url}",
                     "--set", f"small_lm.model={tiny_causal_path}", "--set", "small_lm.max_tokens=8",
                     "--limit", "3", "--out", str(out), "--set", f"cache_dir={tmp_path / 'cache'}"])
    assert result.exit_code == 0, result.output
    predictions = out / "predictions.jsonl"

    result = invoke(["score", "--rationales", str(predictions)])
    assert result.exit_code == 0, result.output
    assert "Rationale quality of cot" in result.output and "Rationale quality of guided" in result.output
    scored = [json.loads(line) for line in (out / "predictions.scores.jsonl").read_text().splitlines()]
    assert [r["method"] for r in scored] == ["cot"] * 3 + ["guided"] * 3  # standard writes no rationale
    # Each rationale is scored against the context evaluate gave it (same dev file, same truncation).
    from lmcot.contexts import context_token_counter
    from lmcot.splits import load_split
    from lmcot.metrics.rationale.score_file import run_score

    saved = json.loads((out / "config.json").read_text())
    saved.pop("program")
    cfg = config_from_dict(saved)
    context = {ex.id: ex.context for ex in load_split(cfg, "dev", count_tokens=context_token_counter(cfg))}
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    explicit = tmp_path / "explicit.jsonl"
    explicit.write_text("".join(json.dumps({"id": r["id"], "question": r["question"], "context": context[r["id"]],
                                            "rationale": r["rationale"]}) + "\n" for r in rows if r["method"] == "cot"))
    # Perplexity under the small LM of the run that wrote the file (named in the config.json beside it).
    assert f"scorer: fluency and naturalness by perplexity under {tiny_causal_path}" in result.output
    expected, _ = run_score(config_from_dict({"small_lm": saved["small_lm"]}), explicit)
    assert [{k: v for k, v in r.items() if k != "method"} for r in scored[:3]] == expected

    # Without the config.json beside it, the file still names the way out in one line.
    alone = tmp_path / "alone.jsonl"
    alone.write_text(predictions.read_text())
    result = invoke(["score", "--rationales", str(alone)])
    assert result.exit_code == 2
    [line] = error_lines(result)
    assert "alone.jsonl: line 4: missing field 'context'" in line and "config.json" in line
    # ... and --config with the dev set supplies the contexts.
    result = invoke(["score", "--rationales", str(alone), "--set", f"data.dev={HOTPOT}",
                     "--set", f"small_lm.model={tiny_causal_path}"])
    assert result.exit_code == 0, result.output


# ---------------------------------------------------------------------------------- the stand-in server


@pytest.mark.slow
def test_oracle_server_runs_as_a_module_without_runpy_warning():
    proc = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "support.oracle_server",
                           "--help"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "tests")},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "RuntimeWarning" not in proc.stderr


# ------------------------------------------------------------------------- the RL bar under normalize_sum


def test_rl_progress_shows_a_moving_reward_under_normalize_sum():
    """normalize_sum's ``reward`` is a mean of batch z-scores, ~0 at every step: a bar showing it looks
    like RL does nothing. The bar shows the weighted sum of the raw means instead."""
    from lmcot.config import RLConfig
    from lmcot.optimizers.rewards import RewardSet

    def rewards_for(aggregation: str) -> RewardSet:
        return RewardSet(RLConfig(aggregation=aggregation, weights={k: 0.0 for k in RLConfig().weights.model_dump()}),
                         answer_lm=None, extra={"a": lambda rows: [1.0, 2.0, 3.0, 6.0][: len(rows)],
                                                "b": lambda rows: [0.5] * len(rows)},
                         weights={"a": 0.5, "b": 2.0})

    rows = [{"question": "q", "context": "c", "answer": "g", "rationale": "r"}] * 4
    normalized = rewards_for("normalize_sum")
    metrics = normalized.log_metrics(normalized.components(rows))
    assert metrics["reward"] == pytest.approx(0.0, abs=1e-9)
    assert normalized.progress_value(metrics) == pytest.approx(0.5 * 3.0 + 2.0 * 0.5)
    assert normalized.progress_value({"loss": 1.0}) is None  # a log entry without rewards leaves the bar alone
    plain = rewards_for("weighted_sum")
    metrics = plain.log_metrics(plain.components(rows))
    assert plain.progress_value(metrics) == metrics["reward"] == pytest.approx(2.5)
