"""Secrets out of everything lmcot prints or writes.

Keys belong in environment variables (``api_key_env``), but a URL can carry one too
(``https://user:KEY@host/v1``, ``?code=KEY``), and so can an error message that quotes it.

* :class:`SecretURL` is the type of every ``api_base`` in the config: its ``str``, ``repr`` and JSON
  form are the redacted URL, and only :meth:`~SecretURL.get_secret_value` (called where the HTTP
  client is built) gives the real one. Printing, saving and error messages need no redaction step.
* :func:`redact_url` hides the userinfo and *every* query value (a query can carry a key under any
  name: ``?code=``, ``?sig=``, ``?api-version=`` alike); :func:`redact` does that to every URL in a
  text and also blanks every secret value registered here, for text that libraries log or raise.
* Secrets are registered once, where they enter the process: a :class:`SecretURL` registers its
  credentials when it is made (the config validates every ``api_base`` into one), and a key is
  registered as it is read from the environment (:func:`secret_from_env`, the one reader of keys).

Hand-written because neither DSPy nor litellm offer a redactor for user-facing text (litellm masks
only its own logs); the type is pydantic's ``Secret``, which only needs to be told how to display.
"""

from __future__ import annotations

import re
import threading
import urllib.parse

from pydantic import Secret

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


def secret_from_env(name: str) -> str | None:
    """The value of the environment variable ``name`` (a key), registered for :func:`redact` as it is
    read; None when the variable is unset."""
    import os

    value = os.environ.get(name)
    register_secret(value)
    return value


def url_secrets(url: str | None) -> list[str]:
    """The credentials a URL may carry: its userinfo (password, or a bare user token) and every
    query value (their names say nothing reliable: ``?code=KEY`` is as secret as ``?api-key=KEY``)."""
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
    for _, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if value:
            found.append(value)
    return found


def redact_url(url: str) -> str:
    """``https://user:KEY@host/v1?code=K&x=1`` -> ``https://***@host/v1?code=***&x=***``: the
    userinfo and every query value are hidden, the names of the query parameters are kept."""
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
        query = "&".join(f"{urllib.parse.quote(k, safe='-_.')}={MASK if v else ''}" for k, v in pairs)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def carries_mask(url: str) -> bool:
    """Whether ``url`` is a redacted copy (its userinfo or a query value is the mask), e.g. an
    ``api_base`` read back from a saved config.json: it no longer says where or how to connect."""
    try:
        parts = urllib.parse.urlsplit(url)
        pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return False
    userinfo = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else None
    return userinfo == MASK or any(v == MASK for _, v in pairs)


class SecretURL(Secret[str]):
    """A URL that may carry credentials (``api_base``). ``str()``, ``repr()`` and
    ``model_dump(mode="json")`` give :func:`redact_url`'s form, so it can be printed, saved and put
    in messages as it is; :meth:`get_secret_value` gives the real URL, for the HTTP client only. Its
    credentials are registered for :func:`redact` when it is made, so what a library logs or raises
    about the URL is blanked too."""

    def __init__(self, secret_value: str):
        super().__init__(secret_value)
        for secret in url_secrets(secret_value):
            register_secret(secret)

    def _display(self) -> str:
        return redact_url(self.get_secret_value())


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
