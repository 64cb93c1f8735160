"""What every config section is made of: the error type, strict numbers, the section base (unknown keys
refused, values never echoed in errors), the checks that keep credentials out of a config, the YAML
dialect a config is written in, and how a key path finds its section.

``lmcot.config`` (the whole config) and ``lmcot.lm_config`` (one model's section) build on these.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Sequence
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Strict

from lmcot.errors import UserError
from lmcot.redact import is_secret_name, name_words


class ConfigError(UserError, ValueError):
    """A config that cannot be used; the message names the file and the key."""


def _not_a_bool(value: Any) -> Any:
    # YAML reads `true` as a boolean and Python's bool is an int: `max_tokens: true` must not become 1.
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return value


# Whole numbers are strict: no booleans, no floats (`1e8`, `2.0`), no strings. Numbers with a
# fraction refuse booleans but still read strings, because YAML 1.1 reads `5e-5` as one.
Int = Annotated[int, Strict()]
Float = Annotated[float, BeforeValidator(_not_a_bool)]


# litellm keyword arguments that name the endpoint (``api_base`` has its own, checked field).
ENDPOINT_KEYS = frozenset({"api_base", "base_url"})
# An environment variable's name, as POSIX shells accept it.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Provider keys as they are written (OpenAI, Anthropic, Stripe-style, GitHub, Google, Slack, HF), case and
# all: an upper-case variable name (HF_TOKEN, SK_SERVE_KEY) is a name. An AWS key id is AKIA + 16 characters.
_KEY_PREFIXES = ("sk-", "sk_", "pk_", "rk_", "ghp_", "gho_", "github_pat_", "AIza", "xox", "hf_")
_AWS_KEY_ID = re.compile(r"AKIA[A-Z0-9]{16}")


def looks_like_a_key(value: str) -> bool:
    """``api_key_env`` holding the key itself rather than the name of the variable that holds it."""
    if not _ENV_NAME.fullmatch(value):
        return True
    return value.startswith(_KEY_PREFIXES) or bool(_AWS_KEY_ID.fullmatch(value)) or (len(value) >= 32 and not value.isupper())


def secret_keys(value: Any, prefix: str = "") -> list[str]:
    """Dotted paths of keys that look like credentials, anywhere in a nested dict."""
    found: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            path = f"{prefix}{k}"
            # Whole words of the key in any style (``max_tokens`` is fine; ``access_token``,
            # ``accessToken``, ``X-Api-Key`` are not); any header block is refused as a whole.
            if is_secret_name(str(k)) or {"headers", "query"} & set(name_words(str(k))):
                found.append(path)
            found.extend(secret_keys(v, path + "."))
    return found


class Section(BaseModel):
    # A typo in a key is an error, not a silently ignored setting.
    # hide_input_in_errors: a refused value may be a key (``api_key_env: sk-...``); messages name
    # the key path, never echo the value. allow_inf_nan=False: nan/inf are never a valid setting.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(),
                              hide_input_in_errors=True, allow_inf_nan=False)


def no_secrets(value: dict[str, Any]) -> dict[str, Any]:
    # The config is printed and saved beside every result, so a credential must never be in it.
    bad = sorted(secret_keys(value))
    if bad:
        raise ValueError(f"secrets do not belong in the config ({', '.join(bad)}); put them in the environment")
    return value


# -- the YAML a config is written in -------------------------------------------------------------
class _ConfigLoader(yaml.SafeLoader):
    """YAML as lmcot's config reads it, a file or a ``--set`` value: a date stays text
    (``extra.api_version: 2024-06-01`` is a string for litellm, not a ``datetime.date``) and so does a
    number YAML 1.1 would read as octal, hex or base 60 (label ``010`` is not 8, ``1:30`` is not 90)."""


_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
# Plain decimal integers only (YAML 1.2's core schema, with 1_000 as 1.1 allows).
_ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"),
                                    list("-+0123456789"))
# YAML 1.1's floats without the base-60 form ("1:30.5" is text, not 90.5).
_ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(
    r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9_]+(?:[eE][-+][0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))


def read_yaml(text: str) -> Any:
    """A config file or a ``--set`` value, read in the dialect above."""
    return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - a SafeLoader subclass


# -- a key path through the sections ---------------------------------------------------------------
def _options(annotation: Any) -> tuple[Any, ...]:
    """The types a field takes: a union's members, else the annotation itself (``dict[str, str]`` is one)."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return typing.get_args(annotation) if union else (annotation,)


def section_at(root: type[Section], path: Sequence[str]) -> type[Section] | None:
    """The section of ``root`` that ``path`` names (``("kd", "teacher")`` -> LMConfig), or None."""
    model: Any = root
    for part in path:
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        model = next((o for o in _options(field.annotation) if isinstance(o, type) and issubclass(o, Section)), None)
        if model is None:
            return None
    return model


def keys_beside(root: type[Section], loc: Sequence[str]) -> list[str]:
    """The keys of the section that ``loc``'s last part sits in (for "did you mean"); [] when unknown."""
    section = section_at(root, loc[:-1])
    return list(section.model_fields) if section is not None else []


def takes_text(root: type[Section], path: Sequence[str]) -> bool:
    """Whether the setting at ``path`` is text only (``str`` or ``str | None``)."""
    section = section_at(root, path[:-1])
    field = section.model_fields.get(path[-1]) if section is not None else None
    if field is None:
        return False
    return all(option in (str, type(None)) for option in _options(field.annotation))
