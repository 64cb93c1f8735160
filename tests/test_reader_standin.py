"""The rationale-sensitive stand-in reader (scripted) and the evidence rule it answers by."""

from __future__ import annotations

import dspy
import pytest

from lmcot.metrics.rationale.evidence import states_evidence
from lmcot.programs.signatures import Answer, AnswerDirectly
from support import OracleResponder, examples

# The shared bridge example with longer gold sentences, so that partial quotes can be told apart.
BRIDGE = {**examples.BRIDGE, "paragraphs": [
    ["Zorbatron", ["The Zorbatron was invented by Anna Keller in Graz.", "It was patented in 1931."]],
    ["Anna Keller", ["Anna Keller studied physics at the University of Vienna."]],
    *examples.BRIDGE["paragraphs"][2:]]}
YESNO = examples.COMPARISON
GOLD = ["The Zorbatron was invented by Anna Keller in Graz.", "Anna Keller studied physics at the University of Vienna."]


def context_of(ex: dict, drop: str | None = None) -> str:
    return "\n".join(f"{t}: {' '.join(s)}" for t, s in ex["paragraphs"] if t != drop)


def ask(responder, signature, ex, temperature=0.0, n=1, drop=None, **inputs):
    adapter = dspy.ChatAdapter()
    messages = adapter.format(signature, demos=[], inputs={"question": ex["question"],
                                                            "context": context_of(ex, drop), **inputs})
    replies = responder({"messages": messages, "temperature": temperature, "n": n})
    return [adapter.parse(signature, r["text"]) for r in replies]


@pytest.mark.parametrize("rationale, stated", [
    ("The Zorbatron was invented by Anna Keller in Graz.", True),             # a gold sentence, verbatim
    ("Anna Keller, who invented it, studied physics at Vienna's university.", True),  # paraphrase, >= 60%
    ("It was made in Graz.", False),                                          # too little of any sentence
    ("I think the answer is Paris.", False),
    ("So the answer is Vienna.", True),                                       # the answer itself
    ("", False),
])
def test_evidence_rule(rationale, stated):
    assert states_evidence(rationale, GOLD, "Vienna") is stated


def test_yes_no_answers_count_only_as_a_conclusion():
    gold = ["Scott Derrickson is an American director and screenwriter."]
    assert not states_evidence("yes, I think so, let me see", gold, "yes")
    assert states_evidence("Both are American. So the answer is yes.", gold, "yes")
    assert not states_evidence("So the answer is no.", gold, "yes")


def test_guided_answer_depends_on_the_rationale():
    r = OracleResponder([BRIDGE, YESNO], rationale_sensitive=True)
    good = ask(r, Answer, BRIDGE, rationale="Anna Keller studied physics at the University of Vienna.")
    bad = ask(r, Answer, BRIDGE, rationale="The Zorbatron is a machine.")
    assert good[0]["answer"] == "Vienna"
    assert bad[0]["answer"] not in ("Vienna", "") and bad[0]["answer"] in ("Paris", "Berlin")
    assert ask(r, Answer, YESNO, rationale="Nothing useful here.")[0]["answer"] == "no"
    # Without rationale_sensitive the old behaviour stays: the gold whatever the rationale.
    assert ask(OracleResponder([BRIDGE]), Answer, BRIDGE, rationale="nonsense")[0]["answer"] == "Vienna"


def _many(k: int) -> list[dict]:
    return [dict(BRIDGE, question=f"Which city hosts the university of inventor number {i}?") for i in range(k)]


def test_standard_and_cot_are_right_on_a_fixed_share_of_questions():
    exs = _many(200)
    r = OracleResponder(exs, rationale_sensitive=True, standard_accuracy=0.3, cot_accuracy=0.5)
    std = [ask(r, AnswerDirectly, ex)[0]["answer"] == "Vienna" for ex in exs]
    cot = [ask(r, dspy.ChainOfThought(AnswerDirectly).predict.signature, ex)[0]["answer"] == "Vienna" for ex in exs]
    assert 0.2 < sum(std) / 200 < 0.4 and 0.4 < sum(cot) / 200 < 0.6
    assert all(c for s, c in zip(std, cot) if s)  # the CoT-right questions include the standard-right ones
    again = [ask(r, AnswerDirectly, ex)[0]["answer"] == "Vienna" for ex in exs]
    assert again == std  # deterministic per question


def test_teacher_quotes_only_sentences_its_context_shows():
    r = OracleResponder([BRIDGE], rationale_sensitive=True, cot_accuracy=0.0)
    sig = dspy.ChainOfThought(AnswerDirectly).predict.signature
    full = ask(r, sig, BRIDGE, temperature=0.7, n=4)
    assert all(p["answer"] == "Vienna" and "So the answer is Vienna" in p["reasoning"] for p in full)
    cut = ask(r, sig, BRIDGE, temperature=0.7, n=4, drop="Anna Keller")  # that gold sentence is not in the prompt
    assert all("University of Vienna" not in p["reasoning"] for p in cut)
    assert all("Anna Keller in Graz" in p["reasoning"] for p in cut)
    none = ask(r, sig, dict(BRIDGE, paragraphs=BRIDGE["paragraphs"][2:]), temperature=0.7, n=2)
    assert all(p["answer"] != "Vienna" for p in none)  # no visible evidence: a wrong rationale


def test_teacher_is_wrong_on_about_wrong_rate_of_samples():
    r = OracleResponder([BRIDGE], rationale_sensitive=True, wrong_rate=0.25)
    sig = dspy.ChainOfThought(AnswerDirectly).predict.signature
    answers = [p["answer"] for _ in range(20) for p in ask(r, sig, BRIDGE, temperature=0.7, n=4)]
    assert 0.1 < sum(a != "Vienna" for a in answers) / len(answers) < 0.4


def test_startup_line_says_it_is_scripted():
    assert "SCRIPTED" in OracleResponder([BRIDGE], rationale_sensitive=True, standard_accuracy=0.4).describe()


def test_kept_rationale_is_checkable_only_against_the_context_the_student_sees():
    from lmcot.optimizers.bootstrap import _checkable

    cut = dspy.Example(paragraphs=[["Zorbatron", ["The Zorbatron was invented by Anna Keller in Graz."]]])
    rows = [{"id": "a", "rationale": "The Zorbatron was invented by Anna Keller in Graz. So the answer is Vienna."},
            {"id": "a", "rationale": "Anna Keller studied physics at the University of Vienna. So the answer is Vienna."}]
    assert _checkable(rows, {"a": cut}) == 1  # the second quotes a sentence truncation removed


# ---- the reader rule (issue 15): follow the stated conclusion, or the lenient evidence rule ----------------
EVIDENCE = "The Zorbatron was invented by Anna Keller in Graz. Anna Keller studied physics at the University of Vienna."


@pytest.mark.parametrize("rationale, follow, lenient", [
    # gold evidence, wrong conclusion: a reader that follows the rationale answers the conclusion
    (f"{EVIDENCE} So the answer is Graz.", "Graz", "Vienna"),
    # the wrong conclusion mid-text, then more evidence: still what the rationale concludes
    (f"Anna Keller invented the Zorbatron. So the answer is Graz. {EVIDENCE}", "Graz", "Vienna"),
    # a quoted statement is read all the same
    (f'{EVIDENCE} "So the answer is Graz."', "Graz", "Vienna"),
    # the right conclusion with no evidence at all: right under both rules
    ("So the answer is Vienna.", "Vienna", "Vienna"),
    # a wrong conclusion alone
    ("So the answer is Graz.", "Graz", "Paris|Berlin"),
    # no conclusion: the evidence rule under both
    (EVIDENCE, "Vienna", "Vienna"),
    ("The Zorbatron is a machine.", "Paris|Berlin", "Paris|Berlin"),
    # an answer that is a long span: the reader answers the span, and EM against the gold is 0
    (f"{EVIDENCE} So the answer is the University of Vienna in Austria.", "the University of Vienna in Austria",
     "Vienna"),
])
def test_reader_rule_follows_the_stated_conclusion(rationale, follow, lenient):
    for rule, want in (("follow", follow), ("lenient", lenient)):
        r = OracleResponder([BRIDGE, YESNO], rationale_sensitive=True, reader_rule=rule)
        got = ask(r, Answer, BRIDGE, rationale=rationale)[0]["answer"]
        assert got in want.split("|"), (rule, rationale, got)


def test_follow_is_the_default_and_is_right_only_on_the_gold_conclusion():
    from lmcot.metrics.answer import answer_em

    r = OracleResponder([BRIDGE, YESNO], rationale_sensitive=True)
    assert r.reader_rule == "follow"
    right = ask(r, Answer, BRIDGE, rationale=f"{EVIDENCE} So the answer is **vienna**.")[0]["answer"]
    assert answer_em(right, "Vienna") == 1.0  # official EM after normalisation
    wrong = ask(r, Answer, BRIDGE, rationale=f"{EVIDENCE} So the answer is Graz, Austria.")[0]["answer"]
    assert answer_em(wrong, "Vienna") == 0.0


def test_yes_no_conclusions_are_answered_as_the_word():
    r = OracleResponder([BRIDGE, YESNO], rationale_sensitive=True)
    assert ask(r, Answer, YESNO, rationale="Both are American. So the answer is yes, both are.")[0]["answer"] == "yes"
    assert ask(r, Answer, YESNO, rationale="Ed Wood was American. So the answer is no.")[0]["answer"] == "no"
    # "no one" is not "no"
    assert ask(r, Answer, YESNO, rationale="So the answer is no one.")[0]["answer"] == "no one"


def test_startup_line_names_the_reader_rule():
    follow = OracleResponder([BRIDGE], rationale_sensitive=True).describe()
    lenient = OracleResponder([BRIDGE], rationale_sensitive=True, reader_rule="lenient").describe()
    assert "[reader rule: follow]" in follow and "[reader rule: lenient]" in lenient
    with pytest.raises(ValueError, match="reader_rule"):
        OracleResponder([BRIDGE], rationale_sensitive=True, reader_rule="strict")


def test_server_command_line_takes_the_reader_rule(tmp_path):
    import json
    import subprocess
    import sys

    from support.paths import ROOT

    data = tmp_path / "data.json"
    data.write_text(json.dumps([{**BRIDGE, "context": BRIDGE["paragraphs"]}]))
    for rule in ("follow", "lenient"):
        proc = subprocess.Popen([sys.executable, "-m", "support.oracle_server", "--data", str(data), "--port", "0",
                                 "--rationale-sensitive", "--reader-rule", rule], cwd=ROOT / "tests",
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = proc.stderr.readline()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        assert f"[reader rule: {rule}]" in first
    bad = subprocess.run([sys.executable, "-m", "support.oracle_server", "--data", str(data), "--reader-rule", "x"],
                         cwd=ROOT / "tests", capture_output=True, text=True)
    assert bad.returncode == 2 and "--reader-rule" in bad.stderr


def test_calibration_harness_scores_a_reader_against_both_rules(tmp_path):
    """scripts/calibrate_reader.py with the stand-in itself as the reader: the follow rule agrees with a
    following reader on every (question, rationale), the lenient rule misses the evidence+wrong ones."""
    import importlib.util
    import json

    from support.oracle_responder import OracleResponder, load_examples
    from support.oracle_server import OracleServer
    from support.paths import HOTPOT, ROOT

    spec = importlib.util.spec_from_file_location("calibrate_reader", ROOT / "scripts" / "calibrate_reader.py")
    calibrate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(calibrate)
    with OracleServer(OracleResponder(load_examples(HOTPOT), rationale_sensitive=True)) as srv:
        sets = [f"large_lm.model=openai/oracle-follow", f"large_lm.api_base={srv.url}", "large_lm.num_retries=0",
                f"data.dev={HOTPOT}", "data.max_context_tokens=null", "small_lm.backend=litellm",
                f"cache_dir={tmp_path / 'cache'}"]
        assert calibrate.main(["--n", "4", "--out", str(tmp_path / "cal"), *[a for s in sets for a in ("--set", s)]]) == 0
    summary = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert summary["questions"] == 4 and summary["evidence+wrong"]["n"] == 4
    assert summary["evidence+wrong"]["answers_stated"] == 1.0 and summary["evidence+wrong"]["em"] == 0.0
    assert summary["evidence"]["em"] == 1.0 and summary["wrong"]["answers_stated"] == 1.0
    assert summary["agreement_follow"] == 1.0 and summary["agreement_lenient"] == pytest.approx(2 / 3)
    assert summary["agreement_follow_mentions"] == 1.0 and summary["evidence+wrong"]["mentions_stated"] == 1.0
    answers = (tmp_path / "cal" / "answers.jsonl").read_text().splitlines()
    assert len(answers) == 12 and all(json.loads(a)["error"] is None for a in answers)
