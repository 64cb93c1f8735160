"""KD from the task's own rationales (``kd.source: dataset`` or ``both``): GSM8K's worked solutions,
e-SNLI's explanations, any ``rationale`` a training example carries. No teacher call is made for them.

    rows = dataset_rationales(trainset)    # [{id, sample, question, context, rationale, answer, source}, ...]

Each rationale is distilled as it is, followed by "So the answer is <gold>." when it does not already
state an answer (``lmcot.metrics.stated_answer``): a human solution often ends at its last step, and the
large LM reads a rationale's stated conclusion, so the student learns to end with one, as it does from
the teacher's rationales.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from lmcot.metrics.stated_answer import stated_answer

DATASET_SAMPLE = -1  # the ``sample`` of a dataset rationale in KD rows (teacher samples are 0, 1, ...)


def _get(example: Any, key: str) -> Any:
    return example.get(key) if hasattr(example, "get") else getattr(example, key, None)


def with_conclusion(rationale: str, answer: str) -> str:
    """``rationale`` ending in a stated answer: as it is when it states one, else with "So the answer is X." added."""
    rationale = rationale.strip()
    if stated_answer(rationale) is not None:
        return rationale
    return f"{rationale}\nSo the answer is {str(answer).strip()}."


def dataset_rationales(trainset: list[Any]) -> list[dict[str, Any]]:
    """One KD row per training example that has a non-empty ``rationale`` (trainset order, first of a repeated id)."""
    rows, seen = [], set()
    for ex in trainset:
        rationale = str(_get(ex, "rationale") or "").strip()
        qid = str(_get(ex, "id"))
        if not rationale or qid in seen:
            continue
        seen.add(qid)
        rows.append({"id": qid, "sample": DATASET_SAMPLE, "question": _get(ex, "question"),
                     "context": _get(ex, "context") or "", "answer": str(_get(ex, "answer")),
                     "rationale": with_conclusion(rationale, _get(ex, "answer")), "source": "dataset"})
    return rows


def digest(rows: list[dict[str, Any]]) -> str:
    """What the KD stage depends on in these rows (a changed rationale retrains)."""
    payload = [[r["id"], r["rationale"]] for r in rows]
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()[:16]
