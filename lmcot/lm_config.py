"""One model's section of the config (``small_lm``, ``large_lm``, ``kd.teacher``, a judge): which model,
how it is reached (an HTTP server through litellm, or in-process transformers) and how it samples.

``api_base`` is a :class:`~lmcot.redact.SecretURL` (printed and saved redacted); a key never lives here:
``api_key_env`` names the environment variable that holds it (read, and registered for redaction, by
``lmcot.http_lm.api_key`` when the client is built).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import Field, field_serializer, field_validator, model_validator

from lmcot.config_types import ENDPOINT_KEYS, Float, Int, Section, looks_like_a_key, secret_keys
from lmcot.redact import SecretURL, carries_mask, redact_url

log = logging.getLogger(__name__)


class LMConfig(Section):
    """A language model in either role. ``backend`` says how it is reached:

    - ``litellm``: any litellm model string (``openai/gpt-4o-mini``, ``anthropic/...``,
      ``hosted_vllm/...``, ``ollama_chat/...``), called over HTTP.
    - ``transformers``: an in-process Hugging Face model from a hub id or a local path
      (causal or encoder-decoder).
    """

    model: str
    backend: Literal["litellm", "transformers"] = "litellm"
    temperature: Float = Field(0.0, ge=0.0)
    max_tokens: Int = Field(256, gt=0)
    top_p: Float | None = Field(None, gt=0.0, le=1.0)
    seed: Int | None = Field(None, ge=0)
    cache: bool = True
    # litellm
    # A URL can carry a credential (``?code=KEY``): typed as a secret, it prints and saves redacted.
    # A list is several servers of the same model (vLLM replicas): calls are spread over the live ones
    # through litellm's Router (lmcot.http_lm); a failing one is rested and tried again later.
    api_base: SecretURL | list[SecretURL] | None = Field(
        None, description="the server's base URL, e.g. http://host:8000/v1, or a list of servers of the same model "
                          "(shown and saved with every query value hidden; user:password@ is refused)")
    api_key_env: str | None = None
    num_retries: Int = Field(5, ge=0, description="retries of a call that failed transiently (429, 5xx, a timeout); "
                             "an unknown host or a refused connection fails at once")
    timeout: Float | None = Field(120.0, gt=0, description="seconds per try; the start-up probe of api_base waits "
                                                          "at most min(timeout, 30) s for a first reply")
    # Without it a hung server (answers the probe, never a completion) costs each question every try's
    # timeout plus backoff (lmcot.http_lm's docstring works the default out).
    total_timeout: Float = Field(60.0, gt=0, description="seconds one call may take, all tries and waits "
                                 "between them together; a slow model writing long replies may need more")
    extra: dict[str, Any] = Field(default_factory=dict, description="other litellm keyword arguments")
    # transformers
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    batch_size: Int = Field(8, gt=0)
    max_input_tokens: Int = Field(2048, gt=0)
    trust_remote_code: bool = False
    revision: str | None = None
    # Repetition controls (transformers' names): damp the loops small models fall into when sampling.
    # They also drive the RL rollouts, so RL samples as inference does. Trade-off: for a causal LM both
    # count the prompt too, so they penalise quoting the context, which a good rationale does (README,
    # "Real models", has the measured effect); RL's gradient uses unpenalised log-probs (as TRL's).
    repetition_penalty: Float = Field(1.0, ge=1.0, le=2.0, description=(
        "in-process models: > 1.0 lowers the score of tokens already in the prompt or output (1.0: off; "
        "1.1-1.3 usual)"))
    no_repeat_ngram_size: Int = Field(0, ge=0, le=64, description="in-process models: no n-gram of this size "
                                                                  "occurs twice in an output (0: off)")

    @model_validator(mode="after")
    def _repetition_controls_are_in_process(self) -> "LMConfig":
        # An HTTP model never sees these: say so rather than ignore them.
        if self.backend == "litellm" and (self.repetition_penalty != 1.0 or self.no_repeat_ngram_size):
            raise ValueError("repetition_penalty / no_repeat_ngram_size apply to in-process models (backend: "
                             "transformers); for a server that takes them (e.g. vLLM) put them in extra")
        return self

    @field_validator("model")
    @classmethod
    def _model_is_named(cls, value: str) -> str:
        # `--set large_lm.model=` would otherwise reach DSPy (or from_pretrained) as an empty string.
        if not value.strip():
            raise ValueError("empty; name a litellm model (e.g. openai/gpt-4o-mini) or a model folder / hub id")
        return value.strip()

    @field_validator("extra")
    @classmethod
    def _no_secrets_in_extra(cls, value: dict[str, Any]) -> dict[str, Any]:
        # The config is printed and saved beside every result, so a credential must never be in it,
        # at any depth (``extra_headers.Authorization`` as much as ``api_key``; a query block as much
        # as a header block, since any query value may be a key).
        bad = sorted(secret_keys(value))
        if bad:
            raise ValueError(f"secrets do not belong in the config ({', '.join(bad)}); "
                             "put the key in an environment variable and name it in api_key_env")
        # litellm's other names for the endpoint would bypass api_base's checks and redaction.
        endpoint = sorted(k for k in value if str(k) in ENDPOINT_KEYS)
        if endpoint:
            raise ValueError(f"{endpoint[0]}: set the endpoint with api_base, not in extra")
        if "engine" in value:  # lmcot builds the engine from backend and api_base; one here would be dropped
            raise ValueError("engine: lmcot chooses the engine (backend, api_base), not extra")
        return value

    def servers(self) -> list[SecretURL]:
        """The servers ``api_base`` names: none (the provider's own endpoint), one, or several."""
        if self.api_base is None:
            return []
        return list(self.api_base) if isinstance(self.api_base, list) else [self.api_base]

    def endpoint_shown(self) -> str:
        """``api_base`` as messages and records show it: each server redacted, comma-separated; ``""``
        for the provider's own endpoint. The one redacted form, so a list never shows as a repr."""
        return ", ".join(str(url) for url in self.servers())  # a SecretURL prints redacted

    @field_serializer("api_base", when_used="json")
    def _api_base_shown(self, value: SecretURL | list[SecretURL] | None) -> str | list[str] | None:
        # The redacted form, for one URL or a list (pydantic does not apply a Secret's JSON form inside
        # the list branch of the union).
        if isinstance(value, list):
            return [str(url) for url in value]
        return None if value is None else str(value)

    @field_validator("api_base", mode="before")
    @classmethod
    def _api_base_is_a_url(cls, value: Any) -> Any:
        # Fail at config time, not after the client's retries ("not a url" would be tried as a host).
        if value is None:
            return value
        if isinstance(value, (list, tuple)):  # several servers of one model: each a URL, each once
            if not value:
                raise ValueError("an empty list; give one URL or a list of URLs of servers of the same model")
            urls = []
            for i, item in enumerate(value):
                try:
                    url = cls._api_base_is_a_url(item)
                except ValueError as exc:
                    raise ValueError(f"item {i}: {exc}") from None
                if url is not None and url.get_secret_value() in [u.get_secret_value() for u in urls]:
                    raise ValueError(f"item {i}: {url} is listed twice")
                if url is not None:  # None: saved redacted, ignored with a warning
                    urls.append(url)
            return urls or None
        raw = value.get_secret_value() if isinstance(value, SecretURL) else value
        if not isinstance(raw, str):
            raise ValueError("expected a URL string, e.g. http://host:8000/v1")
        import urllib.parse

        raw = raw.strip()
        try:
            parts = urllib.parse.urlsplit(raw)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL ({redact_url(raw)!r}); expected e.g. http://host:8000/v1")
        if carries_mask(raw):
            # Read back from a saved config.json / program.json, where it was written redacted: it no
            # longer says how to connect, and "***" must never be sent as a credential.
            log.warning("an api_base saved with its credentials hidden (%s) is ignored; pass the real one with "
                        "--set <role>.api_base=URL", redact_url(raw))
            return None
        if "@" in parts.netloc:
            # httpx would send user:password as Basic auth in place of the Bearer key, and the URL is shown
            # in logs and errors by libraries that do not redact it.
            raise ValueError("credentials in the URL (user:password@host) are refused: the HTTP client would send "
                             "them as Basic auth instead of the API key; put the key in an environment variable "
                             "and name it in api_key_env (the value given is not shown)")
        return SecretURL(raw)

    @field_validator("api_key_env")
    @classmethod
    def _api_key_env_is_a_name(cls, value: str | None) -> str | None:
        if value is not None and looks_like_a_key(value):
            # Never echo it: it is most likely the key itself.
            raise ValueError("must be the NAME of an environment variable that holds the key (e.g. OPENAI_API_KEY), "
                             "not the key itself; the value given is not shown")
        return value


class SmallLMConfig(LMConfig):
    model: str = "HuggingFaceTB/SmolLM2-135M-Instruct"
    backend: Literal["litellm", "transformers"] = "transformers"
    temperature: Float = Field(0.0, ge=0.0)
    max_tokens: Int = Field(128, gt=0)
    # auto: the checkpoint's own dtype (bf16 for most hub models, float32 for a converted GGUF); narrower than
    # training's float32 rounds the trained weights: half the disk, but a few greedy tokens may differ.
    save_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="dtype of the compiled program's small_lm/ weights; auto: the pretrained checkpoint's own")


class LargeLMConfig(LMConfig):
    model: str = "openai/gpt-4o-mini"
    # Room for CoT prompting's reasoning; answers themselves are short spans.
    max_tokens: Int = Field(512, gt=0)
