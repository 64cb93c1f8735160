"""A spy on a ``TransformersEngine``'s ``model.generate``, for tests that compare what the student is fed."""

from __future__ import annotations


def record_prompt_ids(engine) -> list[list[int]]:
    """From now on, each row ``engine.model.generate`` gets is recorded as its prompt ids without the
    padding (what the model reads); returns the list that fills, one entry per row in call order."""
    seen: list[list[int]] = []
    generate = engine.model.generate

    def spy(**kwargs):
        for ids, mask in zip(kwargs["input_ids"].tolist(), kwargs["attention_mask"].tolist()):
            seen.append([t for t, m in zip(ids, mask) if m])
        return generate(**kwargs)

    engine.model.generate = spy
    return seen
