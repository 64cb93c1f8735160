"""lmcot's reply cache (lmcot.reply_cache.ReplyCache, lmcot.reply_store): DSPy's cache interface over
JSON rows in SQLite. A reply round-trips (in this process and in a new one), a damaged row is a miss,
nothing is ever unpickled (an old pickle cache beside it included), threads share it, and a garbled
reply that DSPy's JSON fallback recovered from is not kept."""

from __future__ import annotations

import json
import logging
import pickle
import sqlite3
import subprocess
import sys
import threading

import dspy
import pytest

from lmcot.config import LargeLMConfig
from lmcot.reply_cache import ReplyCache, parsed_reply
from lmcot.reply_store import FILE_NAME, ReplyStore, ReplyStoreError
from support.hostile import pickle_cache, poison_pickle_cache
from support.oracle_server import OracleServer
from support.paths import ROOT


ANSWER = "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"


def _ask(url: str, question: str = "What is the capital of France?") -> str:
    from lmcot.lms import build_lm

    predictor = dspy.Predict("question -> answer")
    predictor.lm = build_lm(LargeLMConfig(model="openai/oracle", api_base=url, num_retries=0))
    return predictor(question=question).answer


def _rows(folder) -> list[tuple[str, str]]:
    with sqlite3.connect(folder / FILE_NAME) as conn:
        return conn.execute("SELECT key, value FROM replies").fetchall()



@pytest.fixture(autouse=True)
def _cache_tests_set_the_cache_themselves(monkeypatch):
    """These tests install caches on purpose (that is what they test): monkeypatch puts DSPy's global
    cache and lmcot's memo folder back after each one."""
    from lmcot.memo import memo_dir

    monkeypatch.setattr(dspy, "cache", dspy.cache)
    monkeypatch.setattr("lmcot.memo._memo_dir", memo_dir())

def test_a_reply_round_trips_and_a_hit_is_counted_as_cached(tmp_path):
    from lmcot.usage import is_cached

    with OracleServer(lambda body: ANSWER) as srv:
        dspy.cache = ReplyCache(tmp_path)
        assert _ask(srv.url) == "Paris" and srv.request_count == 1
        dspy.cache = ReplyCache(tmp_path)  # a new cache object: nothing in memory, read from the file
        from lmcot.lms import build_lm

        predictor = dspy.Predict("question -> answer")
        predictor.lm = build_lm(LargeLMConfig(model="openai/oracle", api_base=srv.url, num_retries=0))
        assert predictor(question="What is the capital of France?").answer == "Paris"
        assert srv.request_count == 1, "the reply came from the file"
        entry = predictor.lm.history[-1]
        assert entry["usage"] == {} and is_cached(entry)  # lmcot.usage's rule for a hit
    [(_, value)] = _rows(tmp_path)
    assert json.loads(value)["t"] == "litellm.types.utils.ModelResponse"


def test_a_litellm_response_keeps_its_content_cost_and_logprobs(tmp_path):
    import litellm

    from lmcot.reply_store import decode, encode

    response = litellm.ModelResponse(id="x", model="m", choices=[{
        "index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "Yes"},
        "logprobs": {"content": [{"token": "Yes", "logprob": -0.1, "bytes": [89, 101, 115], "top_logprobs": []}]}}],
        usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4})
    response._hidden_params = {"response_cost": 0.25, "api_base": "http://h/v1"}
    back = decode(encode(response))
    assert type(back) is type(response) and back.model_dump() == response.model_dump()
    assert back.choices[0].message.content == "Yes" and back.choices[0].finish_reason == "length"
    assert back.choices[0].logprobs.content[0].logprob == -0.1
    assert back._hidden_params["response_cost"] == 0.25  # cost of a cached call, as lmcot.usage reports it


def test_in_process_replies_round_trip(tmp_path, tiny_causal_path):
    from lmcot.config import SmallLMConfig
    from lmcot.lms import build_lm

    dspy.cache = ReplyCache(tmp_path)
    lm = build_lm(SmallLMConfig(model=str(tiny_causal_path), max_tokens=3))
    first = lm("hello")
    dspy.cache = ReplyCache(tmp_path)
    assert lm("hello") == first and lm.history[-1]["usage"] == {}
    [(_, value)] = _rows(tmp_path)
    assert json.loads(value)["t"] == "json" and json.loads(value)["v"]["_dspy_format"]


_CHILD = """
import sys
import dspy
from lmcot.config import LargeLMConfig
from lmcot.lms import build_lm, configure_cache
configure_cache(sys.argv[1])
predictor = dspy.Predict("question -> answer")
predictor.lm = build_lm(LargeLMConfig(model="openai/oracle", api_base=sys.argv[2], num_retries=0))
print(predictor(question="What is the capital of France?").answer)
"""


def test_replies_survive_a_new_process(tmp_path):
    with OracleServer(lambda body: ANSWER) as srv:
        child = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path), srv.url], cwd=ROOT, capture_output=True,
                               text=True, timeout=300)
        assert child.returncode == 0 and child.stdout.strip() == "Paris", child.stderr[-2000:]
        assert srv.request_count == 1
        dspy.cache = ReplyCache(tmp_path / "replies")
        assert _ask(srv.url) == "Paris" and srv.request_count == 1, "the child's reply was read back here"


def test_a_damaged_row_is_a_miss_not_a_crash(tmp_path):
    with OracleServer(lambda body: ANSWER) as srv:
        dspy.cache = ReplyCache(tmp_path, enable_memory_cache=False)
        _ask(srv.url)
        [(key, _)] = _rows(tmp_path)
        for damage in ('{"t": "json", "v"', '{"t": "os.system", "v": {"command": "touch x"}}', "[1, 2]"):
            with sqlite3.connect(tmp_path / FILE_NAME) as conn:
                conn.execute("UPDATE replies SET value = ? WHERE key = ?", (damage, key))
            before = srv.request_count
            assert _ask(srv.url) == "Paris"
            assert srv.request_count == before + 1, f"{damage!r} was not treated as a miss"
            [(_, value)] = _rows(tmp_path)
            assert json.loads(value)["t"] == "litellm.types.utils.ModelResponse", "the good reply replaced it"


def test_a_file_that_is_not_a_reply_cache_is_one_clear_error(tmp_path):
    (tmp_path / FILE_NAME).write_bytes(b"this is not a database" * 100)
    with pytest.raises(ReplyStoreError, match=str(tmp_path / FILE_NAME)) as err:
        ReplyStore(tmp_path)
    assert "\n" not in str(err.value)


def test_nothing_is_ever_unpickled(tmp_path, monkeypatch):
    """A whole round trip (write, new cache object, read) with every unpickler disabled."""
    import cloudpickle

    def refuse(*args, **kwargs):
        raise AssertionError("the reply cache unpickled something")

    for module, name in ((pickle, "loads"), (pickle, "load"), (pickle, "Unpickler"), (cloudpickle, "loads"),
                         (cloudpickle, "load")):
        monkeypatch.setattr(module, name, refuse)
    with OracleServer(lambda body: ANSWER) as srv:
        dspy.cache = ReplyCache(tmp_path)
        _ask(srv.url)
        dspy.cache = ReplyCache(tmp_path)
        assert _ask(srv.url) == "Paris" and srv.request_count == 1
    assert sorted(p.name for p in tmp_path.iterdir()) <= sorted([FILE_NAME, FILE_NAME + "-wal", FILE_NAME + "-shm"])
    assert all(json.loads(value) for _, value in _rows(tmp_path))


def test_an_old_pickle_cache_is_ignored_never_unpickled(tmp_path, caplog):
    """An earlier lmcot's cache (DSPy's pickles under cache_dir/dspy) with every entry replaced by a payload:
    lmcot.configure_cache never reads it, says so once, and asks the server again."""
    from lmcot.lms import configure_cache

    marker = tmp_path / "ran"
    with OracleServer(lambda body: ANSWER) as srv:
        dspy.cache = pickle_cache(tmp_path / "cache" / "dspy")
        _ask(srv.url)  # the entry an earlier version would find for this call ...
        assert poison_pickle_cache(dspy.cache, marker) == 1  # ... made hostile
        with caplog.at_level(logging.WARNING, logger="lmcot.lms"):
            configure_cache(tmp_path / "cache")
            configure_cache(tmp_path / "cache")
        assert _ask(srv.url) == "Paris"
        assert srv.request_count == 2, "asked again: the old entry was not read"
    assert not marker.exists(), "a pickle from the cache folder ran"
    notes = [r.getMessage() for r in caplog.records if "pickle" in r.getMessage()]
    assert len(notes) == 1 and str(tmp_path / "cache" / "dspy") in notes[0] and "never read" in notes[0]


def test_threads_share_one_cache(tmp_path):
    cache = ReplyCache(tmp_path)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(40):
                request = {"model": "m", "messages": [{"role": "user", "content": f"{t}-{i}"}]}
                cache.put(request, {"text": f"{t}-{i}"})
                assert cache.get(request) == {"text": f"{t}-{i}"}
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and len(cache.store) == 320
    fresh = ReplyCache(tmp_path, enable_memory_cache=False)
    assert fresh.get({"model": "m", "messages": [{"role": "user", "content": "7-39"}]}) == {"text": "7-39"}


def test_a_memory_hit_is_a_copy_marked_as_a_hit(tmp_path):
    import litellm

    cache = ReplyCache(tmp_path)
    request = {"model": "m", "messages": []}
    cache.put(request, litellm.ModelResponse(choices=[{"message": {"content": "A"}}], usage={"prompt_tokens": 2}))
    hit = cache.get(request)
    assert hit.cache_hit and hit.usage == {}
    hit.choices[0].message.content = "changed by the caller"
    assert cache.get(request).choices[0].message.content == "A"
    assert cache.cache_key(request) in ReplyCache(tmp_path, enable_memory_cache=False)  # DSPy's `in`, from the file


def test_a_garbled_first_reply_is_not_kept_when_the_json_fallback_succeeds(tmp_path):
    """DSPy's ChatAdapter answers a reply it cannot parse by asking again in JSON. The JSON reply is
    kept; the garbled first one is not (it used to be written with it, and replayed by every rerun)."""
    healthy = {"on": False}

    def responder(body):
        if body.get("response_format"):
            return '{"answer": "Paris"}'
        return ANSWER if healthy["on"] else "@@ garbled ##"

    with OracleServer(responder) as srv:
        dspy.cache = ReplyCache(tmp_path, enable_memory_cache=False)
        assert parsed_reply(lambda: _ask(srv.url)) == "Paris"
        assert [bool(b.get("response_format")) for b in srv.requests] == [False, True]
        assert len(_rows(tmp_path)) == 1, "only the reply that parsed is cached"
        healthy["on"] = True  # the chat request is asked again, not answered by the kept garbage
        assert parsed_reply(lambda: _ask(srv.url)) == "Paris"
        assert [bool(b.get("response_format")) for b in srv.requests] == [False, True, False]


def test_a_garbled_reply_from_an_older_cache_is_evicted_when_the_fallback_succeeds(tmp_path):
    def responder(body):
        return '{"answer": "Paris"}' if body.get("response_format") else "@@ garbled ##"

    with OracleServer(responder) as srv:
        dspy.cache = ReplyCache(tmp_path, enable_memory_cache=False)
        _ask(srv.url)  # outside parsed_reply, as an older version cached it: the garbled chat reply too
        assert len(_rows(tmp_path)) == 2
        assert parsed_reply(lambda: _ask(srv.url)) == "Paris"
        assert len(_rows(tmp_path)) == 1, "the garbled entry read back was evicted"


def test_the_python_api_gets_lmcots_cache_unless_the_user_chose_one(tmp_path, monkeypatch):
    from lmcot.config import LargeLMConfig
    from lmcot.lms import build_lm
    from lmcot.memo import memo_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr("lmcot.memo._memo_dir", memo_dir())  # configure_cache moves it; put it back after
    monkeypatch.delattr(dspy, "cache")  # as in a fresh process: nobody chose a cache yet
    build_lm(LargeLMConfig(model="openai/x", api_base="http://127.0.0.1:9/v1"))
    assert isinstance(dspy.cache, ReplyCache)
    assert dspy.cache.disk_cache_dir == str(tmp_path / ".cache" / "lmcot" / "replies")
    mine = pickle_cache(tmp_path / "mine")
    dspy.cache = mine
    build_lm(LargeLMConfig(model="openai/x", api_base="http://127.0.0.1:9/v1"))
    assert dspy.cache is mine, "the user's own choice is left alone"


def test_a_nested_cache_in_installs_once_and_leaves_the_cache_as_it_found_it(tmp_path):
    """compile() inside compile_from_config: the inner block reuses the outer's cache (installed once),
    and whatever the inner block changes is undone when it ends."""
    from lmcot.lms import cache_in, configure_cache
    from lmcot.memo import memo_dir

    before = dspy.cache
    with cache_in(tmp_path / "a") as path:
        outer = dspy.cache
        with cache_in(tmp_path / "a") as again:
            assert again == path and dspy.cache is outer  # the same cache, not a second one
            configure_cache(tmp_path / "b")  # the block reconfigures ...
            assert memo_dir() == tmp_path / "b" / "memo"
        assert dspy.cache is outer and memo_dir() == tmp_path / "a" / "memo"  # ... and that is undone
    assert dspy.cache is before


def test_cache_in_leaves_an_unchosen_cache_unchosen(tmp_path, monkeypatch):
    """A library call (compile, an evaluation) in a fresh process: before it nobody had chosen a cache, and
    after it nobody has; DSPy's own pickle cache is neither built nor left behind, so a later build_lm still
    installs lmcot's cache."""
    from lmcot._dspy_reaches import dspy_cache_is_set
    from lmcot.lms import cache_in

    monkeypatch.setenv("DSPY_CACHEDIR", str(tmp_path / "dspy-default"))
    monkeypatch.delattr(dspy, "cache")  # as in a fresh process
    with cache_in(tmp_path / "run"):
        assert isinstance(dspy.cache, ReplyCache)
    assert not dspy_cache_is_set(), "cache_in left DSPy's default cache installed"
    assert not (tmp_path / "dspy-default").exists(), "cache_in built DSPy's pickle cache"


def test_dspys_memory_tier_methods_run_under_the_reply_caches_lock(tmp_path, monkeypatch):
    """reset/save/load_memory_cache are DSPy's; lmcot's cache runs each under its own lock (save and load
    wrap DSPy's), so they must still exist on DSPy's Cache with these signatures, and take the lock."""
    import inspect

    from dspy.clients.cache import Cache

    for name, params in (("reset_memory_cache", ["self"]), ("save_memory_cache", ["self", "filepath"]),
                         ("load_memory_cache", ["self", "filepath", "allow_pickle"])):
        assert list(inspect.signature(getattr(Cache, name)).parameters) == params, f"DSPy changed Cache.{name}"
    cache = ReplyCache(tmp_path)
    cache.write("k", {"x": 1})
    taken = []
    lock = cache._memory_lock

    class Spy:
        def __enter__(self):
            taken.append(True)
            return lock.__enter__()

        def __exit__(self, *exc):
            return lock.__exit__(*exc)

    cache._memory_lock = Spy()
    cache.save_memory_cache(str(tmp_path / "memory.pkl"))
    assert taken == [True]
    cache.reset_memory_cache()
    assert taken == [True, True] and "k" not in cache.memory_cache
    assert cache.store.get("k") == {"x": 1}  # the disk tier keeps it
    cache.load_memory_cache(str(tmp_path / "memory.pkl"), allow_pickle=True)  # a file this test wrote
    assert len(taken) == 3 and cache.memory_cache["k"] == {"x": 1}
