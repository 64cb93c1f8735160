"""`OracleResponder`: a scripted stand-in for the large LM that knows the gold data.

Given HotpotQA / 2Wiki examples, it recognises which question a chat request is about and replies
in the format the request asks for:

* DSPy ChatAdapter prompts (`[[ ## field ## ]]` markers; output fields read from the system
  message's "Your output fields are:" list) -> only the requested fields, then `[[ ## completed ## ]]`.
* JSON prompts (`response_format` json, or "JSON object" in the prompt) -> a JSON object of the fields.
* Judge prompts ("Answer with Yes or No." / "Answer yes or no" in the last user or system turn) ->
  "Yes" if the rationale in the prompt states a gold supporting sentence (or the gold answer),
  else "No", with first-token probabilities P(Yes)=0.9/0.1 for logprob-based judges.
* Anything else -> the gold answer, or the rationale if the prompt asks for reasoning.

Rationale = gold supporting sentences joined + " So the answer is <gold>.". With `wrong_rate` > 0
some samples (deterministic per question, choice index and request) answer a distractor title
with a rationale taken from a distractor paragraph, so tests can have imperfect teachers.

With ``rationale_sensitive=True`` it plays a *reader* whose answers depend on what it is given (the
offline quickstart uses this; it is still a script, not a language model):

* guided (an Answer request carrying a ``rationale`` field), by ``reader_rule``:

  - ``"follow"`` (the default): a reader that follows the rationale. When the rationale states a
    conclusion ("So the answer is X", read by ``lmcot.metrics.stated_answer``) it answers that X, so
    it is right only when X is the gold (official EM after normalisation); a real reader shown "...
    So the answer is 2007 Lifetime television movie" answers that. With no stated conclusion it
    answers by the evidence rule below.
  - ``"lenient"`` (the rule before issue 15, kept for comparison): the evidence rule on the whole
    rationale, whatever it concludes, so a rationale that quotes a gold sentence and then concludes
    a wrong answer still counts as right.

  The evidence rule: the gold answer only when the rationale states the evidence (a gold supporting
  sentence or the answer, by the token-overlap rule of ``lmcot.metrics.rationale.evidence``), else a
  plausible wrong span (a distractor paragraph's title; the opposite of a yes/no answer). On a task
  without gold evidence (no supporting facts: GSM8K, a label task) it answers the rationale's stated
  conclusion under either rule (``_reader_without_evidence``);
* standard (answer only) and greedy CoT (reasoning + answer at temperature 0): right on a fixed share
  of questions (``standard_accuracy``, ``cot_accuracy``; one hash of the question decides, so the
  CoT-right questions include the standard-right ones), a wrong span elsewhere;
* teacher (reasoning + answer, sampled: temperature > 0 or n > 1, as `lmcot compile` bootstraps):
  the gold supporting sentences *visible in the prompt's context* (so a truncated context yields
  rationales the student can check against its own prompt) + "So the answer is <gold>", or a
  distractor rationale with a wrong answer with probability ``wrong_rate``, and always when no gold
  sentence is visible.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmcot.jsonl import parse_jsonl

FALLBACK = "I don't know"
# How the rationale-sensitive reader answers from a rationale (module docstring): follow a stated
# conclusion (default), or the lenient evidence rule whatever the rationale concludes.
READER_RULES = ("follow", "lenient")
# A stated conclusion that opens with yes/no ("yes, both are American"): a reader answers the word.
_YES_NO_LEAD = re.compile(r"^\s*(yes|no)\b(?=\s*(?:[,.;:!-]|$))", re.IGNORECASE)
_JUDGE_RE = re.compile(r"answer\s+(?:with\s+)?yes\s+or\s+no", re.IGNORECASE)
_REASON_FIELDS = {"reasoning", "rationale", "explanation", "thought", "thoughts"}
_FIELD_MARK = re.compile(r"\[\[ ## (\w+) ## \]\]")
_QUESTION_BLOCK = re.compile(r"\[\[ ## question ## \]\]\n(.*?)(?=\n\n\[\[ ## |\Z)", re.DOTALL)
# A `rationale` / `reasoning` input field of a DSPy ChatAdapter prompt.
_RATIONALE_FIELD = re.compile(r"\[\[ ## (?:rationale|reasoning) ## \]\]\n(.*?)(?=\n\n\[\[ ## |\Z)", re.DOTALL)
# A "Rationale: ..." label, as `metrics.rationale.judge.judge_messages` writes it.
_RATIONALE_LABEL = re.compile(r"^[ \t]*(?:rationale|reasoning|explanation)[ \t]*:", re.IGNORECASE | re.MULTILINE)
_VARIANT_PREFIXES = ("", "According to the context, ", "From the paragraphs: ", "We know that ")


def _ws(s: str) -> str:
    return " ".join(s.split())


def message_text(message: Mapping[str, Any]) -> str:
    """Text of an OpenAI chat message whose content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    return "" if content is None else str(content)


def _field(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    try:
        return getattr(obj, key)
    except (AttributeError, KeyError):
        return None


def _maybe_json(value: Any) -> Any:
    # Some releases (e.g. 2Wiki on the HF hub) store nested fields as JSON-encoded strings.
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _pairs(value: Any, a: str, b: str) -> list[tuple[Any, Any]]:
    """List of pairs from `[[x, y], ...]` or the columnar HF form `{a: [...], b: [...]}`."""
    value = _maybe_json(value)
    if isinstance(value, Mapping):
        return list(zip(value.get(a) or [], value.get(b) or []))
    return [(p[0], p[1]) for p in value or [] if isinstance(p, (list, tuple)) and len(p) >= 2]


@dataclass(frozen=True)
class OracleExample:
    question: str
    answer: str
    paragraphs: tuple[tuple[str, tuple[str, ...]], ...]
    supporting_facts: tuple[tuple[str, int], ...]
    rationale: str = ""  # the task's own rationale (GSM8K's solution), when it has one

    @classmethod
    def from_any(cls, obj: Any) -> OracleExample:
        """From a dict, a `dspy.Example` or any object with the fields; `paragraphs` falls back
        to a list-valued `context` (the official JSON key)."""
        paras = _field(obj, "paragraphs")
        if paras is None:
            paras = _maybe_json(_field(obj, "context"))
            paras = None if isinstance(paras, str) else paras
        return cls(
            question=str(_field(obj, "question") or ""),
            answer=str(_field(obj, "answer") or ""),
            paragraphs=tuple((str(t), tuple(str(s) for s in ss)) for t, ss in _pairs(paras, "title", "sentences")),
            supporting_facts=tuple(
                (str(t), int(i)) for t, i in _pairs(_field(obj, "supporting_facts"), "title", "sent_id")
            ),
            rationale=str(_field(obj, "rationale") or ""),
        )

    @property
    def gold_sentences(self) -> list[str]:
        """The supporting sentences, in supporting-fact order (missing ones skipped)."""
        by_title = dict(self.paragraphs)
        out = []
        for title, idx in self.supporting_facts:
            sents = by_title.get(title, ())
            if 0 <= idx < len(sents) and sents[idx].strip():
                out.append(sents[idx].strip())
        return out


def load_examples(path: str | Path) -> list[OracleExample]:
    """Minimal HotpotQA / 2Wiki reader (JSON list, `{"data": [...]}` or JSONL); skips records
    without a question. The real loader is `lmcot.data`; this one keeps the server standalone."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:  # JSONL
        data = [value for _, value, error in parse_jsonl(text) if not error]
    if isinstance(data, Mapping):
        data = data.get("data", [data])
    examples = [OracleExample.from_any(r) for r in data]
    return [e for e in examples if e.question]


class OracleResponder:
    """Responder for `OracleServer` answering from gold data (see the module docstring).

    `wrong_rate`: probability that a sample answers a distractor instead of the gold. The draw is
    a hash of (seed, question, choice index, request `seed`, and, when temperature > 0, how many
    times this question was asked before), so runs are reproducible yet samples vary.
    """

    def __init__(self, examples: Iterable[Any], wrong_rate: float = 0.0, seed: int = 0, *,
                 rationale_sensitive: bool = False, standard_accuracy: float = 1.0, cot_accuracy: float = 1.0,
                 reader_rule: str = "follow") -> None:
        if reader_rule not in READER_RULES:
            raise ValueError(f"reader_rule must be one of {READER_RULES}, not {reader_rule!r}")
        self.examples = [e if isinstance(e, OracleExample) else OracleExample.from_any(e) for e in examples]
        self.wrong_rate, self.seed = float(wrong_rate), seed
        self.rationale_sensitive = rationale_sensitive
        self.reader_rule = reader_rule
        self.standard_accuracy, self.cot_accuracy = float(standard_accuracy), float(cot_accuracy)
        self._by_question = {_ws(e.question): e for e in self.examples if e.question}
        self._lower = {q.lower(): e for q, e in self._by_question.items()}
        self._draws: dict[str, int] = {}
        self._lock = threading.Lock()

    # ---- which example ---------------------------------------------------------------------------
    def find(self, text: str) -> OracleExample | None:
        """The example whose question appears in `text` (the longest one if several do)."""
        candidates = [m.group(1) for m in _QUESTION_BLOCK.finditer(text)]
        for line in text.splitlines():  # "Question: ..." and bare question lines
            candidates += [line, line.split(":", 1)[-1]]
        for c in candidates:  # cheap exact look-ups first; a substring scan only as a last resort
            hit = self._by_question.get(_ws(c)) or self._lower.get(_ws(c).lower())
            if hit is not None:
                return hit
        flat = _ws(text).lower()
        hits = [e for q, e in self._lower.items() if q in flat]
        return max(hits, key=lambda e: len(e.question), default=None)

    def _find_in(self, messages: list[Mapping[str, Any]]) -> OracleExample | None:
        users = [message_text(m) for m in messages if m.get("role") == "user"]
        # The last user turn is the real query; earlier turns may be few-shot demos.
        if users and (hit := self.find(users[-1])) is not None:
            return hit
        return self.find("\n".join(message_text(m) for m in messages))

    # ---- sampling ---------------------------------------------------------------------------------
    def _rng(self, ex: OracleExample, index: int, body: Mapping[str, Any]) -> random.Random:
        temperature = float(body.get("temperature") or 0.0)
        draw = 0
        if temperature > 0:
            with self._lock:
                draw = self._draws.get(ex.question, 0)
                self._draws[ex.question] = draw + 1
        key = f"{self.seed}|{ex.question}|{index}|{body.get('seed')}|{draw}"
        return random.Random(int(hashlib.sha256(key.encode()).hexdigest()[:16], 16))

    def sample(self, ex: OracleExample, rng: random.Random, vary: bool) -> tuple[str, str]:
        """(rationale, answer) for one sample: gold, or a distractor with prob `wrong_rate`."""
        gold_titles = {t for t, _ in ex.supporting_facts}
        distractors = [(t, s) for t, s in ex.paragraphs if t not in gold_titles and s]
        if self.wrong_rate > 0 and rng.random() < self.wrong_rate and distractors:
            title, distractor = rng.choice(distractors)
            return f"{' '.join(x.strip() for x in distractor[:2])} So the answer is {title}.", title
        sents = ex.gold_sentences
        prefix = ""
        if vary:  # varied wording / order, same facts: what sampling a good teacher looks like
            prefix = rng.choice(_VARIANT_PREFIXES)
            if len(sents) > 1 and rng.random() < 0.5:
                sents = sents[::-1]
        body = f"{prefix}{' '.join(sents)} " if sents else ""
        return f"{body}So the answer is {ex.answer}.", ex.answer

    # ---- the rationale-sensitive reader (module docstring) ----------------------------------------
    def _unit(self, ex: OracleExample) -> float:
        """A fixed number in [0, 1) per question: which questions standard / CoT get right."""
        return int(hashlib.sha256(f"{self.seed}|share|{_ws(ex.question)}".encode()).hexdigest()[:16], 16) / 2.0**64

    def wrong_span(self, ex: OracleExample) -> str:
        """A plausible wrong answer, fixed per question."""
        gold = _ws(ex.answer).lower()
        if gold in ("yes", "no"):
            return "no" if gold == "yes" else "yes"
        titles = sorted({t for t, _ in ex.paragraphs if _ws(t).lower() != gold and t not in {f for f, _ in ex.supporting_facts}})
        if not titles:
            return FALLBACK
        return titles[int(self._unit(ex) * 1e6) % len(titles)]

    def _distractor_rationale(self, ex: OracleExample, rng: random.Random) -> str:
        gold_titles = {t for t, _ in ex.supporting_facts}
        paras = [s for t, s in ex.paragraphs if t not in gold_titles and s]
        body = " ".join(x.strip() for x in rng.choice(paras)[:2]) + " " if paras else ""
        return f"{body}So the answer is {self.wrong_span(ex)}."

    def guided_answer(self, ex: OracleExample, rationale: str) -> str:
        """What the reader answers given ``rationale`` (the module docstring's ``reader_rule``)."""
        from lmcot.metrics.rationale.evidence import states_evidence
        from lmcot.metrics.stated_answer import stated_answer

        if self.reader_rule == "follow":
            stated = stated_answer(rationale)
            if stated is not None:
                lead = _YES_NO_LEAD.match(stated)
                return lead.group(1).lower() if lead else stated
        return ex.answer if states_evidence(rationale, ex.gold_sentences, ex.answer) else self.wrong_span(ex)

    def _reader(self, ex: OracleExample, messages: list[Mapping[str, Any]], body: Mapping[str, Any],
                fields: list[str] | None, last_user: str, n: int) -> list[tuple[str, str]] | None:
        """(reasoning, answer) per choice for the request kinds the reader scripts; None otherwise."""
        names = [f.lower() for f in fields or []]
        if "answer" not in names:
            return None
        rationale_in = [m.group(1) for m in _RATIONALE_FIELD.finditer(last_user)]
        if not ex.supporting_facts:  # a task without gold evidence (GSM8K): its own code path
            return self._reader_without_evidence(ex, messages, body, names, rationale_in, n)
        if rationale_in and not (set(names) & _REASON_FIELDS):  # guided: answer from the given rationale
            return [("", self.guided_answer(ex, rationale_in[-1]))] * n
        sampled = n > 1 or float(body.get("temperature") or 0.0) > 0
        if set(names) & _REASON_FIELDS and sampled:  # the teacher
            prompt = _ws("\n".join(message_text(m) for m in messages))
            visible = [s for s in ex.gold_sentences if _ws(s) in prompt]
            out = []
            for i in range(n):
                rng = self._rng(ex, i, body)
                if not visible or (self.wrong_rate > 0 and rng.random() < self.wrong_rate):
                    out.append((self._distractor_rationale(ex, rng), self.wrong_span(ex)))
                    continue
                sents = visible[::-1] if len(visible) > 1 and rng.random() < 0.5 else visible
                prefix = rng.choice(_VARIANT_PREFIXES)
                out.append((f"{prefix}{' '.join(sents)} So the answer is {ex.answer}.", ex.answer))
            return out
        share = self.cot_accuracy if set(names) & _REASON_FIELDS else self.standard_accuracy
        rng = self._rng(ex, 0, body)
        if self._unit(ex) < share:
            return [(" ".join(ex.gold_sentences) + f" So the answer is {ex.answer}.", ex.answer)] * n
        return [(self._distractor_rationale(ex, rng), self.wrong_span(ex))] * n

    def _reader_without_evidence(self, ex: OracleExample, messages: list[Mapping[str, Any]],
                                 body: Mapping[str, Any], names: list[str], rationale_in: list[str],
                                 n: int) -> list[tuple[str, str]]:
        """The reader for a task with no gold evidence sentences (no passage: GSM8K, a label task).

        * guided: it follows the rationale's stated conclusion ("So the answer is X",
          ``lmcot.metrics.stated_answer``) and answers X, so the answer is right exactly when the stated
          answer equals the gold under the task's answer type ("$18.00" counts for 18); a rationale that
          states no answer gets "I don't know" (there is no evidence to read the answer from);
        * standard / greedy CoT: right on the fixed shares of questions, as for HotpotQA;
        * teacher (sampled CoT): the task's own rationale (when it has one) + "So the answer is <gold>",
          or, with probability ``wrong_rate``, a rationale concluding "I don't know".
        """
        from lmcot.metrics.stated_answer import stated_answer

        if rationale_in and not (set(names) & _REASON_FIELDS):
            stated = stated_answer(rationale_in[-1])
            return [("", stated if stated else FALLBACK)] * n
        if set(names) & _REASON_FIELDS and (n > 1 or float(body.get("temperature") or 0.0) > 0):
            out = []
            for i in range(n):
                rng = self._rng(ex, i, body)
                if self.wrong_rate > 0 and rng.random() < self.wrong_rate:
                    out.append((f"{ex.rationale} So the answer is {FALLBACK}.".strip(), FALLBACK))
                else:
                    out.append((f"{ex.rationale} So the answer is {ex.answer}.".strip(), ex.answer))
            return out
        share = self.cot_accuracy if set(names) & _REASON_FIELDS else self.standard_accuracy
        if self._unit(ex) < share:
            return [(f"{ex.rationale} So the answer is {ex.answer}.".strip(), ex.answer)] * n
        return [(f"So the answer is {FALLBACK}.", FALLBACK)] * n

    def describe(self) -> str:
        """One line saying what this stand-in is (printed at server start-up)."""
        if not self.rationale_sensitive:
            return ("SCRIPTED stand-in large LM (not a language model): answers from the gold data "
                    f"(wrong on {self.wrong_rate:.0%} of sampled teacher rationales)")
        if self.reader_rule == "follow":
            reader = ("as a reader it follows the rationale: it answers the conclusion the rationale states "
                      "('So the answer is X'), right only when X is the gold; with no stated conclusion, right only "
                      "when the rationale states a gold supporting sentence or the answer [reader rule: follow]")
        else:
            reader = ("as a reader it answers right whenever the rationale states a gold supporting sentence or the "
                      "answer, even when it concludes a wrong answer [reader rule: lenient]")
        reader += ("; on a task without gold evidence (GSM8K, a label task) it answers the rationale's stated "
                   "conclusion, so right only when that equals the gold")
        return ("SCRIPTED stand-in large LM (not a language model): " + reader + "; standard prompting right on "
                f"{self.standard_accuracy:.0%} of questions, CoT on {self.cot_accuracy:.0%}; as a teacher it "
                f"quotes the visible gold sentences, wrong on {self.wrong_rate:.0%} of samples")

    # ---- formats ----------------------------------------------------------------------------------
    @staticmethod
    def output_fields(messages: list[Mapping[str, Any]], body: Mapping[str, Any]) -> list[str] | None:
        """Output field names a DSPy adapter asked for, in order; None for a free-form prompt."""
        rf = body.get("response_format")
        if isinstance(rf, Mapping):
            props = ((rf.get("json_schema") or {}).get("schema") or {}).get("properties")
            if isinstance(props, Mapping) and props:
                return list(props)
        system = "\n".join(message_text(m) for m in messages if m.get("role") == "system")
        if "Your output fields are:" in system:
            block = system.split("Your output fields are:", 1)[1].split("All interactions will be structured", 1)[0]
            names = re.findall(r"^\s*\d+\.\s+`(\w+)`", block, re.MULTILINE)
            if names:
                return names
        last = message_text(messages[-1]) if messages else ""
        if "Respond with the corresponding output fields" in last:
            names = [f for f in _FIELD_MARK.findall(last.rsplit("Respond with", 1)[1]) if f != "completed"]
            return names or None
        if "Respond with a JSON object in the following order of fields:" in last:
            return re.findall(r"`(\w+)`", last.rsplit("following order of fields:", 1)[1]) or None
        return None

    @staticmethod
    def _is_json(messages: list[Mapping[str, Any]], body: Mapping[str, Any]) -> bool:
        rf = body.get("response_format")
        if isinstance(rf, Mapping) and rf.get("type") in ("json_object", "json_schema"):
            return True
        return any("JSON object" in message_text(m) for m in messages[-2:])

    @staticmethod
    def render(fields: list[str] | None, values: Mapping[str, str], json_mode: bool, default: str) -> str:
        """Render `values` (by field role: 'reason' / 'answer') in the requested format."""
        if not fields:
            return default
        picked = {f: values["reason"] if f.lower() in _REASON_FIELDS else values["answer"] for f in fields}
        if json_mode:
            return json.dumps(picked)
        return "\n\n".join(f"[[ ## {f} ## ]]\n{v}" for f, v in picked.items()) + "\n\n[[ ## completed ## ]]"

    @staticmethod
    def _wants_reasoning(messages: list[Mapping[str, Any]], last_user: str) -> bool:
        """For free-form prompts: does it ask for a rationale (else: a bare answer)?

        An output cue on the last line decides ("Rationale:" as `RationaleAdapter` writes it, or
        "Answer:"); otherwise asking for step-by-step reasoning anywhere does.
        """
        lines = [ln.strip().lower() for ln in last_user.splitlines() if ln.strip()]
        cue = lines[-1] if lines else ""
        if cue in ("rationale:", "reasoning:", "explanation:"):
            return True
        if cue.endswith("answer:"):
            return False
        prompt = "\n".join(message_text(m) for m in messages)
        return re.search(r"step[- ]by[- ]step", prompt, re.IGNORECASE) is not None

    # ---- judge ------------------------------------------------------------------------------------
    @staticmethod
    def rationale_in_prompt(text: str, ex: OracleExample) -> str:
        """The rationale a judge prompt shows: a `rationale`/`reasoning` field or a "Rationale:"
        line if present; otherwise the prompt minus the question, the context lines
        ("Title: sentences") and the yes/no instruction, so context alone never counts."""
        fields = [m.group(1) for m in _RATIONALE_FIELD.finditer(text) if m.group(1).strip()]
        if fields:
            return fields[-1]
        labels = list(_RATIONALE_LABEL.finditer(text))
        if labels:
            # From the last label up to the paragraph holding the yes/no instruction, so a
            # rationale with blank lines in it is kept whole.
            rest = text[labels[-1].end() :]
            if (j := _JUDGE_RE.search(rest)) is not None:
                cut = rest.rfind("\n\n", 0, j.start())
                rest = rest[: cut if cut >= 0 else j.start()]
            if rest.strip():
                return rest
        titles = tuple(f"{t}:" for t, _ in ex.paragraphs)
        kept = [ln for ln in text.splitlines() if not ln.strip().startswith(titles)] if titles else text.splitlines()
        rest = "\n".join(kept).replace(ex.question, " ")
        return _JUDGE_RE.sub(" ", rest)

    @classmethod
    def judge(cls, text: str, ex: OracleExample) -> bool:
        """True when the rationale in `text` states a gold supporting sentence or the gold answer."""
        rationale = _ws(cls.rationale_in_prompt(text, ex)).lower()
        if any(len(s) >= 8 and _ws(s).lower() in rationale for s in ex.gold_sentences):
            return True
        ans = _ws(ex.answer).lower()
        # "yes"/"no" answers would match any sentence with that word: sentences only for those.
        return ans not in ("", "yes", "no") and re.search(rf"(?<!\w){re.escape(ans)}(?!\w)", rationale) is not None

    # ---- entry point ------------------------------------------------------------------------------
    def __call__(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        messages = list(body.get("messages") or [])
        n = max(1, int(body.get("n") or 1))
        fields = self.output_fields(messages, body)
        json_mode = self._is_json(messages, body)
        last_user = next((message_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
        ex = self._find_in(messages)
        if ex is None:
            text = self.render(fields, {"reason": FALLBACK, "answer": FALLBACK}, json_mode, FALLBACK)
            return [{"text": text}] * n
        system = "\n".join(message_text(m) for m in messages if m.get("role") == "system")
        # The yes/no instruction sits in the user turn of a plain judge prompt, and in the system
        # turn when it is a DSPy signature's instructions.
        if _JUDGE_RE.search(last_user) or _JUDGE_RE.search(system):
            ok = self.judge(last_user, ex)
            verdict = "Yes" if ok else "No"
            why = "The rationale states a supporting fact." if ok else "The rationale states no supporting fact."
            text = self.render(fields, {"reason": why, "answer": verdict}, json_mode, verdict)
            return [{"text": text, "logprobs": {"Yes": 0.9 if ok else 0.1, "No": 0.1 if ok else 0.9}}] * n
        if self.rationale_sensitive:
            scripted = self._reader(ex, messages, body, fields, last_user, n)
            if scripted is not None:
                return [{"text": self.render(fields, {"reason": r or "The rationale decides.", "answer": a},
                                             json_mode, a)} for r, a in scripted]
        wants_reasoning = self._wants_reasoning(messages, last_user)
        vary = n > 1 or float(body.get("temperature") or 0.0) > 0
        out = []
        for i in range(n):
            rationale, answer = self.sample(ex, self._rng(ex, i, body), vary)
            default = rationale if wants_reasoning else answer
            out.append({"text": self.render(fields, {"reason": rationale, "answer": answer}, json_mode, default)})
        return out


__all__ = ["FALLBACK", "READER_RULES", "OracleExample", "OracleResponder", "load_examples", "message_text"]
