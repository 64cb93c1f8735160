"""Shared test set-up: offline, single-threaded, every cache in a temporary folder.

The environment is set before anything imports litellm, transformers or dspy: without it imports try
the network (and hang here), and threads oversubscribing a few busy cores make tiny-model training crawl.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_TMP = Path(tempfile.mkdtemp(prefix="lmcot-tests-"))
for key, value in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_DISABLED": "true",
    "DSPY_CACHEDIR": str(_TMP / "dspy_cache"),
}.items():
    os.environ.setdefault(key, value)

import pytest  # noqa: E402
from support.paths import HOTPOT, QUICKSTART_DEV, QUICKSTART_TRAIN, TWOWIKI  # noqa: E402


def pytest_runtest_setup(item):
    # Before the test's fixtures (module-scoped ones included) run: support.cli.run_cli refuses to
    # spawn the CLI for a test of the quick tier.
    import support.cli

    support.cli.in_slow_test = item.get_closest_marker("slow") is not None


@pytest.fixture(scope="session")
def hotpot_examples():
    from lmcot.data import load_examples

    return load_examples("hotpotqa", str(HOTPOT)).examples


@pytest.fixture(scope="session")
def oracle_server(hotpot_examples):
    """A real OpenAI-compatible HTTP server on 127.0.0.1 playing a large LM that knows the gold answers."""
    from support.oracle_responder import OracleResponder
    from support.oracle_server import OracleServer

    twowiki = __import__("lmcot.data", fromlist=["load_examples"]).load_examples("2wiki", str(TWOWIKI)).examples
    with OracleServer(OracleResponder([e.toDict() for e in [*hotpot_examples, *twowiki]])) as server:
        yield server


@pytest.fixture(scope="session")
def reader_server():
    """The quickstart's SCRIPTED rationale-sensitive stand-in (scripts/standin.sh, same settings) over the
    quickstart questions: a guided answer is the conclusion the rationale states (reader rule follow); with
    none stated, right only when the rationale states the evidence."""
    from support.oracle_responder import OracleResponder, load_examples
    from support.oracle_server import OracleServer

    examples = [*load_examples(QUICKSTART_TRAIN), *load_examples(QUICKSTART_DEV)]
    responder = OracleResponder(examples, wrong_rate=0.2, rationale_sensitive=True, standard_accuracy=0.35,
                                cot_accuracy=0.45)
    with OracleServer(responder) as server:
        yield server


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    """The folder the session's tiny random-init models are built into (tests pass their paths)."""
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="session")
def tiny_causal_path(tiny_models_dir) -> Path:
    from support.tiny import build_tiny_causal

    return build_tiny_causal(tiny_models_dir / "llama")


@pytest.fixture(scope="session")
def tiny_seq2seq_path(tiny_models_dir) -> Path:
    from support.tiny import build_tiny_seq2seq

    return build_tiny_seq2seq(tiny_models_dir / "t5")


def _session_cache() -> None:
    """lmcot's reply cache (as ``lmcot.configure_cache`` installs it) in the session's temporary folder;
    set before any test runs, so nothing falls back to a cache in the home folder."""
    import dspy

    from lmcot.reply_cache import ReplyCache

    dspy.cache = ReplyCache(os.environ["DSPY_CACHEDIR"])


_session_cache()


@pytest.fixture(autouse=True)
def _dspy_cache_left_as_found():
    """Library calls (compile, evaluate, an experiment, a reward) leave DSPy's process-wide cache and
    lmcot's memo folder as they found them (lmcot.lms.cache_in): a test that changes either fails here."""
    import dspy

    from lmcot.memo import memo_dir, set_memo_dir

    before, memos = dspy.cache, memo_dir()
    yield
    if dspy.cache is not before or memo_dir() != memos:
        dspy.cache = before
        set_memo_dir(memos)
        pytest.fail("the test left DSPy's global cache (or lmcot's memo folder) changed: library code must "
                    "use lmcot.lms.cache_in; a test that sets the cache itself uses monkeypatch")


@pytest.fixture(autouse=True)
def _sigint_left_as_found():
    """A test that changes the process's Ctrl-C handler (an in-process server, DSPy's parallel runner)
    must put it back: subprocesses inherit an ignored SIGINT, and a Python started that way never
    raises KeyboardInterrupt (the interrupt tests then see a run that cannot be stopped)."""
    import signal

    before = signal.getsignal(signal.SIGINT)
    yield
    after = signal.getsignal(signal.SIGINT)
    if after is not before:
        signal.signal(signal.SIGINT, before)
        pytest.fail(f"the test left the SIGINT handler changed ({before!r} -> {after!r})")


@pytest.fixture()
def fresh_cache(tmp_path):
    """lmcot's reply cache in a fresh folder (and memory cache off) for tests that count calls; yields
    its replies folder. cache_in puts the session's cache (and memo folder) back afterwards."""
    from lmcot.lms import cache_in

    with cache_in(tmp_path, memory=False) as replies:
        yield replies

