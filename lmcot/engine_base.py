"""What lmcot's DSPy engines (``lmcot.hf_engine.TransformersEngine``, ``lmcot.http_lm.RouterEngine``) do
alike around their own ``complete``: the rest of DSPy's ``Engine`` protocol, and sharing on deepcopy.

A subclass writes ``complete`` (and ``dump_state`` / ``load_state``, which differ: one saves its model
settings, the other refuses to rebuild servers without their credentials).
"""

from __future__ import annotations


class SharedEngine:
    """A DSPy engine that a program's copies share: one stream event run per complete reply, nothing to close."""

    def stream(self, request):
        from dspy.lm15 import response_to_events

        # Neither engine streams tokens: the stream is the complete reply as DSPy's events.
        return response_to_events(self.complete(request))

    def complete(self, request):
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __deepcopy__(self, memo):
        # program.deepcopy() must share the engine: its state (loaded weights, a Router's cooldowns and
        # connections) belongs to the process, not to one copy of the program.
        return self
