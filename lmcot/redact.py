"""Secrets out of everything lmcot prints or writes.

Keys belong in environment variables (``api_key_env``), but a URL can carry one too
(``https://user:KEY@host/v1``, ``?api-key=KEY``), and so can an error message that quotes it.
:func:`redact_url` hides URL credentials and key-like query values; :func:`redact` does that to every
URL in a text and also blanks every secret value registered with :func:`register_secret` (the
keys read from the environment, the credentials found in ``api_base``). They are hand-written
because neither DSPy nor litellm offer a redactor for user-facing text (litellm masks only its own
logs).
"""

from __future__ import annotations

import re
import threading
import urllib.parse

MASK = "***"
# Whole words of a name (after splitting camelCase and separators) that mark a credential.
SECRET_WORDS = frozenset({"key", "apikey", "token", "secret", "password", "passwd", "pwd", "credential",
                          "credentials", "authorization", "auth", "cookie", "sig", "signature", "bearer"})
# Compound spellings with no separator at all (``APIKEY``, ``accesstoken``, ``xapikey``).
_SECRET_SUFFIXES = ("apikey", "accesstoken", "authtoken", "accesskey", "secretkey", "privatekey", "password",
                    "secret", "credentials", "sessiontoken", "refreshtoken", "idtoken", "bearertoken")
_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")
_SECRETS: set[str] = set()
_LOCK = threading.Lock()


def name_words(name: str) -> list[str]:
    """``accessToken`` / ``X-Api-Key`` / ``api_key`` -> lower-case words."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(name))
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def is_secret_name(name: str) -> bool:
    """Whether a field, header or query-parameter name looks like it holds a credential, in any
    case or style (``max_tokens`` does not: ``tokens`` is not ``token``)."""
    words = name_words(name)
    compact = "".join(words)
    return bool(SECRET_WORDS & set(words)) or compact.endswith(_SECRET_SUFFIXES)


def register_secret(value: str | None) -> None:
    """Remember a secret value so that :func:`redact` blanks it wherever it appears."""
    if value and len(value) >= 4:
        with _LOCK:
            _SECRETS.add(value)
            quoted = urllib.parse.quote(value, safe="")
            if quoted != value:
                _SECRETS.add(quoted)


def url_secrets(url: str | None) -> list[str]:
    """The credentials a URL carries: the userinfo password (or bare user token) and the values of
    key-like query parameters."""
    if not url:
        return []
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return []
    found = []
    if parts.password:
        found.append(urllib.parse.unquote(parts.password))
        found.append(parts.password)
    elif parts.username:
        found.append(urllib.parse.unquote(parts.username))
    for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if value and is_secret_name(name):
            found.append(value)
    return found


def redact_url(url: str) -> str:
    """``https://user:KEY@host/v1?api-key=K&x=1`` -> ``https://***@host/v1?api-key=***&x=1``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(k) for k, _ in pairs):
            query = "&".join(f"{urllib.parse.quote(k, safe='-_.')}=" + (MASK if is_secret_name(k) else
                                                                         urllib.parse.quote(v, safe='-_.'))
                             for k, v in pairs)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact(text: str) -> str:
    """``text`` with URL credentials and every registered secret value replaced by ``***``."""
    if not text:
        return text
    text = _URL_RE.sub(lambda m: redact_url(m.group(0)), str(text))
    with _LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for value in secrets:
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact_tree(value):
    """A copy of a JSON-like value with every string passed through :func:`redact`."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_tree(v) for v in value]
    return value
