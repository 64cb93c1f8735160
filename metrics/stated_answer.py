"""What a text states as its answer: the one reader of "So the answer is X" (and "Answer: X").

    stated_answer("Paris is in France. So the answer is Paris.")        -> "Paris"
    leading_answer("The answer is:\nParis")                              -> "Paris"   (an answer-only reply)
    answer_statements(text)                                              -> [Statement(start, end, span)]
    without_stated_answer("A is B. So the answer is B. B is old.")       -> "A is B. B is old."

Every place that needs a text's stated conclusion reads it here: an in-process reader's CoT reply
(``programs/answer_adapter.py``), the evidence rule's yes/no check (``metrics/rationale/evidence.py``),
the cheap scorers' claim steps (``metrics/rationale/cheap.py``), the scripted stand-in reader
(``tests/support/oracle_responder.py``), the evidence-form KD data and the answer-leak analysis.

A statement is an announcement of the answer, optionally led by "so / thus / therefore / hence / in
conclusion", with "answer is / answer would be / answer:" ("the final answer is", "the answer to this
question is" too; markdown emphasis around "Answer" too), running to the end of its sentence or line
(a line may hold several). The *stated* answer is the last one:
a rationale that revises itself ends with what it settled on. A statement inside quotes counts (the
reader sees it all the same); its quotes are part of the statement and are removed with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The announcement up to the answer span. Lead-ins and the "to this question" tail are optional.
_LEAD = r"(?:(?:so|thus|therefore|hence|in conclusion|overall|finally)\s*,?\s+)?"
_HEAD = r"(?:the\s+)?(?:final\s+|correct\s+)?answer(?:\s+to\s+(?:the|this)\s+question)?"
_VERB = r"(?:is|would be|will be|should be|must be)"
# Markdown emphasis around the label ("**Answer**: X", "**Answer:** X") is part of the announcement.
_EMPH = r"[*_]{0,2}"
# After the label only asterisks: "The answer is __init__" keeps its underscores.
_ANNOUNCE = rf"{_EMPH}{_HEAD}{_EMPH}(?:\s+{_VERB}\s*:?|\s*:)\*{{0,2}}"
_STATEMENT = re.compile(rf"(?P<quote>[\"“'‘]?)(?P<lead>{_LEAD}){_ANNOUNCE}[ \t]*(?P<span>[^\n]*)", re.IGNORECASE)
# A reply's first line read as a label: "Answer: X", "Answer - X", "The answer is X", or the announcement
# alone ("The answer is:", "Answer"), its answer then on the next line.
# A dash is a label's only as a separate mark ("Answer - X"), never a sign ("The answer is -5").
_LABEL = re.compile(rf"\s*{_LEAD}{_EMPH}{_HEAD}{_EMPH}(?:\s+{_VERB}\s*:?|\s*(?::|-(?=\s|$))|\s*$)\**\s*"
                    rf"(?P<span>.*)", re.IGNORECASE)
# A sentence start: the line's start, or after . ! ? (and a closing quote or bracket).
_AFTER_SENTENCE_END = re.compile(r"(?:^|[.!?][\"”’')\]]*)\s*$")
# Where a sentence ends inside a line: . ! ? followed by white space (not "18.00", not "U.S.A").
_SENTENCE_END = re.compile(r"[.!?](?=\s)")
# A dot after these ends no sentence ("St. Louis", "J. R. R. Tolkien", "Mt. Fuji").
_ABBREVIATIONS = frozenset("st mt mr mrs ms dr jr sr vs no inc ltd co corp dept fig".split())


@dataclass(frozen=True)
class Statement:
    """One answer statement: ``text[start:end]`` is the whole statement (lead-in and closing quote
    and full stop included); ``span`` is the answer it gives, cleaned."""

    start: int
    end: int
    span: str


def _sentence_end(line: str, at: int) -> int:
    """Index in ``line`` just past the sentence that runs from ``at`` (its final punctuation included)."""
    for m in _SENTENCE_END.finditer(line, at):
        word = re.search(r"(\w+)$", line[at:m.start()])
        if word and (word.group(1).lower() in _ABBREVIATIONS or (len(word.group(1)) == 1 and word.group(1).isupper())):
            continue
        return m.end()
    return len(line)


def clean_span(span: str) -> str:
    """The answer inside a statement's tail: without surrounding quotes, asterisks, brackets or the
    final full stop ("**Paris**." -> "Paris")."""
    span = span.strip().strip("*").strip()
    span = span.rstrip(".!?;,").strip()
    for open_, close in ('""', "''", "“”", "‘’", "()", "[]"):
        if len(span) >= 2 and span[0] == open_ and span[-1] == close:
            span = span[1:-1].strip()
    return span.strip("*\"'“”‘’ ").rstrip(".").strip()


def answer_statements(text: str) -> list[Statement]:
    """Every answer statement in ``text``, in order (see the module docstring)."""
    text = text or ""
    found: list[Statement] = []
    at = 0
    # Searched from the end of the last statement, not of its line: "At first the answer is 5. So the
    # answer is 7." states two answers on one line, and the last is the one settled on. A later one on
    # the same line must announce (start a sentence, or be led by "so / thus ..."): "I hope this answer
    # is helpful" after a statement is a remark, not a revision.
    while (m := _STATEMENT.search(text, at)) is not None:
        line_start = text.rfind("\n", 0, m.start()) + 1
        line_end = text.find("\n", m.start())
        line_end = len(text) if line_end < 0 else line_end
        if (found and found[-1].start >= line_start and not m.group("lead")
                and not _AFTER_SENTENCE_END.search(text[line_start:m.start()])):
            at = m.start("span")
            continue
        span_start = m.start("span")
        end = span_start + _sentence_end(text[span_start:line_end], 0)
        raw = text[span_start:end]
        if m.group("quote"):  # a quoted statement: its closing quote is part of it
            close = {'"': '"', "“": "”", "'": "'", "‘": "’"}[m.group("quote")]
            closing = text.find(close, span_start, line_end)
            if closing >= 0:
                raw = text[span_start:closing]
                end = closing + 1
                # the full stop after a closing quote belongs to the sentence that quoted it
                if end < line_end and text[end] in ".!?":
                    end += 1
        span = clean_span(raw)
        if span:
            found.append(Statement(m.start(), end, span))
        at = max(end, span_start)
    return found


def stated_answer(text: str) -> str | None:
    """The answer ``text`` states last, or None when it states none."""
    statements = answer_statements(text)
    return statements[-1].span if statements else None


def leading_answer(text: str) -> str:
    """The answer of a reply asked for the answer only: its first non-empty line, without an answer
    label ("Answer: X", "The answer is X."); a line that only announces ("The answer is:") gives the
    next line's. ``""`` when there is none."""
    lines = [line for line in (text or "").splitlines() if line.strip()][:2]
    for line in lines:
        label = _LABEL.match(line)
        if label is None or label.group("span").strip():  # a label with nothing after it: the next line
            return clean_span(label.group("span") if label else line)
    return ""


def without_stated_answer(text: str) -> str:
    """``text`` with every answer statement removed (wherever it sits, quoted or not), white space
    tidied: what is left is the reasoning and evidence alone."""
    text = text or ""
    pieces, at = [], 0
    for s in answer_statements(text):
        pieces.append(text[at:s.start])
        at = s.end
    pieces.append(text[at:])
    out = "".join(pieces)
    out = re.sub(r"[ \t]+\n", "\n", out)
    out = re.sub(r"[ \t]{2,}", " ", out)
    out = re.sub(r"\n{3,}", "\n\n", out)
    return out.strip()


def conclusion_span(sentence: str) -> str | None:
    """The ``X`` of a sentence that is an answer announcement as a whole ("So the answer is X."),
    or None for any other sentence (a claim that only mentions an answer is a claim)."""
    statements = answer_statements(sentence)
    if not statements or sentence[:statements[0].start].strip(" \t\"'“‘"):
        return None
    return statements[0].span


__all__ = ["Statement", "answer_statements", "stated_answer", "without_stated_answer", "conclusion_span",
           "clean_span", "leading_answer"]
