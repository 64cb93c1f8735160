"""Issue 16.9: a full disk or a file-size limit is one line naming the path, exit 2, nothing half-written.

The real thing runs in a child process under ``RLIMIT_FSIZE`` (``ulimit -f``): writes past the limit
fail with ``[Errno 27] File too large``, and SQLite with ``disk I/O error``, as on a full disk. The
library messages that carry no path (torch's ``unexpected pos``, safetensors') are mapped too. (The
free-space check before training is in test_training_preflight.py.)
"""

from __future__ import annotations

import errno
import os
import resource
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from lmcot.disk import DiskFullError, disk_full_error
from lmcot.errors import UserError
from support.oracle_responder import OracleResponder
from support.oracle_server import OracleServer
from support.paths import HOTPOT


def _limited(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_write_past_the_limit_names_the_file_and_leaves_the_old_one(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text('{"old": true}\n')
    child = textwrap.dedent(f"""
        from lmcot.jsonl import write_json
        try:
            write_json({str(target)!r}, {{"rows": ["x" * 1000] * 100}})
        except OSError as exc:
            print(exc.errno, exc.filename)
    """)
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, preexec_fn=_limited(20_000),
                         timeout=300)
    assert out.stdout.split() == [str(errno.EFBIG), str(target)], out.stderr[-2000:]
    assert target.read_text() == '{"old": true}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left behind


@pytest.mark.slow  # the CLI in a child process (issue 19.7's rule), though it takes seconds
def test_evaluate_under_a_file_size_limit_is_one_line_naming_the_cache(tmp_path, hotpot_examples):
    """DSPy's reply cache (SQLite) cannot be created: a traceback with "disk I/O error" before."""
    with OracleServer(OracleResponder([e.toDict() for e in hotpot_examples])) as srv:
        out = subprocess.run(
            [sys.executable, "-m", "lmcot", "evaluate", "--methods", "standard", "--limit", "2",
             "--out", str(tmp_path / "out"), "--set", f"data.dev={HOTPOT}", "--set", "large_lm.model=openai/oracle",
             "--set", f"large_lm.api_base={srv.url}", "--set", f"cache_dir={tmp_path / 'cache'}",
             "--set", "data.max_context_tokens=null"],
            capture_output=True, text=True, preexec_fn=_limited(20_000), timeout=600,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert srv.request_count == 0
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    [line] = [x for x in out.stderr.splitlines() if x.startswith("error:")]
    assert str(tmp_path / "cache") in line and "cache_dir" in line and "disk is full" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("exc", "named"), [
    (sqlite3.OperationalError("database or disk is full"), "CACHE (cache_dir: the reply cache)"),
    (sqlite3.OperationalError("disk I/O error"), "CACHE (cache_dir: the reply cache)"),
    (OSError(errno.ENOSPC, "No space left on device"), "OUT (--out) or CACHE (cache_dir)"),
    (OSError(errno.ENOSPC, "No space left on device", "/data/out/kd/traces.jsonl"), "/data/out/kd/traces.jsonl"),
    (RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4288 vs 4182"),
     "OUT (--out) or CACHE (cache_dir)"),
])
def test_disk_full_errors_are_recognised_and_name_a_path(exc, named):
    wrapped = RuntimeError("saving the checkpoint failed")
    wrapped.__cause__ = exc
    for error in (exc, wrapped):
        full = disk_full_error(error, {"--out": "OUT", "cache_dir": "CACHE"})
        assert isinstance(full, DiskFullError) and isinstance(full, UserError)
        assert str(full).startswith(f"{named}: cannot write (") and "\n" not in str(full)


def test_other_errors_are_not_taken_for_a_full_disk():
    for exc in (sqlite3.OperationalError("no such table: x"), OSError(errno.EACCES, "Permission denied"),
                RuntimeError("CUDA out of memory"), ValueError("disk I/O error")):
        assert disk_full_error(exc, {"--out": "OUT"}) is None


def test_the_cli_maps_a_full_disk_in_a_library_to_one_line(tmp_path, monkeypatch):
    import lmcot.programs.evaluation
    import lmcot.preflight
    from support.reliability import assert_one_line_error, invoke

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(lmcot.programs.evaluation, "evaluate_from_config", full)
    monkeypatch.setattr(lmcot.preflight, "check_endpoint", lambda *a, **k: None)  # no server needed to reach the run
    result = invoke(["evaluate", "--methods", "standard", "--out", tmp_path / "o", "--set", f"data.dev={HOTPOT}",
                     "--set", "data.max_context_tokens=null", "--set", f"cache_dir={tmp_path / 'c'}"])
    assert_one_line_error(result, str(tmp_path / "c"), "database or disk is full")
