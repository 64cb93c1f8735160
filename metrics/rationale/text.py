"""Text pieces shared by the cheap rationale scorers: sentences, words, content stems, syllables.

Everything here is plain Python (no model, no download) and deterministic. The choices:

* **Sentences** are split after ``.``/``!``/``?`` when the next word starts with a capital letter,
  a digit or a quote, except after an abbreviation or an initial (``Jr.``, ``U.S.``, ``K. A.``), so
  names in HotpotQA text ("Edward Davis Wood Jr. (October 10, 1924 ...") stay whole.
* **Words** are runs of letters/digits joined by an apostrophe or a hyphen (``isn't``, ``1920s``,
  ``Hork-Bajir``); Unicode letters count as letters.
* **Content stems**: a lower-cased word that is not an English function word nor rationale filler
  ("answer", "context", "paragraph", ...), with a possessive ``'s`` and a plural ``s`` removed, and
  numbers with their thousands commas dropped. Matching on these stems lets "films" meet "film".
* **Syllables** (for Flesch reading ease): vowel groups (``a e i o u y``) after stripping accents,
  minus a silent final ``e`` (not ``-le``), at least 1; a number counts one syllable per digit, up
  to 4 (a year is read as about four syllables).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

# English function words; a rationale's meaning lives in the other words.
STOPWORDS = frozenset(
    """a about above after again against all also although am among an and any are aren't as at
    be because been before being below between both but by can cannot could couldn't did didn't do
    does doesn't doing don't down during each either else even ever every few for from further had
    hadn't has hasn't have haven't having he he's her here hers herself him himself his how however
    i i'm if in into is isn't it it's its itself just let's many may me might more most much must
    my myself neither no nor not now of off on once one's only or other our ours ourselves out over
    own same several she she's should shouldn't since so some still such than that that's the their
    theirs them themselves then there there's these they they're this those though through thus to
    too under until up upon very via was wasn't we we're were weren't what what's when where which
    while who who's whom whose why will with within without won't would wouldn't yet you your yours
    yourself one ones""".split()
)
# Words rationales use to talk about the task rather than the world: never evidence of content.
FILLER = frozenset(
    """answer answers question questions context contexts paragraph paragraphs passage passages
    sentence sentences step steps therefore hence thus so according mention mentions mentioned
    state states stated say says said tell tells told given information know known see let us
    finally need needs check yes true false""".split()
)
NON_CONTENT = STOPWORDS | FILLER

# Words that open a sentence which refers back to the one before it (anaphora or a connective).
ANAPHORS = frozenset(
    """he she it they his her its their him them this that these those both either neither such
    so thus therefore hence then consequently accordingly also which whose there""".split()
)
NEGATIONS = re.compile(r"\b(?:not|never|no|neither|nor|cannot)\b|n't\b", re.IGNORECASE)

_WORD = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")
_NUMBER = re.compile(r"^\d[\d,.]*$")
# Tokens before a period that do not end a sentence.
_ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st mt ft vs etc e.g i.e u.s u.k no co corp inc ltd gen col lt sgt
    capt rev hon jan feb mar apr jun jul aug sep sept oct nov dec approx ca est c""".split()
)
_BOUNDARY = re.compile(r"[.!?]+[\"'”’)\]]*\s+")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (stripped, empty ones dropped); see the module docstring for the rule."""
    text = " ".join(text.split())
    if not text:
        return []
    out, start = [], 0
    for match in _BOUNDARY.finditer(text):
        end = match.end()
        nxt = text[end : end + 1]
        if not (nxt.isupper() or nxt.isdigit() or nxt in "\"'“‘("):
            continue
        before = text[start : match.start() + 1].split()
        last = before[-1].rstrip(".!?").lower() if before else ""
        # An initial ("K.") or a known abbreviation ("Jr.") does not end the sentence.
        if text[match.start()] == "." and (len(last) == 1 and last.isalpha() or last in _ABBREVIATIONS):
            continue
        out.append(text[start:end].strip())
        start = end
    out.append(text[start:].strip())
    return [s for s in out if s]


def words(text: str) -> list[str]:
    """Word tokens in their original case (see the module docstring)."""
    return _WORD.findall(text)


def stem(word: str) -> str:
    """Lower-case, drop a possessive and a plural ``s``, drop thousands commas in numbers."""
    w = word.lower().replace("’", "'")
    if _NUMBER.match(w):
        return w.replace(",", "")
    if w.endswith("'s"):
        w = w[:-2]
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def is_content(word: str) -> bool:
    return word.lower().replace("’", "'") not in NON_CONTENT


def content_stems(text: str) -> list[str]:
    """Stems of the content words of ``text``, in order, with repeats."""
    return [stem(w) for w in words(text) if is_content(w)]


def is_number(word: str) -> bool:
    return bool(_NUMBER.match(word))


def entity_stems(text: str) -> set[str]:
    """Stems of the words a fact hangs on: numbers and capitalised content words (a crude
    named-entity detector: sentence-initial function words such as "The" or "So" are excluded)."""
    out = set()
    for w in words(text):
        if is_number(w) or (w[:1].isupper() and is_content(w)):
            out.add(stem(w))
    return out


def has_negation(text: str) -> bool:
    return bool(NEGATIONS.search(text))


def opens_with_anaphor(sentence: str) -> bool:
    """True when the sentence's first word refers back (he, she, this, both, so, therefore, ...)."""
    ws = words(sentence)
    return bool(ws) and ws[0].lower() in ANAPHORS


def syllables(word: str) -> int:
    """Estimated syllables of one word (heuristic in the module docstring)."""
    if word[:1].isdigit():
        return min(4, max(1, sum(c.isdigit() for c in word)))
    w = "".join(c for c in unicodedata.normalize("NFKD", word.lower()) if "a" <= c <= "z")
    if not w:
        return 1
    n = len(re.findall(r"[aeiouy]+", w))
    if n > 1 and w.endswith("e") and not w.endswith(("le", "ee", "ye")):
        n -= 1
    return max(1, n)


def idf_table(documents: Iterable[Sequence[str]]) -> tuple[dict[str, float], float]:
    """Smoothed IDF over ``documents`` (each a sequence of stems): ``log((1+N)/(1+df)) + 1``.
    Returns the table and the value for an unseen stem (df = 0), the largest possible weight."""
    docs = [set(d) for d in documents]
    n = len(docs)
    df = Counter(t for d in docs for t in d)
    table = {t: math.log((1 + n) / (1 + c)) + 1.0 for t, c in df.items()}
    return table, math.log(1 + n) + 1.0


def weighted_cosine(a: Sequence[str], b: Sequence[str], idf: dict[str, float], unseen: float) -> float:
    """Cosine of TF-IDF vectors of two stem sequences (0 when either is empty)."""
    ca, cb = Counter(a), Counter(b)
    if not ca or not cb:
        return 0.0
    w = lambda t: idf.get(t, unseen)  # noqa: E731
    # Sums run in the sequences' own order, never a set's: a set's order changes with the process's hash
    # seed, and so would the last digit of a float sum.
    dot = sum(ca[t] * cb[t] * w(t) ** 2 for t in ca if t in cb)
    na = math.sqrt(sum((c * w(t)) ** 2 for t, c in ca.items()))
    nb = math.sqrt(sum((c * w(t)) ** 2 for t, c in cb.items()))
    return dot / (na * nb)


def weighted_recall(needles: Iterable[str], haystack: set[str], idf: dict[str, float], unseen: float) -> float:
    """IDF-weighted share of the distinct ``needles`` found in ``haystack`` (0 for no needles)."""
    uniq = dict.fromkeys(needles)  # distinct, in order (a set's order would vary the float sums by process)
    total = sum(idf.get(t, unseen) for t in uniq)
    if total == 0:
        return 0.0
    return sum(idf.get(t, unseen) for t in uniq if t in haystack) / total


def distinct_2(tokens: Sequence[str]) -> float:
    """Distinct bigrams / bigrams (1.0 when there are fewer than two bigrams)."""
    bigrams = list(zip(tokens, tokens[1:]))
    if len(bigrams) < 2:
        return 1.0
    return len(set(bigrams)) / len(bigrams)


def context_sentences_from_paragraphs(paragraphs: Iterable[Sequence]) -> list[str]:
    """``[[title, [sentences]]]`` -> ``"Title: sentence"`` strings. The title is kept on every
    sentence because HotpotQA sentences often name their subject only in the title ("He lives in
    Los Angeles" under "Scott Derrickson")."""
    out = []
    for title, sentences in paragraphs:
        for s in sentences:
            s = " ".join(str(s).split())
            if s:
                out.append(f"{title}: {s}")
    return out


def context_sentences_from_text(context: str) -> list[str]:
    """The same as :func:`context_sentences_from_paragraphs` for a formatted context string (one
    ``"Title: s1 s2 ..."`` line per paragraph). A title that itself contains ``": "`` is cut at the
    first one; a line with no ``": "`` is all body."""
    out = []
    for line in context.splitlines():
        line = line.strip()
        if not line:
            continue
        title, sep, body = line.partition(": ")
        if not sep:
            title, body = "", line
        for s in split_sentences(body):
            out.append(f"{title}: {s}" if title else s)
    return out
