"""One pydantic config drives the Python API, the YAML files and the CLI's ``--set key.path=value``.

    cfg = load_config("configs/quickstart.yaml", overrides=["large_lm.temperature=0.2"])

Top-level sections: ``small_lm``, ``large_lm``, ``data``, ``eval``, ``kd``, ``rl``, ``rationale_metrics``, ``experiment``.
Secrets never live here: ``api_key_env`` names the environment variable that holds the key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from lmcot.aspects import ASPECTS, parse_select
from lmcot.errors import UserError
from lmcot.redact import is_secret_name, name_words, redact_tree, redact_url


class ConfigError(UserError, ValueError):
    """A config that cannot be used; the message names the file and the key."""


# An environment variable's name, as POSIX shells accept it.
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Prefixes of provider keys (OpenAI, Anthropic, Stripe-style, GitHub, AWS, Google, Slack, HF).
_KEY_PREFIXES = ("sk-", "sk_", "pk_", "rk_", "ghp_", "gho_", "github_pat_", "akia", "aiza", "xox", "hf_")


def _looks_like_a_key(value: str) -> bool:
    """``api_key_env`` holding the key itself rather than the name of the variable that holds it."""
    if not _ENV_NAME.match(value):
        return True
    lowered = value.lower()
    return lowered.startswith(_KEY_PREFIXES) or (len(value) >= 32 and not value.isupper())


def _secret_keys(value: Any, prefix: str = "") -> list[str]:
    """Dotted paths of keys that look like credentials, anywhere in a nested dict."""
    found: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            path = f"{prefix}{k}"
            # Whole words of the key in any style (``max_tokens`` is fine; ``access_token``,
            # ``accessToken``, ``X-Api-Key`` are not); any header block is refused as a whole.
            if is_secret_name(str(k)) or "headers" in name_words(str(k)):
                found.append(path)
            found.extend(_secret_keys(v, path + "."))
    return found


class _Section(BaseModel):
    # A typo in a key is an error, not a silently ignored setting.
    # hide_input_in_errors: a refused value may be a key (``api_key_env: sk-...``); messages name
    # the key path, never echo the value. allow_inf_nan=False: nan/inf are never a valid setting.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(),
                              hide_input_in_errors=True, allow_inf_nan=False)


def _no_secrets(value: dict[str, Any]) -> dict[str, Any]:
    # The config is printed and saved beside every result, so a credential must never be in it.
    bad = sorted(_secret_keys(value))
    if bad:
        raise ValueError(f"secrets do not belong in the config ({', '.join(bad)}); put them in the environment")
    return value


class LMConfig(_Section):
    """A language model in either role. ``backend`` says how it is reached:

    - ``litellm``: any litellm model string (``openai/gpt-4o-mini``, ``anthropic/...``,
      ``hosted_vllm/...``, ``ollama_chat/...``), called over HTTP.
    - ``transformers``: an in-process Hugging Face model from a hub id or a local path
      (causal or encoder-decoder).
    """

    model: str
    backend: Literal["litellm", "transformers"] = "litellm"
    temperature: float = Field(0.0, ge=0.0)
    max_tokens: int = Field(256, gt=0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=0)
    cache: bool = True
    # litellm
    api_base: str | None = None
    api_key_env: str | None = None
    num_retries: int = Field(5, ge=0)
    timeout: float | None = Field(120.0, gt=0, description="seconds per call; the start-up probe of api_base waits "
                                                          "at most min(timeout, 30) s for a first reply")
    extra: dict[str, Any] = Field(default_factory=dict, description="other litellm keyword arguments")
    # transformers
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    batch_size: int = Field(8, gt=0)
    max_input_tokens: int = Field(2048, gt=0)
    trust_remote_code: bool = False
    revision: str | None = None
    # Repetition controls (transformers' names). Sampled rationales of small models can fall into loops
    # that run to max_tokens; these damp that. For small_lm they also drive the RL rollouts (TRL
    # GRPO/RLOO, the seq2seq loop), so RL samples as inference does. Trade-offs: for a causal LM both
    # count the *prompt* too, so they penalise quoting the context, which is what a good rationale does
    # (measured on SmolLM2 after KD, 16 held-out questions sampled at temperature 1.0, 64 tokens: cut at
    # max_tokens 4/16 with neither, 16/16 at repetition_penalty 1.2, 10/16 at no_repeat_ngram_size 4,
    # and no loops in any); and RL's policy gradient uses the unpenalised log-probs, so a penalty makes
    # updates slightly off-policy (TRL does the same). Off by default.
    repetition_penalty: float = Field(1.0, ge=1.0, le=2.0, description=(
        "in-process models: > 1.0 lowers the score of tokens already in the prompt or output (1.0: off; "
        "1.1-1.3 usual)"))
    no_repeat_ngram_size: int = Field(0, ge=0, le=64, description="in-process models: no n-gram of this size "
                                                                  "occurs twice in an output (0: off)")

    @model_validator(mode="after")
    def _repetition_controls_are_in_process(self) -> "LMConfig":
        # An HTTP model never sees these: say so rather than ignore them.
        if self.backend == "litellm" and (self.repetition_penalty != 1.0 or self.no_repeat_ngram_size):
            raise ValueError("repetition_penalty / no_repeat_ngram_size apply to in-process models (backend: "
                             "transformers); for a server that takes them (e.g. vLLM) put them in extra")
        return self

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

    @field_validator("api_base")
    @classmethod
    def _api_base_is_a_url(cls, value: str | None) -> str | None:
        # Fail at config time, not after the client's retries ("not a url" would be tried as a host).
        if value is None:
            return value
        import urllib.parse

        try:
            parts = urllib.parse.urlsplit(value.strip())
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL ({redact_url(value)!r}); expected e.g. http://host:8000/v1")
        return value.strip()

    @field_validator("api_key_env")
    @classmethod
    def _api_key_env_is_a_name(cls, value: str | None) -> str | None:
        if value is not None and _looks_like_a_key(value):
            # Never echo it: it is most likely the key itself.
            raise ValueError("must be the NAME of an environment variable that holds the key (e.g. OPENAI_API_KEY), "
                             "not the key itself; the value given is not shown")
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
    model: str = "HuggingFaceTB/SmolLM2-135M-Instruct"
    backend: Literal["litellm", "transformers"] = "transformers"
    temperature: float = Field(0.0, ge=0.0)
    max_tokens: int = Field(128, gt=0)


class LargeLMConfig(LMConfig):
    model: str = "openai/gpt-4o-mini"
    # Room for CoT prompting's reasoning; answers themselves are short spans.
    max_tokens: int = Field(512, gt=0)


class DataConfig(_Section):
    dataset: Literal["hotpotqa", "2wiki"] = "hotpotqa"
    train: str | None = None
    dev: str | None = None
    train_limit: int | None = Field(None, gt=0)
    dev_limit: int | None = Field(None, gt=0)
    hub_id: str | None = Field(None, description="override the dataset's hub repository")
    max_context_tokens: int | None = Field(
        1024, gt=0, description="context budget, counted with the small LM's tokenizer; null keeps all"
    )
    skip_bad: bool = False


class EvalConfig(_Section):
    methods: list[Literal["standard", "cot", "guided"]] = ["standard", "cot", "guided"]
    num_samples: int = Field(1, ge=1, description="rationales per question; >1 is self-consistency voting")
    sample_temperature: float = Field(0.7, ge=0.0)
    select: str = Field("vote", description="with num_samples > 1: 'vote' (an answer per rationale, majority "
                        "vote) or 'quality' / 'quality:<aspect>' (one answer, from the best-scored rationale)")
    concurrency: int = Field(8, ge=1)
    out: str = "runs/eval"

    @field_validator("select")
    @classmethod
    def _known_selection(cls, value: str) -> str:
        parse_select(value)  # its ValueError names the choices; pydantic adds the key
        return value


class _TrainingSection(_Section):
    """What the KD and RL sections share: LoRA and settings passed through to the trainer."""

    lora: bool = False
    lora_r: int = Field(16, gt=0)
    lora_alpha: int = Field(32, gt=0)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    lora_target_modules: list[str] | str = "all-linear"
    trainer_args: dict[str, Any] = Field(default_factory=dict, description=(
        "other trainer settings merged over lmcot's: SFTConfig (KD, causal) or Seq2SeqTrainingArguments (KD, "
        "encoder-decoder); GRPOConfig / RLOOConfig (RL, TRL algorithms only)"))

    _no_secrets_in_trainer_args = field_validator("trainer_args")(_no_secrets)


class KDConfig(_TrainingSection):
    teacher: LMConfig | None = Field(None, description="defaults to large_lm")
    num_samples: int = Field(4, ge=1, description="teacher rationales per training question")
    temperature: float = Field(0.7, ge=0.0)
    keep_metric: Literal["em", "f1"] = "em"
    min_score: float = Field(1.0, ge=0.0, le=1.0)
    keep: Literal["best", "all"] = "best"
    concurrency: int = Field(8, ge=1)
    # full: distil the teacher's rationales as written, answer statement included. evidence: drop every
    # answer statement ("So the answer is X", lmcot.metrics.stated_answer) from them and prompt the student
    # (at training and inference alike) for reasoning and evidence without a final answer, leaving the
    # answering to the large LM. A small student's stated conclusions are often wrong and a reader follows
    # them; evidence-only rationales cannot mislead it that way, but they leak no answer either.
    rationale_form: Literal["full", "evidence"] = Field(
        "full", description="full: the teacher's rationales as written; evidence: without their answer statements, "
                            "and the student prompted for reasoning and evidence without a final answer")
    # training
    max_steps: int | None = Field(None, gt=0, description="wins over num_train_epochs when set")
    num_train_epochs: float = Field(3.0, gt=0)
    learning_rate: float = Field(5e-5, gt=0, le=1.0)
    batch_size: int = Field(8, gt=0)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_length: int = Field(2048, gt=0, description="prompt + rationale tokens per training example")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    save_steps: int = Field(200, gt=0)
    logging_steps: int = Field(10, gt=0)
    report_to: list[str] = ["tensorboard"]
    seed: int = Field(42, ge=0)


REWARDS = (*ASPECTS, "answer_f1")

# One weight per reward, each 1.0 by default; the aspects come from the one table (lmcot.aspects).
# Every reward is "higher is better": a negative weight would train against the aspect.
RewardWeights = create_model("RewardWeights", __base__=_Section,
                             **{name: (float, Field(1.0, ge=0.0)) for name in REWARDS})


class RationaleMetricsConfig(_Section):
    backends: dict[str, Literal["judge", "cheap"]] = Field(
        default_factory=lambda: {a: "cheap" for a in ASPECTS}, description="per aspect: judge LM or cheap scorer"
    )
    judge: LMConfig | None = Field(None, description="defaults to large_lm")
    judge_samples: int = Field(5, ge=1, description="samples per question when no log-probabilities come back")
    concurrency: int = Field(8, ge=1)
    reference_lm: str | None = Field(None, description="causal LM for perplexity (fluency/naturalness); default small_lm; "
                                                           "'lexical': the lexical proxy")
    embedding_model: str | None = Field(None, description="sentence-embedding model; default a lexical fallback")

    @field_validator("backends")
    @classmethod
    def _known_aspects(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(ASPECTS))
        if unknown:
            raise ValueError(f"unknown aspect(s) {unknown}; aspects are {list(ASPECTS)}")
        return {**{a: "cheap" for a in ASPECTS}, **value}


class RLConfig(_TrainingSection):
    algorithm: Literal["auto", "grpo", "rloo", "seq2seq_rloo", "seq2seq_ppo"] = Field(
        "auto", description="auto: grpo for causal students, seq2seq_rloo for encoder-decoder"
    )
    max_steps: int = Field(100, gt=0)
    num_generations: int = Field(4, ge=2)
    batch_size: int = Field(8, gt=0, description="completions per step (TRL's convention), rounded up to a multiple of "
                                           "num_generations; the seq2seq loop samples ceil(batch_size / num_generations) prompts")
    learning_rate: float = Field(1e-5, gt=0, le=1.0)
    kl: float = Field(0.05, ge=0.0, description="KL coefficient to the KD checkpoint")
    clip_eps: float = Field(0.2, gt=0.0, lt=1.0, description="PPO-clip range (seq2seq_ppo)")
    ppo_epochs: int = Field(2, ge=1, description="inner epochs per batch (seq2seq_ppo)")
    temperature: float = Field(1.0, gt=0.0, description="sampling temperature of RL rollouts (must sample)")
    max_new_tokens: int = Field(128, gt=0)
    weights: RewardWeights = Field(default_factory=RewardWeights)
    aggregation: Literal["weighted_sum", "normalize_sum"] = "weighted_sum"
    # One bound for every reward call of a step (large-LM answers and judge calls of all rollouts, in
    # flight together): batch_size x (judged aspects + 1) calls go out in one round trip. Above what the
    # provider allows, calls meet rate limits (429) and wait out retries; the cap keeps a typo from
    # opening thousands of connections.
    reward_concurrency: int = Field(32, ge=1, le=1024, description=(
        "reward calls in flight at once per RL step (answers + judge, all rollouts); size it for the "
        "provider's rate limit. batch_size x (judged aspects + 1) makes a step one round trip"))
    save_steps: int = Field(50, gt=0)
    logging_steps: int = Field(1, gt=0)
    report_to: list[str] = ["tensorboard"]
    seed: int = Field(42, ge=0)
    train_limit: int | None = Field(None, gt=0)


STUDENTS = ("untrained", "kd", "kd_rl")
RL_VARIANTS = ("both", "quality", "answer")


class ExperimentConfig(_Section):
    """The grid of ``lmcot experiment`` (the paper's three analyses on one dev set, one large LM)."""

    baselines: list[Literal["standard", "cot", "cot_sc"]] = ["standard", "cot", "cot_sc"]
    students: list[Literal["untrained", "kd", "kd_rl"]] = list(STUDENTS)
    self_consistency: bool = Field(True, description="also run each guided student with k sampled rationales + vote")
    num_samples: int = Field(5, ge=2, description="k: samples for self-consistency and the quality analysis")
    sample_temperature: float = Field(0.7, gt=0.0)
    rl_ablation: list[Literal["both", "quality", "answer"]] = Field(
        default_factory=lambda: list(RL_VARIANTS),
        description="RL reward sets, each from the same KD checkpoint: rl.weights as set (both), aspects only "
                    "(quality: answer_f1=0), answer F1 only (answer: every aspect 0)")
    quality_analysis: bool = True
    quality_student: Literal["untrained", "kd", "kd_rl"] = "kd_rl"
    thresholds: list[float] = Field(default_factory=lambda: [0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
                                    description="mean-aspect thresholds for accuracy vs rationale quality")
    bootstrap_samples: int = Field(1000, ge=100)
    seed: int = 0
    dev_limit: int | None = Field(None, ge=1, description="first N dev questions (default data.dev_limit)")
    stand_in_note: str | None = Field(None, description="printed at the top of the report when the models are "
                                                         "stand-ins (scripted large LM, random-init student)")
    # Rows a scripted stand-in sets rather than measures (e.g. its fixed standard / CoT shares): the report's
    # tables and plots mark them "[scripted]" so no one reads them as measurements.
    scripted_methods: list[str] = Field(default_factory=list, description="method rows (standard, cot, cot_sc, "
                                        "guided_...) whose numbers a scripted stand-in sets: marked in tables and plots")
    # Each extra form costs one more KD run and two greedy rows (its untrained and KD student).
    rationale_forms: list[Literal["full", "evidence"]] = Field(
        default_factory=list, description="rationale forms to run beside kd.rationale_form: each adds an untrained "
                                          "and a KD student of that form (rows guided_untrained_<form>, guided_kd_<form>)")

    @field_validator("thresholds")
    @classmethod
    def _thresholds_in_range(cls, value: list[float]) -> list[float]:
        if not value or any(not 0.0 <= t <= 1.0 for t in value):
            raise ValueError("thresholds must be a non-empty list of numbers in [0, 1] (aspect scores are 0-1)")
        return sorted(value)


class LMCoTConfig(_Section):
    small_lm: SmallLMConfig = Field(default_factory=SmallLMConfig)
    large_lm: LargeLMConfig = Field(default_factory=LargeLMConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    kd: KDConfig = Field(default_factory=KDConfig)
    rl: RLConfig = Field(default_factory=RLConfig)
    rationale_metrics: RationaleMetricsConfig = Field(default_factory=RationaleMetricsConfig)
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)
    stages: list[Literal["kd", "rl"]] = ["kd"]
    cache_dir: str = Field("~/.cache/lmcot", description="disk cache of LM calls (DSPy's cache, under cache_dir/dspy)")

    def teacher(self) -> LMConfig:
        return self.kd.teacher or self.large_lm

    def judge(self) -> LMConfig:
        return self.rationale_metrics.judge or self.large_lm

    def to_public_dict(self) -> dict[str, Any]:
        """The resolved config as printed and saved beside results. Keys come from the environment,
        but a URL may still carry one (``https://user:KEY@host``, ``?api-key=KEY``): every string is
        redacted here, the one place all printing and saving goes through."""
        return redact_tree(self.model_dump(mode="json"))


def _parse_override(item: str, position: int = 1) -> tuple[list[str], Any]:
    if "=" not in item:
        # Not echoed: a value pasted without its key (an API key, say) would end up in the log.
        raise ConfigError(f"--set number {position} has no '=': expected key.path=value "
                         f"({len(item)} characters, not shown)")
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
    for position, item in enumerate(overrides, 1):
        path, value = _parse_override(item, position)
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
