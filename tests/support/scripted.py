"""A scripted in-process LM for unit tests: ``reply(messages, config, index) -> text`` plays the model,
every call is recorded. Scripted, not a model: it stands in for the LMs of programs under test."""

from __future__ import annotations

import threading

import dspy
from dspy.lm15 import Message, Response, TextPart, Usage


class ScriptedEngine:
    """A DSPy engine whose reply is ``reply(messages, config, call_index)``; records every request."""

    def __init__(self, reply):
        self.reply = reply
        self.calls: list[dict] = []
        self._lock = threading.Lock()

    def complete(self, request):
        system = request.system
        if system is not None and not isinstance(system, str):
            system = "".join(p.text for p in system)
        messages = [{"role": "system", "content": system}] if system is not None else []
        messages += [{"role": m.role, "content": m.text or ""} for m in request.messages]
        with self._lock:
            index = len(self.calls)
            self.calls.append({"messages": messages, "config": request.config})
        text = self.reply(messages, request.config, index)
        return Response(id=None, model="scripted", message=Message.assistant([TextPart(text)]), finish_reason="stop",
                        usage=Usage(input_tokens=7, output_tokens=3))

    def close(self) -> None:
        pass

    def prompts(self) -> list[str]:
        return ["\n".join(m["content"] for m in c["messages"]) for c in self.calls]


def scripted_lm(name: str, reply, cache: bool = False) -> tuple[dspy.LM, ScriptedEngine]:
    engine = ScriptedEngine(reply)
    return dspy.LM(f"local/{name}", engine=engine, cache=cache, temperature=0.0, max_tokens=64), engine


def chat_reply(**fields: str) -> str:
    """What a large LM answers to DSPy's ChatAdapter prompt."""
    return "".join(f"[[ ## {k} ## ]]\n{v}\n\n" for k, v in fields.items()) + "[[ ## completed ## ]]"
