"""One pydantic config drives the Python API, the YAML files and the CLI's ``--set key.path=value``.

    cfg = load_config("configs/quickstart.yaml", overrides=["large_lm.temperature=0.2"])

Top-level sections: ``small_lm``, ``large_lm``, ``data``, ``eval``, ``kd``, ``rl``, ``rationale_metrics``.
Secrets never live here: ``api_key_env`` names the environment variable that holds the key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the key."""


_SECRET_WORDS = {"key", "apikey", "token", "secret", "password", "credential", "credentials", "authorization",
                 "headers", "cookie"}


def _secret_keys(value: Any, prefix: str = "") -> list[str]:
    """Dotted paths of keys that look like credentials, anywhere in a nested dict."""
    found: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            path = f"{prefix}{k}"
            # Whole words of the key (``max_tokens`` is fine, ``access_token`` is not).
            if _SECRET_WORDS & set(re.split(r"[_\-.\s]+", str(k).lower())):
                found.append(path)
            found.extend(_secret_keys(v, path + "."))
    return found


class _Section(BaseModel):
    # A typo in a key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class LMConfig(_Section):
    """A language model in either role. ``backend`` says how it is reached:

    - ``litellm``: any litellm model string (``openai/gpt-4o-mini``, ``anthropic/...``,
      ``hosted_vllm/...``, ``ollama_chat/...``), called over HTTP.
    - ``transformers``: an in-process Hugging Face model from a hub id or a local path
      (causal or encoder-decoder), or ``tiny-random/llama`` / ``tiny-random/t5`` (built locally).
    """

    model: str
    backend: Literal["litellm", "transformers"] = "litellm"
    temperature: float = 0.0
    max_tokens: int = 256
    top_p: float | None = None
    seed: int | None = None
    cache: bool = True
    # litellm
    api_base: str | None = None
    api_key_env: str | None = None
    num_retries: int = 5
    timeout: float | None = 120.0
    extra: dict[str, Any] = Field(default_factory=dict, description="other litellm keyword arguments")
    # transformers
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    batch_size: int = 8
    max_input_tokens: int = 2048
    trust_remote_code: bool = False
    revision: str | None = None

    @field_validator("extra")
    @classmethod
    def _no_secrets_in_extra(cls, value: dict[str, Any]) -> dict[str, Any]:
        # The config is printed and saved beside every result, so a credential must never be in it,
        # at any depth (``extra_headers.Authorization`` as much as ``api_key``).
        bad = sorted(_secret_keys(value))
        if bad:
            raise ValueError(f"secrets do not belong in the config ({', '.join(bad)}); "
                             "put the key in an environment variable and name it in api_key_env")
        return value

    def api_key(self) -> str | None:
        """The key from the environment (never stored on this object)."""
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ConfigError(f"environment variable {self.api_key_env} (named by api_key_env of {self.model}) is not set")
        return key


class SmallLMConfig(LMConfig):
    model: str = "tiny-random/llama"
    backend: Literal["litellm", "transformers"] = "transformers"
    temperature: float = 0.0
    max_tokens: int = 128


class LargeLMConfig(LMConfig):
    model: str = "openai/gpt-4o-mini"
    # Room for CoT prompting's reasoning; answers themselves are short spans.
    max_tokens: int = 512


class DataConfig(_Section):
    dataset: Literal["hotpotqa", "2wiki"] = "hotpotqa"
    train: str | None = None
    dev: str | None = None
    train_limit: int | None = None
    dev_limit: int | None = None
    hub_id: str | None = Field(None, description="override the dataset's hub repository")
    max_context_tokens: int | None = Field(
        1024, description="context budget, counted with the small LM's tokenizer; null keeps all"
    )
    skip_bad: bool = False


class EvalConfig(_Section):
    methods: list[Literal["standard", "cot", "guided"]] = ["standard", "cot", "guided"]
    num_samples: int = Field(1, ge=1, description="rationales per question; >1 is self-consistency voting")
    sample_temperature: float = 0.7
    concurrency: int = Field(8, ge=1)
    out: str = "runs/eval"


class KDConfig(_Section):
    teacher: LMConfig | None = Field(None, description="defaults to large_lm")
    num_samples: int = Field(4, ge=1, description="teacher rationales per training question")
    temperature: float = 0.7
    keep_metric: Literal["em", "f1"] = "em"
    min_score: float = Field(1.0, ge=0.0, le=1.0)
    keep: Literal["best", "all"] = "best"
    concurrency: int = Field(8, ge=1)
    # training
    max_steps: int | None = Field(None, description="wins over num_train_epochs when set")
    num_train_epochs: float = 3.0
    learning_rate: float = 5e-5
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_length: int = Field(2048, description="prompt + rationale tokens per training example")
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | str = "all-linear"
    save_steps: int = 200
    logging_steps: int = 10
    report_to: list[str] = ["tensorboard"]
    seed: int = 42


ASPECTS = (
    "factuality", "relevance", "logicality", "consistency",
    "coherence", "fluency", "naturalness", "readability",
)  # fmt: skip
REWARDS = (*ASPECTS, "answer_f1")


class RewardWeights(_Section):
    factuality: float = 1.0
    relevance: float = 1.0
    logicality: float = 1.0
    consistency: float = 1.0
    coherence: float = 1.0
    fluency: float = 1.0
    naturalness: float = 1.0
    readability: float = 1.0
    answer_f1: float = 1.0


class RationaleMetricsConfig(_Section):
    backends: dict[str, Literal["judge", "cheap"]] = Field(
        default_factory=lambda: {a: "cheap" for a in ASPECTS}, description="per aspect: judge LM or cheap scorer"
    )
    judge: LMConfig | None = Field(None, description="defaults to large_lm")
    judge_samples: int = Field(5, ge=1, description="samples per question when no log-probabilities come back")
    concurrency: int = Field(8, ge=1)
    reference_lm: str | None = Field(None, description="causal LM for perplexity (fluency/naturalness); default small_lm")
    embedding_model: str | None = Field(None, description="sentence-embedding model; default a lexical fallback")

    @field_validator("backends")
    @classmethod
    def _known_aspects(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(ASPECTS))
        if unknown:
            raise ValueError(f"unknown aspect(s) {unknown}; aspects are {list(ASPECTS)}")
        return {**{a: "cheap" for a in ASPECTS}, **value}


class RLConfig(_Section):
    algorithm: Literal["auto", "grpo", "rloo", "seq2seq_rloo", "seq2seq_ppo"] = Field(
        "auto", description="auto: grpo for causal students, seq2seq_rloo for encoder-decoder"
    )
    max_steps: int = 100
    num_generations: int = Field(4, ge=2)
    batch_size: int = Field(8, description="completions per step (TRL's convention), rounded up to a multiple of "
                                           "num_generations; the seq2seq loop samples ceil(batch_size / num_generations) prompts")
    learning_rate: float = 1e-5
    kl: float = Field(0.05, ge=0.0, description="KL coefficient to the KD checkpoint")
    clip_eps: float = Field(0.2, description="PPO-clip range (seq2seq_ppo)")
    ppo_epochs: int = Field(2, ge=1, description="inner epochs per batch (seq2seq_ppo)")
    temperature: float = 1.0
    max_new_tokens: int = 128
    weights: RewardWeights = Field(default_factory=RewardWeights)
    aggregation: Literal["weighted_sum", "normalize_sum"] = "weighted_sum"
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    save_steps: int = 50
    logging_steps: int = 1
    report_to: list[str] = ["tensorboard"]
    seed: int = 42
    train_limit: int | None = None


class LMCoTConfig(_Section):
    small_lm: SmallLMConfig = Field(default_factory=SmallLMConfig)
    large_lm: LargeLMConfig = Field(default_factory=LargeLMConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    kd: KDConfig = Field(default_factory=KDConfig)
    rl: RLConfig = Field(default_factory=RLConfig)
    rationale_metrics: RationaleMetricsConfig = Field(default_factory=RationaleMetricsConfig)
    stages: list[Literal["kd", "rl"]] = ["kd"]
    cache_dir: str = Field("~/.cache/lmcot", description="disk cache of LM calls (DSPy's cache, under cache_dir/dspy)")

    def teacher(self) -> LMConfig:
        return self.kd.teacher or self.large_lm

    def judge(self) -> LMConfig:
        return self.rationale_metrics.judge or self.large_lm

    def to_public_dict(self) -> dict[str, Any]:
        """The resolved config as saved beside results: no secret can be in it by construction
        (keys come from the environment), and this is the one place that would strip one."""
        return self.model_dump(mode="json")


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key.path=value")
    key, raw = item.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"--set {item!r}: empty key")
    # YAML parsing gives numbers, booleans, null and lists (``[kd, rl]``) their types.
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = _parse_override(item)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a section")
            node = child
        if path[-1] == "stages" and len(path) == 1 and isinstance(value, str):
            value = [s.strip() for s in value.split(",") if s.strip()]
        node[path[-1]] = value
    return data


def _format_validation_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    extra = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{source}: {key}: {msg}{extra}"


def config_from_dict(data: dict[str, Any], source: str = "config") -> LMCoTConfig:
    try:
        return LMCoTConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> LMCoTConfig:
    """Read YAML (or start from defaults), apply ``key.path=value`` overrides, validate."""
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        source = str(path)
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{source}: no such config file")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{source}:{where} invalid YAML") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{source}: top level must be a mapping of sections")
        data = loaded
    data = apply_overrides(data, overrides or [])
    return config_from_dict(data, source)
