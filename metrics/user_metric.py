"""A user's own metric, DSPy style: ``metric(example, prediction, trace=None) -> float | bool``.

    metric = load_metric("my_metrics.py:exact_number")         # or "package.module:function"
    metric.check_on(trainset[0])                                # before any paid call
    metric(example, dspy.Prediction(answer="18", rationale="..."))   -> 1.0

A metric is code. lmcot runs it only when the person running the command names it (``metric:`` in their
config or ``--set metric=...``, or ``compile(..., metric=fn)`` in Python), never because a program folder
or a results file names it: those record the name alone.

Every way a metric can be unusable is a one-line :class:`MetricError` naming the config key, raised
before the first paid call: the path does not import, the name is missing or not callable, its signature
does not take (example, prediction), it raises on a first example, or it returns something that is not a
number.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import math
import numbers
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmcot.errors import UserError

__all__ = ["MetricError", "UserMetric", "as_user_metric", "load_metric"]


class MetricError(UserError, ValueError):
    """An unusable user metric; the message names the config key and the metric."""


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _import_file(path: Path, spec: str, key: str):
    if not path.is_file():
        raise MetricError(f"{key}={spec}: {path}: no such file")
    name = "lmcot_user_metric_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise MetricError(f"{key}={spec}: {path} is not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's file: any failure is theirs to fix
        raise MetricError(f"{key}={spec}: {path} does not import ({_short(exc)})") from exc
    sys.modules[name] = module  # pickling / dspy's threads find it again
    return module


def _import_module(where: str, spec: str, key: str):
    try:
        return importlib.import_module(where)
    except Exception as exc:  # noqa: BLE001
        raise MetricError(f"{key}={spec}: module {where!r} does not import ({_short(exc)})") from exc


class UserMetric:
    """A checked user metric; calling it returns a float (see the module docstring)."""

    def __init__(self, fn: Callable[..., Any], name: str, key: str = "metric"):
        self.fn, self.name, self.key = fn, name, key
        self._with_trace = _check_signature(fn, name, key)

    def __call__(self, example: Any, prediction: Any) -> float:
        args = (example, prediction, None) if self._with_trace else (example, prediction)
        try:
            value = self.fn(*args)
        except Exception as exc:  # noqa: BLE001 - the user's code
            where = getattr(example, "id", None) or (example.get("id") if hasattr(example, "get") else None)
            raise MetricError(f"{self.key}={self.name} raised {_short(exc)} on example {where!r}") from exc
        return _as_number(value, self.name, self.key)

    def check_on(self, example: Any) -> float:
        """Run the metric once on ``example`` with its own gold answer as the prediction (before any paid call)."""
        import dspy

        prediction = dspy.Prediction(answer=str(example.answer), rationale=str(example.get("rationale") or ""))
        try:
            return self(example, prediction)
        except MetricError as exc:
            raise MetricError(f"{exc} (checked on a first example before any LM call)") from exc

    def __repr__(self) -> str:
        return f"UserMetric({self.name!r})"


def _check_signature(fn: Callable[..., Any], name: str, key: str) -> bool:
    """True when ``fn`` takes (example, prediction, trace); False for (example, prediction)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True  # a builtin without a readable signature: DSPy's call form
    for args in ((None, None, None), (None, None)):
        try:
            sig.bind(*args)
            return len(args) == 3
        except TypeError:
            continue
    raise MetricError(f"{key}={name}: has the signature {name.rpartition(':')[2]}{sig}; a metric takes "
                      "(example, prediction, trace=None)")


def _as_number(value: Any, name: str, key: str) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, numbers.Real) and math.isfinite(float(value)):
        return float(value)
    shown = repr(value)[:60]
    raise MetricError(f"{key}={name} returned {shown} ({type(value).__name__}), not a number (a float or bool)")


def load_metric(spec: str, key: str = "metric") -> UserMetric:
    """Import ``'package.module:function'`` or ``'path/to/file.py:function'`` (relative to the current folder)."""
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise MetricError(f"{key}={spec}: expected 'package.module:function' or 'path/to/file.py:function'")
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _import_file(Path(where).expanduser(), spec, key)
    else:
        module = _import_module(where, spec, key)
    if not hasattr(module, attr):
        raise MetricError(f"{key}={spec}: {where} has no {attr!r}")
    fn = getattr(module, attr)
    if not callable(fn):
        raise MetricError(f"{key}={spec}: {attr} is a {type(fn).__name__}, not a function")
    return UserMetric(fn, spec, key)


def as_user_metric(metric: Callable[..., Any] | str | UserMetric | None, key: str = "metric") -> UserMetric | None:
    """A ``UserMetric`` from a spec string, a callable (Python API) or None."""
    if metric is None or isinstance(metric, UserMetric):
        return metric
    if isinstance(metric, str):
        return load_metric(metric, key)
    if not callable(metric):
        raise MetricError(f"{key}: {metric!r} is not callable")
    name = getattr(metric, "__qualname__", None) or getattr(metric, "__name__", None) or type(metric).__name__
    module = getattr(metric, "__module__", None)
    return UserMetric(metric, f"{module}:{name}" if module else name, key)
