"""Issue 16.5: one run at a time per output folder (``compile``, ``experiment``, ``evaluate --out``).

Two ``lmcot compile --out SAME`` at once both ran to exit 0 (twice the paid calls, interleaved traces,
different weights). Now the second fails at once with one line naming the holder's PID; a lock left
by a killed run is taken over; the processes of one multi-process launch share it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from lmcot.run_lock import LOCK_FILE, OutputBusyError, output_lock
from support.paths import HOTPOT
from support.reliability import assert_one_line_error, invoke

_HOLDER = textwrap.dedent("""
    import sys
    from lmcot.run_lock import output_lock
    with output_lock(sys.argv[1], "lmcot compile"):
        print("locked", flush=True)
        sys.stdin.read()  # held until the test closes stdin (or kills this process)
""")


@pytest.fixture()
def holder(tmp_path):
    """Another process holding the lock of tmp_path/out; yields (out, its PID)."""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield out, proc
    if proc.poll() is None:
        proc.stdin.close()
        proc.wait(timeout=60)


def test_a_second_holder_fails_at_once_naming_the_pid(holder):
    out, proc = holder
    with pytest.raises(OutputBusyError) as err:
        with output_lock(out, "lmcot compile"):
            pass
    message = str(err.value)
    assert message.startswith(f"{out}: another lmcot run (PID {proc.pid}, lmcot compile) is writing this folder")
    assert "\n" not in message


def test_a_lock_left_by_a_killed_run_is_taken_over(holder):
    out, proc = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert (out / LOCK_FILE).read_text().startswith(f"{proc.pid}\n")  # the file stays; the kernel freed the lock
    with output_lock(out, "lmcot compile"):
        assert (out / LOCK_FILE).read_text().startswith(f"{os.getpid()}\n")
    assert not (out / LOCK_FILE).exists()


def test_a_stale_lock_file_with_a_dead_pid_is_taken_over(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).write_text("999999\nlmcot compile\n")
    with output_lock(out, "lmcot evaluate"):
        pass
    assert out.is_dir() and not (out / LOCK_FILE).exists()


def test_ranks_of_one_launch_share_the_lock(holder, monkeypatch):
    """torchrun / accelerate launch: rank 0 holds it, the other ranks of the launch do not ask."""
    out, proc = holder
    monkeypatch.setenv("RANK", "1")
    with output_lock(out, "lmcot compile"):  # no OutputBusyError, though another process holds the lock
        assert (out / LOCK_FILE).read_text().startswith(f"{proc.pid}\n")  # rank 1 neither took nor rewrote it
    assert (out / LOCK_FILE).read_text().startswith(f"{proc.pid}\n")  # nor removed it on leaving


def test_the_lock_is_reentrant_and_leaves_no_empty_folder(tmp_path):
    out = tmp_path / "a" / "out"
    with output_lock(out, "lmcot compile"):
        with output_lock(out, "LMCoTCompiler.compile"):  # the command and the library both hold it
            assert (out / LOCK_FILE).is_file()
    assert not (tmp_path / "a").exists()  # nothing was written: the folders it made are gone again


def _common(server, tmp_path, tiny):
    return ["--set", f"data.dev={HOTPOT}", "--set", f"data.train={HOTPOT}", "--set", "data.train_limit=2",
            "--set", "large_lm.model=openai/oracle", "--set", f"large_lm.api_base={server.url}",
            "--set", f"small_lm.model={tiny}", "--set", "small_lm.max_tokens=8", "--set", "data.max_context_tokens=null",
            "--set", f"cache_dir={tmp_path / 'cache'}"]


@pytest.mark.parametrize("command", [["compile"], ["evaluate", "--methods", "standard", "--limit", "2"],
                                     ["experiment", "--set", "experiment.students=[untrained]",
                                      "--set", "experiment.baselines=[standard]", "--set", "experiment.rl_ablation=[]",
                                      "--set", "experiment.quality_analysis=false",
                                      "--set", "experiment.self_consistency=false"]])
def test_a_second_command_on_a_busy_folder_fails_before_any_call(command, holder, oracle_server, tmp_path,
                                                                  tiny_causal_path):
    out, proc = holder
    before = oracle_server.request_count
    result = invoke([command[0], "--out", out, *command[1:], *_common(oracle_server, tmp_path, tiny_causal_path)])
    assert_one_line_error(result, str(out), f"PID {proc.pid}")
    assert oracle_server.request_count == before
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing of the second run written
