"""Test and offline-quickstart helpers (not part of the lmcot package): a local OpenAI-compatible
server, a gold-data oracle that plays a scripted large LM, and tiny random-init models (``support.tiny``).

Importing this package is cheap (stdlib only); nothing here is needed at inference time. The names
are loaded on first use, so ``python -m support.oracle_server`` runs the server module once
(an eager import here would make runpy warn that the module is already in ``sys.modules``).
"""

from importlib import import_module

_EXPORTS = {
    "FALLBACK": "oracle_responder", "OracleExample": "oracle_responder", "OracleResponder": "oracle_responder",
    "load_examples": "oracle_responder", "OracleServer": "oracle_server", "RequestRecord": "oracle_server",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
