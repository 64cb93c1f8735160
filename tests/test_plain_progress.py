"""Progress under nohup / in a CI log: plain lines instead of a silent rich bar."""

from __future__ import annotations

import io

from lmcot.console import PlainProgress, progress_bar


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    with PlainProgress("guided", every_s=0.0, stream=out) as bar:
        task = bar.add_task("", total=4)
        for _ in range(4):
            bar.advance(task)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("guided: 1/4 (25%)") and lines[-1].startswith("guided: 4/4 (100%)")


def test_throttled_to_one_line_per_interval_plus_the_end():
    out = io.StringIO()
    bar = PlainProgress("kd", every_s=3600, stream=out)
    task = bar.add_task("", total=100)
    bar.start()
    for i in range(100):
        bar.update(task, completed=i + 1)
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[-1]]
    assert "100/100" in out.getvalue()


def test_pytest_capture_is_not_a_terminal():
    assert isinstance(progress_bar(label="x"), PlainProgress)


def test_lines_from_concurrent_bars_never_interleave_and_name_the_label_once():
    import threading

    from lmcot.console import PlainProgress

    class Stream:  # records each write: a line must arrive whole, newline included
        def __init__(self):
            self.writes = []

        def write(self, text):
            self.writes.append(text)

        def flush(self):
            pass

    stream = Stream()
    # A clock that stands still: every line says "0s elapsed" however busy the machine is.
    bar = PlainProgress("before RL", every_s=0.0, stream=stream, clock=_Clock())
    tasks = [bar.add_task("before RL: rationales", total=200), bar.add_task("before RL", total=200)]
    # two threads per bar, 100 advances each: every count lands, each bar ends at 200/200
    threads = [threading.Thread(target=lambda t=t: [bar.advance(t) for _ in range(100)]) for t in tasks + tasks]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert stream.writes and all(w.endswith("\n") and w.count("\n") == 1 for w in stream.writes)
    assert not any("before RL before RL" in w for w in stream.writes)
    assert sum(w.endswith("200/200 (100%), 0s elapsed\n") for w in stream.writes) == 2
    assert stream.writes[-1] in ("before RL: rationales: 200/200 (100%), 0s elapsed\n",
                                 "before RL: 200/200 (100%), 0s elapsed\n")


def test_tables_off_a_terminal_are_not_wrapped_at_80_columns(monkeypatch):
    from rich.table import Table

    from lmcot.console import table_console

    monkeypatch.delenv("COLUMNS", raising=False)
    console = table_console()
    table = Table()
    for i in range(9):
        table.add_column(f"column number {i}")
    table.add_row(*(f"value {i}" for i in range(9)))
    with console.capture() as captured:
        console.print(table)
    lines = captured.get().splitlines()
    assert not console.is_terminal and len(lines) == 5, lines  # border, header, rule, row, border
    assert "column number 8" in lines[1]
    monkeypatch.setenv("COLUMNS", "70")
    assert table_console().width == 70  # a COLUMNS setting still wins


class _Clock:
    """A clock the test moves by hand: no sleeping, no wall-clock window."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_plain_lines_show_the_rate_and_the_time_left_like_the_rich_bar():
    out, clock = io.StringIO(), _Clock()
    bar = PlainProgress("KD", every_s=60, stream=out, clock=clock)
    task = bar.add_task("", total=16)
    bar.start()
    clock.now += 648  # 10m48s later, 7 of 16 steps done
    bar.update(task, completed=7)
    clock.now += 600
    bar.update(task, completed=16)
    first, last = out.getvalue().splitlines()
    # 7 steps in 648 s: 0.65 a minute; 9 left at that rate: 833 s.
    assert first == "KD: 7/16 (44%), 10m48s elapsed, 0.65/min, ETA 13m53s"
    assert last == "KD: 16/16 (100%), 20m48s elapsed, 0.77/min"  # finished: no ETA


def test_a_resumed_bar_measures_its_rate_from_where_it_started_and_units_follow_the_speed():
    out, clock = io.StringIO(), _Clock()
    bar = PlainProgress("RL", every_s=0, stream=out, clock=clock)
    task = bar.add_task("", total=100, completed=40)  # a run resumed at step 40
    clock.now += 2
    bar.update(task, completed=50)  # 10 steps in 2 s
    clock.now += 3 * 3600
    bar.update(task, completed=51)  # then very slow
    lines = out.getvalue().splitlines()
    assert lines[0] == "RL: 50/100 (50%), 2s elapsed, 5.00/s, ETA 10s"
    assert lines[1].startswith("RL: 51/100 (51%), 3h00m02s elapsed, 3.67/h, ETA 13h")
    out2 = io.StringIO()
    quiet = PlainProgress("x", every_s=0, stream=out2, clock=_Clock())
    quiet.update(quiet.add_task("", total=3), completed=1)  # under a second: no rate yet
    assert out2.getvalue() == "x: 1/3 (33%), 0s elapsed\n"


def test_the_terminal_bar_names_a_task_as_the_plain_lines_do(monkeypatch):
    """One shape for every bar: on a terminal rich's bar carries the same name as the plain lines
    (the label once, then the description), as plain text, with done/total and the time left."""
    from rich.progress import MofNCompleteColumn, Progress, TimeRemainingColumn

    monkeypatch.setattr("lmcot.console.is_terminal", lambda: True)
    bar = progress_bar("before RL")
    assert isinstance(bar, Progress)
    assert any(isinstance(c, MofNCompleteColumn) for c in bar.columns)
    assert any(isinstance(c, TimeRemainingColumn) for c in bar.columns)
    repeated, extra = bar.add_task("before RL: rationales [/x]", total=3), bar.add_task("loss 0.5", total=3)
    name, tasks = bar.columns[0], {task.id: task for task in bar.tasks}
    assert name.render(tasks[repeated]).plain == "before RL: rationales [/x]"
    assert name.render(tasks[extra]).plain == "before RL loss 0.5"
