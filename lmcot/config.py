"""One pydantic config drives the Python API, the YAML files and the CLI's ``--set key.path=value``.

    cfg = load_config("configs/quickstart.yaml", overrides=["large_lm.temperature=0.2"])

Top-level sections: ``small_lm``, ``large_lm``, ``data``, ``eval``, ``kd``, ``rl``, ``rationale_metrics``, ``experiment``.
Secrets never live here: ``api_key_env`` names the environment variable that holds the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, create_model, field_validator, model_validator

from lmcot.answer_text import normalize_label
from lmcot.aspects import ASPECTS, parse_select
# The building blocks and the model section live in their own files; they are part of this module's face.
from lmcot.config_types import ConfigError, Float, Int, Section, keys_beside, no_secrets, read_yaml, takes_text
from lmcot.lm_config import LargeLMConfig, LMConfig, SmallLMConfig

__all__ = ["ASPECTS", "ConfigError", "DataConfig", "EvalConfig", "ExperimentConfig", "KDConfig", "LMCoTConfig",
           "LMConfig", "LargeLMConfig", "REWARDS", "RLConfig", "RationaleMetricsConfig", "SmallLMConfig",
           "apply_overrides", "config_changes", "config_from_dict", "load_config"]


# Trainer settings (TrainingArguments, TRL configs) that say where files are read or written.
_TRAINER_PLACES = frozenset({"output_dir", "logging_dir", "resume_from_checkpoint", "overwrite_output_dir"})


FIELDS = ("id", "question", "context", "answer", "rationale")  # lmcot's names for a record's columns


class DataConfig(Section):
    dataset: Literal["hotpotqa", "2wiki", "custom"] = Field("hotpotqa", description=(
        "hotpotqa / 2wiki: the benchmarks in their published layouts; custom: any question-answer task, read "
        "with data.fields (JSONL, JSON list, CSV, Parquet file, or a hub dataset with data.hub_id)"))
    train: str | None = None
    dev: str | None = None
    train_limit: Int | None = Field(None, gt=0)
    dev_limit: Int | None = Field(None, gt=0)
    hub_id: str | None = Field(None, description="override the dataset's hub repository (custom: the hub dataset "
                                                 "whose splits data.train / data.dev name)")
    hub_config: str | None = Field(None, description="custom: the hub dataset's configuration (e.g. 'main')")
    max_context_tokens: Int | None = Field(
        1024, gt=0, description="context budget, counted with the small LM's tokenizer; null keeps all"
    )
    skip_bad: bool = False
    # custom tasks
    fields: dict[str, str] = Field(default_factory=dict, description=(
        "custom: lmcot's name -> the column that holds it, for id, question, context, answer, rationale "
        "(default: the same name; only question and answer must exist)"))
    answer_regex: str | None = Field(None, description=(
        "custom: a regular expression whose first group is the answer inside the answer column (GSM8K: "
        "'####\\s*(.+)$'); when fields.rationale names the same column, the rationale is the text before the match"))
    # What counts as the same answer. span: the official HotpotQA/2Wiki EM/F1 (partial credit for overlap);
    # number: numeric equality, so "$18.00" scores like "18" (no partial credit: F1 = EM); label: a closed set
    # of classes, where partial credit would be meaningless and an answer outside the set is counted.
    answer_type: Literal["span", "number", "label"] = Field("span", description=(
        "span: official EM/F1; number: the number in the answer vs the gold (relative tolerance 1e-6, F1 = EM); "
        "label: case-insensitive match without punctuation (F1 = EM)"))
    labels: list[str] | None = Field(None, description=(
        "answer_type label: the allowed labels; a prediction outside them is wrong and counted as off_label"))

    @field_validator("labels", mode="before")
    @classmethod
    def _yaml_yes_no_are_labels(cls, value: Any) -> Any:
        # YAML 1.1 reads `labels: [yes, no]` as booleans: take them back as the labels yes / no.
        if isinstance(value, list):
            return [("yes" if v else "no") if isinstance(v, bool) else str(v) if isinstance(v, (int, float)) else v
                    for v in value]
        return value

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(FIELDS))
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}; lmcot's fields are {', '.join(FIELDS)}")
        empty = sorted(k for k, v in value.items() if not str(v).strip())
        if empty:
            raise ValueError(f"field(s) {empty} map to an empty column name")
        return value

    @field_validator("answer_regex")
    @classmethod
    def _regex_with_a_group(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression ({exc})") from None
        if pattern.groups < 1:
            raise ValueError("needs a group, e.g. '####\\s*(.+)$': its first group is the answer")
        return value

    @model_validator(mode="after")
    def _custom_keys_need_custom(self) -> "DataConfig":
        custom = {"fields": self.fields, "answer_regex": self.answer_regex, "hub_config": self.hub_config}
        used = sorted(k for k, v in custom.items() if v)
        if used and self.dataset != "custom":
            raise ValueError(f"data.{used[0]} applies to data.dataset: custom (the built-in {self.dataset} loader "
                             "reads its published layout)")
        rationale, answer = self.fields.get("rationale"), self.fields.get("answer", "answer")
        if rationale is not None and rationale == answer and not self.answer_regex:
            raise ValueError(f"fields.rationale and fields.answer both name column {answer!r}: set data.answer_regex "
                             "to say where the answer is inside it")
        if self.labels is not None:
            if self.answer_type != "label":
                raise ValueError("data.labels applies to answer_type: label")
            if not self.labels:
                raise ValueError("data.labels is empty")
            seen: dict[str, str] = {}
            for label in self.labels:  # labels are compared in their normal form: two that share it are one
                key = normalize_label(label)
                if not key:
                    raise ValueError(f"data.labels: {label!r} is no label (nothing is left to compare)")
                if key in seen:
                    raise ValueError(f"data.labels: {seen[key]!r} and {label!r} are the same label once case, "
                                     "punctuation and spacing are set aside")
                seen[key] = label
        return self


class EvalConfig(Section):
    methods: list[Literal["standard", "cot", "guided"]] = Field(["standard", "cot", "guided"], min_length=1)
    num_samples: Int = Field(1, ge=1, description="rationales per question; >1 is self-consistency voting")
    sample_temperature: Float = Field(0.7, ge=0.0)
    select: str = Field("vote", description="with num_samples > 1: 'vote' (an answer per rationale, majority "
                        "vote) or 'quality' / 'quality:<aspect>' (one answer, from the best-scored rationale)")
    concurrency: Int = Field(8, ge=1)
    out: str = "runs/eval"

    @field_validator("select")
    @classmethod
    def _known_selection(cls, value: str) -> str:
        parse_select(value)  # its ValueError names the choices; pydantic adds the key
        return value


class _TrainingSection(Section):
    """What the KD and RL sections share: LoRA and settings passed through to the trainer."""

    lora: bool = False
    lora_r: Int = Field(16, gt=0)
    lora_alpha: Int = Field(32, gt=0)
    lora_dropout: Float = Field(0.0, ge=0.0, lt=1.0)
    lora_target_modules: list[str] | str = "all-linear"
    trainer_args: dict[str, Any] = Field(default_factory=dict, description=(
        "other trainer settings merged over lmcot's: SFTConfig (KD, causal) or Seq2SeqTrainingArguments (KD, "
        "encoder-decoder); GRPOConfig / RLOOConfig (RL, TRL algorithms only)"))

    _no_secrets_in_trainer_args = field_validator("trainer_args")(no_secrets)

    @field_validator("lora_target_modules")
    @classmethod
    def _module_names_listed_with_commas(cls, value: list[str] | str) -> list[str] | str:
        # "q_proj" or "q_proj,v_proj" (as --set writes a list) are module names; peft takes a string as one
        # regex over whole module paths, which such a name never matches, and fails only when training
        # starts, after the teacher's calls. A string with other characters stays a regex ("all-linear" too).
        if isinstance(value, str) and re.fullmatch(r"[\w.]+(?:\s*,\s*[\w.]+)*", value.strip()):
            return [name.strip() for name in value.split(",")]
        return value

    @field_validator("trainer_args")
    @classmethod
    def _lmcot_places_the_files(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Where checkpoints, logs and models go is lmcot's (resume, cleanup, the program folder): a
        # trainer setting that moves them left checkpoints in /etc; one that uploads sends them away.
        for name in sorted(map(str, value)):
            if name in _TRAINER_PLACES or name.endswith(("_dir", "_path")):
                raise ValueError(f"{name}: lmcot decides where training reads and writes (OUT/<stage>/, "
                                 "OUT/logs/<stage>/, resuming from its own checkpoints); remove this setting")
            if name == "push_to_hub" or name.startswith("hub_") or "_hub_" in name:
                raise ValueError(f"{name}: lmcot never uploads from training; push the finished OUT/small_lm "
                                 "yourself (e.g. huggingface-cli upload); remove this setting")
        return value


class KDConfig(_TrainingSection):
    teacher: LMConfig | None = Field(None, description="defaults to large_lm")
    num_samples: Int = Field(4, ge=1, description="teacher rationales per training question")
    temperature: Float = Field(0.7, ge=0.0)
    keep_metric: Literal["em", "f1", "metric"] = Field("em", description=(
        "what a teacher rationale's answer must score >= min_score on: em, f1 (under data.answer_type) or metric "
        "(the user metric)"))
    # Where KD's rationales come from. teacher: the large LM's (paid calls, any task); dataset: the task's own
    # human rationales (free, and what Distilling step-by-step / Fine-tune-CoT use for math and NLI; needs
    # data.fields.rationale); both: the two together (more, and more varied, training examples).
    source: Literal["teacher", "dataset", "both"] = Field("teacher", description=(
        "teacher: the large LM's kept rationales; dataset: the task's own rationales (no teacher call); both"))
    min_score: Float = Field(1.0, ge=0.0, le=1.0)
    keep: Literal["best", "all"] = "best"
    concurrency: Int = Field(8, ge=1)
    # evidence: a small student's stated conclusions are often wrong and the large LM follows them; without
    # answer statements (lmcot.metrics.stated_answer), in training and at inference, it cannot be misled so.
    rationale_form: Literal["full", "evidence"] = Field(
        "full", description="full: the teacher's rationales as written; evidence: without their answer statements, "
                            "and the student prompted for reasoning and evidence without a final answer")
    # training
    max_steps: Int | None = Field(None, gt=0, description="wins over num_train_epochs when set")
    num_train_epochs: Float = Field(3.0, gt=0)
    learning_rate: Float = Field(5e-5, gt=0, le=1.0)
    batch_size: Int = Field(8, gt=0)
    gradient_accumulation_steps: Int = Field(1, ge=1)
    max_length: Int = Field(2048, gt=0, description="prompt + rationale tokens per training example")
    lora_dropout: Float = Field(0.05, ge=0.0, lt=1.0)
    save_steps: Int = Field(200, gt=0)
    logging_steps: Int = Field(10, gt=0)
    report_to: list[str] = ["tensorboard"]
    seed: Int = Field(42, ge=0)


REWARDS = (*ASPECTS, "answer_f1")

# One weight per reward, each 1.0 by default; the aspects come from the one table (lmcot.aspects).
# Every reward is "higher is better": a negative weight would train against the aspect.
RewardWeights = create_model("RewardWeights", __base__=Section,
                             **{name: (Float, Field(1.0, ge=0.0)) for name in REWARDS})


class RationaleMetricsConfig(Section):
    backends: dict[str, Literal["judge", "cheap"]] = Field(
        default_factory=lambda: {a: "cheap" for a in ASPECTS}, description="per aspect: judge LM or cheap scorer"
    )
    judge: LMConfig | None = Field(None, description="defaults to large_lm")
    judge_samples: Int = Field(5, ge=1, description="samples per question when no log-probabilities come back")
    concurrency: Int = Field(8, ge=1)
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
    max_steps: Int = Field(100, gt=0)
    num_generations: Int = Field(4, ge=2)
    batch_size: Int = Field(8, gt=0, description="completions per step (TRL's convention), rounded up to a multiple of "
                                           "num_generations; the seq2seq loop samples ceil(batch_size / num_generations) prompts")
    learning_rate: Float = Field(1e-5, gt=0, le=1.0)
    kl: Float = Field(0.05, ge=0.0, description="KL coefficient to the KD checkpoint")
    clip_eps: Float = Field(0.2, gt=0.0, lt=1.0, description="PPO-clip range (seq2seq_ppo)")
    ppo_epochs: Int = Field(2, ge=1, description="inner epochs per batch (seq2seq_ppo)")
    temperature: Float = Field(1.0, gt=0.0, description="sampling temperature of RL rollouts (must sample)")
    max_new_tokens: Int = Field(128, gt=0)
    weights: RewardWeights = Field(default_factory=RewardWeights)
    aggregation: Literal["weighted_sum", "normalize_sum"] = "weighted_sum"
    # One bound for every reward call of a step (large-LM answers and judge calls of all rollouts, in
    # flight together): batch_size x (judged aspects + 1) calls go out in one round trip. Above what the
    # provider allows, calls meet rate limits (429) and wait out retries; the cap keeps a typo from
    # opening thousands of connections.
    reward_concurrency: Int = Field(32, ge=1, le=1024, description=(
        "reward calls in flight at once per RL step (answers + judge, all rollouts); size it for the "
        "provider's rate limit. batch_size x (judged aspects + 1) makes a step one round trip"))
    save_steps: Int = Field(50, gt=0)
    logging_steps: Int = Field(1, gt=0)
    report_to: list[str] = ["tensorboard"]
    seed: Int = Field(42, ge=0)
    train_limit: Int | None = Field(None, gt=0)


STUDENTS = ("untrained", "kd", "kd_rl")
RL_VARIANTS = ("both", "quality", "answer")


class ExperimentConfig(Section):
    """The grid of ``lmcot experiment`` (the paper's three analyses on one dev set, one large LM)."""

    baselines: list[Literal["standard", "cot", "cot_sc"]] = ["standard", "cot", "cot_sc"]
    students: list[Literal["untrained", "kd", "kd_rl"]] = list(STUDENTS)
    self_consistency: bool = Field(True, description="also run each guided student with k sampled rationales + vote")
    num_samples: Int = Field(5, ge=2, description="k: samples for self-consistency and the quality analysis")
    sample_temperature: Float = Field(0.7, gt=0.0)
    rl_ablation: list[Literal["both", "quality", "answer"]] = Field(
        default_factory=lambda: list(RL_VARIANTS),
        description="RL reward sets, each from the same KD checkpoint: rl.weights as set (both), aspects only "
                    "(quality: answer_f1=0), answer F1 only (answer: every aspect 0)")
    quality_analysis: bool = True
    quality_student: Literal["untrained", "kd", "kd_rl"] = "kd_rl"
    thresholds: list[Float] = Field(default_factory=lambda: [0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
                                    description="mean-aspect thresholds for accuracy vs rationale quality")
    bootstrap_samples: Int = Field(1000, ge=100)
    seed: Int = 0
    dev_limit: Int | None = Field(None, ge=1, description="first N dev questions (default data.dev_limit)")
    stand_in_note: str | None = Field(None, description="printed at the top of the report when the models are "
                                                         "stand-ins (scripted large LM, random-init student)")
    # Training is paid once, answers per question: the report's cost per correct answer including
    # training spreads the one-off cost over this many questions. Few questions make training dominate
    # (a one-off study); many hide it (a deployed reader). Set it to the traffic you expect.
    amortize_over: int = Field(10_000, ge=1, description="questions the trained student is expected to answer: the "
                                                          "one-off training cost is spread over them in the report")
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


class LMCoTConfig(Section):
    small_lm: SmallLMConfig = Field(default_factory=SmallLMConfig)
    large_lm: LargeLMConfig = Field(default_factory=LargeLMConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    kd: KDConfig = Field(default_factory=KDConfig)
    rl: RLConfig = Field(default_factory=RLConfig)
    rationale_metrics: RationaleMetricsConfig = Field(default_factory=RationaleMetricsConfig)
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)
    stages: list[Literal["kd", "rl"]] = ["kd"]
    # Code, so it comes only from the user's own config or command line (a saved program keeps its name only).
    metric: str | None = Field(None, description=(
        "a user metric 'package.module:function' or 'path/to/file.py:function' with DSPy's signature "
        "metric(example, prediction, trace=None) -> float | bool: reported beside em/f1, KD's keep filter with "
        "kd.keep_metric: metric, and RL's answer reward in place of F1"))
    cache_dir: str = Field("~/.cache/lmcot", description=(
        "disk cache of LM calls: lmcot's reply cache, JSON rows in cache_dir/replies/replies.sqlite3 (safe to share "
        "between processes)"))

    @field_validator("metric")
    @classmethod
    def _metric_names_a_function(cls, value: str | None) -> str | None:
        # Only the shape here; importing it (code) waits until a command runs it (lmcot.metrics.user_metric).
        if value is not None:
            where, _, name = value.rpartition(":")
            if not where.strip() or not name.strip().isidentifier():
                raise ValueError(f"{value!r}: expected 'package.module:function' or 'path/to/file.py:function'")
        return value

    def lm_roles(self) -> dict[str, LMConfig | None]:
        """Every LM section by its config key (its role), the unset optional ones as None: how checks,
        warnings and resolved sources name an LM."""
        return {"small_lm": self.small_lm, "large_lm": self.large_lm, "kd.teacher": self.kd.teacher,
                "rationale_metrics.judge": self.rationale_metrics.judge}

    def teacher(self) -> LMConfig:
        return self.kd.teacher or self.large_lm

    def judge(self) -> LMConfig:
        return self.rationale_metrics.judge or self.large_lm

    def judge_role(self) -> str:
        """The config key of :meth:`judge`'s section (how checks and messages name it)."""
        return "rationale_metrics.judge" if self.rationale_metrics.judge else "large_lm"

    def to_public_dict(self) -> dict[str, Any]:
        """The resolved config as printed and saved beside results. Keys come from the environment and
        ``extra`` refuses secrets; the one value that may carry a credential, ``api_base``, is a
        :class:`~lmcot.redact.SecretURL` whose JSON form is already redacted."""
        return self.model_dump(mode="json")


def _parse_override(item: str, position: int = 1) -> tuple[list[str], Any]:
    if "=" not in item:
        if re.fullmatch(r"[a-z_]+(?:\.[a-z0-9_]+)*", item.strip()) and item.split(".")[0] in LMCoTConfig.model_fields:
            raise ConfigError(f"--set {item.strip()}: no '=' and no value: expected {item.strip()}=value")
        # Anything else is not echoed: a value pasted without its key (an API key, say) would end up in the log.
        raise ConfigError(f"--set number {position} has no '=': expected key.path=value "
                         f"({len(item)} characters, not shown)")
    key, raw = item.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"--set {item!r}: empty key")
    # YAML parsing gives numbers, booleans, null, lists (``[kd, rl]``) and mappings (``{a: b}``) their types.
    try:
        value = read_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    text = raw.strip()
    if isinstance(value, dict) and not text.startswith("{") and takes_text(LMCoTConfig, path):
        value = text  # "Answer: (.+)" for a text setting is a value with a colon in it, not a mapping
    elif "#" in text and text[:1] not in "'\"[{" and value != text:
        value = text  # a command line has no comments: "#..." or "... #..." is part of the value (a regex)
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


def _format_validation_error(err: ValidationError, source: str, set_keys: tuple[tuple[str, ...], ...] = ()) -> str:
    first = err.errors()[0]
    loc = tuple(str(p) for p in first["loc"])
    key = ".".join(loc) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        import difflib

        msg = "unknown key"
        near = difflib.get_close_matches(loc[-1], keys_beside(LMCoTConfig, loc), n=1, cutoff=0.75) if loc else []
        if near:
            msg += f"; did you mean {'.'.join((*loc[:-1], near[0]))}?"
    # A value given with --set is named as such, not blamed on the YAML file ("config" blames nothing).
    # An unknown key may be a whole section that --set named ("evaluation.limit=3" -> "evaluation").
    named = [k for k in set_keys if loc[:len(k)] == k or (first["type"] == "extra_forbidden" and k[:len(loc)] == loc)]
    if source != "config" and named:
        source = "--set"
    extra = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{source}: {key}: {msg}{extra}"


def config_from_dict(data: dict[str, Any], source: str = "config", overrides: list[str] | None = None) -> LMCoTConfig:
    """Validate ``data``; ``overrides``: the ``--set`` items applied to it, so an error in one is named
    as coming from ``--set``, not from ``source``."""
    try:
        return LMCoTConfig.model_validate(data)
    except ValidationError as err:
        set_keys = tuple(tuple(_parse_override(item)[0]) for item in overrides or [] if "=" in item)
        raise ConfigError(_format_validation_error(err, source, set_keys)) from None


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
            loaded = read_yaml(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            line = p.read_bytes()[: exc.start].count(b"\n") + 1
            raise ConfigError(f"{source}: line {line}: not UTF-8 text; save the file as UTF-8") from None
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
    return config_from_dict(data, source, overrides)


def config_changes(cfg: LMCoTConfig) -> dict[str, Any]:
    """``{"section.key": value}`` for every setting of ``cfg`` that differs from the defaults (public
    form: secrets redacted), in the config's order: what a run changed, without the ~150 lines of
    the whole config. A section that is unset by default (``kd.teacher``) lists each of its keys."""
    def flat(value: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(value, dict) and value:
            out: dict[str, Any] = {}
            for k, v in value.items():
                out.update(flat(v, f"{prefix}{k}."))
            return out
        return {prefix[:-1]: value}

    now, default = flat(cfg.to_public_dict()), flat(LMCoTConfig().to_public_dict())
    return {k: v for k, v in now.items() if k not in default or default[k] != v}
