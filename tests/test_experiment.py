"""`lmcot experiment` and `lmcot report` end to end on a tiny grid: the tiny random student, a real
HTTP hop to the scripted oracle server (it knows the gold answers; wrong_rate makes it err now and
then so the numbers vary), every number of the report traced back to results.json, resume without
a repeated paid call, and quality selection in the program."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from support.cli import run_cli

from support.paths import HOTPOT, ROOT

# The smallest grid that still has every row: 3 dev questions, k=2, 4 train questions, 2 KD steps and
# one RL step per ablation variant (the suite must stay within ~15 min on 2 cores).
DEV = 3


@pytest.fixture(scope="module")
def server(hotpot_examples):
    from support.oracle_responder import OracleResponder
    from support.oracle_server import OracleServer

    with OracleServer(OracleResponder([e.toDict() for e in hotpot_examples], wrong_rate=0.4)) as srv:
        yield srv


def _args(server, tmp: Path, student: Path, *extra: str) -> list[str]:
    sets = [
        f"small_lm.model={student}", "small_lm.max_tokens=16",
        "large_lm.model=openai/oracle", f"large_lm.api_base={server.url}", "large_lm.num_retries=1",
        f"data.train={HOTPOT}", "data.train_limit=4", f"data.dev={HOTPOT}", f"data.dev_limit={DEV}",
        "data.max_context_tokens=200", "rationale_metrics.reference_lm=lexical",
        "kd.num_samples=2", "kd.max_steps=2", "kd.learning_rate=0.003", "kd.report_to=[none]", "kd.batch_size=2",
        "kd.min_score=0.0",
        "rl.max_steps=1", "rl.num_generations=2", "rl.batch_size=2", "rl.max_new_tokens=12", "rl.report_to=[none]",
        f"cache_dir={tmp / 'cache'}", "experiment.num_samples=2", "experiment.bootstrap_samples=200",
        "eval.concurrency=4", *extra,
    ]
    return [a for s in sets for a in ("--set", s)]


@pytest.fixture(scope="module")
def experiment(server, tiny_causal_path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("experiment")
    out = tmp / "out"
    before = server.request_count
    result = run_cli(["experiment", "--out", str(out), *_args(server, tmp, tiny_causal_path)])
    assert result.returncode == 0, result.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    return {"tmp": tmp, "out": out, "results": results, "stderr": result.stderr,
            "requests": server.request_count - before}


def _md_table(md: str, title_start: str) -> list[list[str]]:
    """Rows (cells) of the Markdown table under the ### heading that starts with ``title_start``."""
    block = md.split(f"### {title_start}", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
    lines = [ln for ln in block.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in lines[2:]]


def _mean(xs):
    return sum(xs) / len(xs)


def _p_value(cell: str) -> float:
    return 0.0 if cell == "< 0.001" else float(cell)


def _unmarked(label: str) -> str:
    """A report label without the marks the report adds ([scripted], [no measurable change from KD])."""
    from lmcot.experiment.honesty import NO_CHANGE_MARK, SCRIPTED_MARK

    return label.replace(f" {SCRIPTED_MARK}", "").replace(f" {NO_CHANGE_MARK}", "")


# ----------------------------------------------------------------------------- the grid and its numbers
@pytest.mark.slow
def test_every_method_row_is_present_with_n_equal_to_the_dev_size(experiment):
    results = experiment["results"]
    expected = {"standard", "cot", "cot_sc", "guided_untrained", "guided_untrained_sc", "guided_kd", "guided_kd_sc",
                "guided_kd_rl", "guided_kd_rl_sc", "guided_rl_quality", "guided_rl_answer", "guided_kd_rl_quality"}
    assert set(results["methods"]) == expected
    for name, m in results["methods"].items():
        assert len(m["rows"]) == DEV, name
        assert [r["id"] for r in m["rows"]] == results["dev"]["ids"], name
    md = (experiment["out"] / "report.md").read_text()
    main = {_unmarked(row[0]): row for row in _md_table(md, "Methods on")}
    for name, m in results["methods"].items():
        if m["group"] != "ablation":
            assert main[m["label"]][1] == str(DEV), name
    assert [r[0] for r in _md_table(md, "RL ablation")] == ["quality + answer F1", "quality only", "answer F1 only"]
    # Self-consistency asks the large LM k times per question; quality selection once.
    assert results["methods"]["guided_kd_rl_sc"]["usage"]["calls"] == 2 * DEV
    assert results["methods"]["guided_kd_rl_quality"]["usage"]["calls"] == DEV
    assert results["methods"]["cot_sc"]["usage"]["calls"] == 2 * DEV


@pytest.mark.slow
def test_each_table_value_equals_the_value_recomputed_from_results_json(experiment):
    from lmcot.metrics import answer_em

    results, md = experiment["results"], (experiment["out"] / "report.md").read_text()
    main = {_unmarked(row[0]): row for row in _md_table(md, "Methods on")}
    for m in results["methods"].values():
        if m["group"] == "ablation":
            continue
        row, u = main[m["label"]], m["usage"]
        em, f1 = _mean([r["em"] for r in m["rows"]]), _mean([r["f1"] for r in m["rows"]])
        assert row[2] == f"{em:.3f}" and row[4] == f"{f1:.3f}", m["name"]
        assert row[6:9] == [str(u["calls"]), str(u["prompt_tokens"]), str(u["completion_tokens"])]
        assert row[9] == "n/a" and row[12] == "n/a"  # litellm has no price for the stand-in
        correct = sum(r["em"] for r in m["rows"])
        tokens = u["prompt_tokens"] + u["completion_tokens"]
        assert row[11] == ("n/a" if not correct else f"{tokens / correct:.0f}")
        lo, hi = (float(x) for x in row[3].strip("[]").split(", "))
        assert lo <= em + 1e-9 and em <= hi + 1e-9
    aspects = {row[0]: row[1:] for row in _md_table(md, "Rationale quality")}
    students = [s for s in ("untrained", "kd", "kd_rl", "rl_quality", "rl_answer") if s in results["aspects"]]
    for i, student in enumerate(students):
        scores = results["aspects"][student]["scores"]
        assert len(scores) == DEV
        for aspect in ("factuality", "readability"):
            assert aspects[aspect][i] == f"{_mean([s[aspect] for s in scores]):.3f}"
    # Rationale-quality analysis, recomputed independently of lmcot.experiment.quality.
    q = results["quality"]
    sc = {r["id"]: r for r in results["methods"][q["method"]]["rows"]}
    best_em, vote_em, best_means = [], [], []
    for qr in q["rows"]:
        means = [_mean(list(s.values())) for s in qr["scores"]]
        best = means.index(max(means))
        best_em.append(answer_em(sc[qr["id"]]["answers"][best], sc[qr["id"]]["gold"]))
        vote_em.append(sc[qr["id"]]["em"])
        best_means.append(max(means))
    selection = {row[0]: row for row in _md_table(md, "Which of k=")}
    assert selection["quality (mean)"][2] == f"{_mean(best_em):.3f}"
    assert selection["majority vote"][2] == f"{_mean(vote_em):.3f}"
    thresholds = _md_table(md, "Accuracy of the questions")
    for row, t in zip(thresholds, q["thresholds"]):
        kept = [e for m, e in zip(best_means, best_em) if m >= t]
        assert row[1] == str(len(kept))
        assert row[2] == (f"{_mean(kept):.3f}" if kept else "n/a")
    # The program's quality selection answers from the best-mean rationale: the same as the analysis.
    program_rows = results["methods"]["guided_kd_rl_quality"]["rows"]
    assert [r["rationale"] for r in program_rows] == [
        sc[qr["id"]]["rationales"][[_mean(list(s.values())) for s in qr["scores"]].index(
            max(_mean(list(s.values())) for s in qr["scores"]))] for qr in q["rows"]]
    sig = _md_table(md, "Significance")
    assert any(_unmarked(r[0]).startswith("LM-guided CoT, KD+RL vs CoT prompting") for r in sig)
    assert any(_unmarked(r[0]).startswith("LM-guided CoT, KD+RL vs LM-guided CoT, KD") for r in sig)
    for r in sig:
        assert all(0.0 <= _p_value(p) <= 1.0 for p in (r[4], r[7], r[9]))


@pytest.mark.slow
def test_the_top_quality_row_counts_the_k_samples_it_reads(experiment):
    """The top-quality row reads the k rationales the self-consistency row sampled (DSPy's cache serves
    them): its small-LM time is theirs, recorded when they were generated, not the 0 s it took to read
    them back; its table cell adds the time to score them."""
    methods, md = experiment["results"]["methods"], (experiment["out"] / "report.md").read_text()
    sc, quality = methods["guided_kd_rl_sc"]["usage"], methods["guided_kd_rl_quality"]["usage"]
    assert sc["small_lm_seconds"] > 0 and quality["small_lm_untimed_calls"] == 0
    assert quality["small_lm_seconds"] == pytest.approx(sc["small_lm_seconds"], abs=0.002)
    assert quality["scoring_seconds"] > 0
    main = {row[0]: row for row in _md_table(md, "Methods on")}
    cell = main[methods["guided_kd_rl_quality"]["label"]][10]
    assert cell == f"{quality['small_lm_seconds'] + quality['scoring_seconds']:.1f}"


@pytest.mark.slow
def test_the_report_gives_the_one_off_training_cost_of_the_real_run(experiment):
    results, md = experiment["results"], (experiment["out"] / "report.md").read_text()
    training = results["training"]
    assert set(training) == {"kd", "kd_rl", "rl_quality", "rl_answer"}
    teacher = training["kd"]["kd"]["teacher"]
    assert teacher["calls"] == 4 * 2 and teacher["prompt_tokens"] > 0  # data.train_limit x kd.num_samples
    assert training["kd"]["kd"]["train_seconds"] > 0 and training["kd"]["kd"]["tokens_trained"] > 0
    assert training["kd"]["kd"]["curve"]["loss"]
    for student in ("kd_rl", "rl_quality", "rl_answer"):
        rl = training[student]["rl"]
        assert rl["train_seconds"] > 0 and rl["steps"] == 1 and rl["curve"]["reward"]
    # Quality-only RL asks the large LM nothing (answer_f1 has weight 0); the others answer each rollout.
    assert training["rl_quality"]["rl"]["reward_calls"]["calls"] == 0
    assert training["rl_answer"]["rl"]["reward_calls"]["calls"] >= 2
    stages = {row[0]: row for row in _md_table(md, "One-off cost of training")}
    assert stages[f"teacher rationales for KD ({teacher['kept']} kept)"][1] == "8"
    assert "RL: rationale quality only (1 step)" in stages and "RL: answer F1 only (1 step)" in stages
    per = {row[0]: row for row in _md_table(md, "Cost per correct answer including training")}
    assert per["Standard prompting"][2] == "-" and per["LM-guided CoT, KD"][2] == "n/a"  # the stand-in has no price
    assert per["LM-guided CoT, untrained"][2] == "-"


@pytest.mark.slow
def test_each_rl_stage_names_the_reward_set_it_used(experiment):
    err = experiment["stderr"]
    for name in ("rationale quality + answer F1", "rationale quality only", "answer F1 only"):
        assert f"stage rl: {name} (1 process)" in err, name
    assert err.count("rationale quality + answer F1 (1 process)") == 1  # not the ablation's other variants
    assert "answer_f1 0 (weighted_sum)" in err and "factuality 0, relevance 0" in err


@pytest.mark.slow
def test_every_png_opens_and_is_not_blank(experiment):
    import matplotlib.image as mpimg
    import numpy as np

    pngs = sorted((experiment["out"] / "plots").glob("*.png"))
    assert [p.name for p in pngs] == ["aspects_rl.png", "cost_accuracy.png", "em_f1.png", "quality_threshold.png",
                                      "training_kd.png", "training_kd_rl.png", "training_rl_answer.png",
                                      "training_rl_quality.png"]
    for p in pngs:
        img = mpimg.imread(p)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100, p.name
        assert float(np.std(img[..., :3])) > 0.02, f"{p.name} looks blank"
    page = (experiment["out"] / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(pngs) and "src='plots/" not in page


@pytest.mark.slow
def test_report_rerenders_without_any_request_and_writes_the_same_numbers(experiment, server):
    out = experiment["out"]
    md_before = (out / "report.md").read_text()
    tables_before = (out / "tables.json").read_text()
    shutil.rmtree(out / "plots")
    (out / "report.md").unlink()
    (out / "report.html").unlink()
    before = server.request_count
    probe = ("import sys; from lmcot.commands.cli import app; sys.argv=['lmcot','report',%r]\n"
             "try:\n    app()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
             "print('heavy:', sorted(m for m in ('dspy','torch','transformers','litellm') if m in sys.modules))"
             % str(out))
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "heavy: []" in result.stdout
    assert server.request_count == before
    assert (out / "report.md").read_text() == md_before
    assert (out / "tables.json").read_text() == tables_before
    assert len(list((out / "plots").glob("*.png"))) == 8 and (out / "report.html").exists()


@pytest.mark.slow
def test_rerun_skips_every_step_and_makes_no_request(experiment, server, tiny_causal_path):
    before = server.request_count
    result = run_cli(["experiment", "--out", str(experiment["out"]),
                   *_args(server, experiment["tmp"], tiny_causal_path)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert server.request_count == before
    assert "method-guided_kd_rl: done earlier, skipped" in result.stderr


@pytest.mark.slow
def test_report_of_a_folder_without_results_fails_in_one_line(tmp_path):
    result = run_cli(["report", str(tmp_path)])
    assert result.returncode == 2
    assert "no results here" in result.stderr


# ----------------------------------------------------------------------------- interrupted and resumed
def _small_grid(server, student: Path, folder: Path) -> list[str]:
    return ["experiment", "--out", str(folder / "out"),
            *_args(server, folder, student, "experiment.students=[untrained]", "experiment.rl_ablation=[]",
                   "experiment.quality_student=untrained", "experiment.baselines=[standard, cot_sc]",
                   f"data.dev_limit={DEV + 2}", "small_lm.seed=7")]


def _bodies(server, requests: list[dict] | None = None) -> Counter:
    # k samples at one temperature share a body (rollout_id is a cache key, not sent): a multiset.
    return Counter(json.dumps(b, sort_keys=True) for b in (server.requests if requests is None else requests))


@pytest.fixture(scope="module")
def clean_requests(server, tiny_causal_path, tmp_path_factory):
    """The requests of one uninterrupted run of the small grid, on a fresh cache."""
    server.clear()
    result = run_cli(_small_grid(server, tiny_causal_path, tmp_path_factory.mktemp("clean")))
    assert result.returncode == 0, result.stderr[-3000:]
    return _bodies(server)


def _interrupt_when(server, args: list[str], sig: int, at_requests: int) -> str:
    """Start ``lmcot experiment``; once the server has answered ``at_requests`` requests in all it holds
    the next ones, and ``sig`` is sent while they are held (then they are let through: Ctrl-C waits for
    the calls in flight). Returns the run's stderr."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server.hold_after(at_requests - server.request_count)
    try:
        # Ctrl-C as at a terminal: the child starts with SIGINT's default disposition whatever this
        # process inherited (a Python started with SIGINT ignored never raises KeyboardInterrupt).
        proc = subprocess.Popen([sys.executable, "-m", "lmcot", *args], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        assert server.wait_until_holding(timeout=600), "the run finished before it could be interrupted"
        os.kill(proc.pid, sig)
    finally:
        server.release()
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode in (-sig, 130), f"the run was not interrupted by {sig!r}: {proc.returncode}"
    return stderr


@pytest.mark.slow
def test_interrupted_and_rerun_pays_for_no_call_twice(server, tiny_causal_path, tmp_path, clean_requests):
    """SIGKILL in the middle of the method steps, rerun, Ctrl-C later on, rerun to the end (one run
    for both signals, to keep the suite cheap): the server sees the requests of one clean run. Ctrl-C
    lets the calls in flight finish (and be cached): it repeats nothing. SIGKILL loses the replies in
    flight, so at most those (eval.concurrency questions x k samples) are sent again."""
    server.clear()
    args = _small_grid(server, tiny_causal_path, tmp_path)
    in_flight = 4 * 2  # eval.concurrency x experiment.num_samples
    _interrupt_when(server, args, signal.SIGKILL, 6)
    killed = server.request_count
    # Ctrl-C halfway through what is left.
    left = sum(clean_requests.values()) - killed
    assert left >= 2, f"the SIGKILL landed too late ({killed} requests of {sum(clean_requests.values())})"
    stderr = _interrupt_when(server, args, signal.SIGINT, killed + left // 2)
    assert "rerun the same command to resume" in stderr
    interrupted = server.request_count
    before_ctrl_c_rerun = _bodies(server)
    result = run_cli(args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 0 < killed < interrupted < server.request_count
    got = _bodies(server)
    repeated = sum((got - clean_requests).values())
    assert repeated <= in_flight, f"{repeated} request(s) were sent twice"
    # The rerun after Ctrl-C repeated nothing: every repeat was sent before it (in flight at the SIGKILL).
    assert got - clean_requests == before_ctrl_c_rerun - clean_requests, "a request was repeated after Ctrl-C"
    assert clean_requests - got == Counter()  # nothing missing: the rerun finished the grid
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert all(len(m["rows"]) == DEV + 2 for m in results["methods"].values())


# ----------------------------------------------------------------------------- quality selection
class _HandScorer:
    """Scores by the rationale's text (a hand-made case): 'good' is best on the mean, 'sharp' on factuality."""

    table = {
        "a vague guess": dict.fromkeys(("factuality", "relevance", "logicality", "consistency", "coherence",
                                        "fluency", "naturalness", "readability"), 0.2),
        "a good rationale": dict.fromkeys(("factuality", "relevance", "logicality", "consistency", "coherence",
                                           "fluency", "naturalness", "readability"), 0.8),
        "a sharp but clumsy one": {**dict.fromkeys(("factuality", "relevance", "logicality", "consistency",
                                                    "coherence", "fluency", "naturalness", "readability"), 0.1),
                                   "factuality": 0.95},
    }

    def __init__(self):
        self.calls = 0

    def score(self, rows, aspects=None, progress=False):
        self.calls += 1
        return [dict(self.table[r["rationale"]]) for r in rows]


@pytest.mark.parametrize("select, expected", [("quality", 1), ("quality:factuality", 2)])
def test_quality_selection_picks_the_best_scored_rationale_and_asks_the_large_lm_once(
        select, expected, server, hotpot_examples, fresh_cache):
    import dspy

    from lmcot.programs import LMGuidedCoT

    large = dspy.LM("openai/oracle", api_base=server.url, api_key="sk-test", num_retries=0, cache=False)
    scorer = _HandScorer()
    program = LMGuidedCoT(None, large, num_samples=3, select=select, scorer=scorer)
    rationales = list(_HandScorer.table)
    program.write_rationales = lambda question, context, k=None: list(rationales)
    ex = hotpot_examples[0]
    before = len(server.requests)
    pred = program(question=ex.question, context=ex.context)
    sent = server.requests[before:]
    assert len(sent) == 1 and scorer.calls == 1
    assert pred.selected == expected and pred.rationale == rationales[expected]
    prompt = json.dumps(sent[0]["messages"])
    assert rationales[expected] in prompt and all(r not in prompt for i, r in enumerate(rationales) if i != expected)
    assert len(pred.scores) == 3


def test_quality_selection_with_the_cheap_scorer_prefers_a_grounded_rationale(hotpot_examples):
    from lmcot.metrics.rationale import RationaleScorer
    from lmcot.config import RationaleMetricsConfig
    from lmcot.programs.lm_guided_cot import best_rationale

    ex = hotpot_examples[0]
    facts = [s for title, sents in ex.paragraphs for i, s in enumerate(sents) if [title, i] in ex.supporting_facts]
    grounded = " ".join(facts) + f" So the answer is {ex.answer}."
    noise = "banana purple the the of of seventeen"
    scores = RationaleScorer(RationaleMetricsConfig()).score(
        [{"question": ex.question, "context": ex.context, "rationale": r} for r in (noise, grounded)])
    assert best_rationale(scores) == 1


def test_select_must_be_vote_quality_or_an_aspect():
    from lmcot.programs import LMGuidedCoT

    with pytest.raises(ValueError, match="quality:<aspect>"):
        LMGuidedCoT(None, None, num_samples=2, select="quality:beauty")


@pytest.mark.parametrize("setting, named", [("experiment.bogus=1", "experiment.bogus"),
                                            ("experiment.thresholds=[0.5, 2]", "experiment.thresholds"),
                                            ("experiment.rl_ablation=[everything]", "experiment.rl_ablation")])
@pytest.mark.slow
def test_a_bad_experiment_setting_fails_in_one_line_before_any_call(setting, named, server, tmp_path):
    from typer.testing import CliRunner

    from lmcot.commands.cli import app

    before = server.request_count
    result = CliRunner().invoke(app, ["experiment", "--out", str(tmp_path / "out"), "--set", setting,
                                      "--set", f"large_lm.api_base={server.url}"])
    assert result.exit_code == 2
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and named in errors[0]
    assert server.request_count == before and not (tmp_path / "out").exists()


def test_a_kd_copy_cut_off_midway_leaves_no_kd_folder(tmp_path, monkeypatch):
    """Without links the RL students get a copy of the KD stage; a crash mid-copy must not leave a `kd`
    folder (holding KD's DONE marker) that a rerun would take as finished."""
    import shutil

    from lmcot.experiment import students

    kd_stage = tmp_path / "students" / "kd" / "kd"
    (kd_stage / "model").mkdir(parents=True)
    (kd_stage / "DONE.json").write_text("{}")
    (kd_stage / "model" / "model.safetensors").write_text("weights")
    monkeypatch.setattr(students.os, "symlink", lambda *a, **k: (_ for _ in ()).throw(OSError("no links here")))
    real_copytree = shutil.copytree

    def copy_file(src, dst, **kwargs):  # the weights fail to copy, after DONE.json was copied
        if str(src).endswith(".safetensors"):
            raise OSError("disk full")
        return shutil.copy2(src, dst, **kwargs)

    def copy_then_die(src, dst, *args, **kwargs):  # copytree calls itself (positionally) for each subfolder
        return real_copytree(src, dst, copy_function=copy_file)

    folder = tmp_path / "students" / "kd_rl"
    monkeypatch.setattr(shutil, "copytree", copy_then_die)
    with pytest.raises(shutil.Error, match="disk full"):
        students._link_kd(folder, kd_stage)
    assert not (folder / "kd").exists() and list(folder.iterdir()) == []
    monkeypatch.setattr(shutil, "copytree", real_copytree)
    students._link_kd(folder, kd_stage)  # the rerun copies it whole
    assert (folder / "kd" / "model" / "model.safetensors").read_text() == "weights"
    assert (folder / "kd" / "DONE.json").is_file() and not (folder / "kd").is_symlink()
