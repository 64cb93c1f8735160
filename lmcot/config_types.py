"""What every config section is made of: the error type, strict numbers, the section base (unknown keys
refused, values never echoed in errors), and the checks that keep credentials out of a config.

``lmcot.config`` (the whole config) and ``lmcot.lm_config`` (one model's section) build on these.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

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
