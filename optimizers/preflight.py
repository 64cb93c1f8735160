"""What a compile checks before its first paid call: the student's generation lengths against its
context, the trainer configs of the stages built exactly as training will build them (``kd`` /
``rl.trainer_args`` merged over lmcot's settings), the scorer's models for RL, and free disk space.

    preflight_training(config, config.small_lm, out, source=sources["small_lm"])   # before any call
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lmcot.config import LMCoTConfig
from lmcot.optimizers.distill import kd_trainer_config
from lmcot.optimizers.rl_grpo import rl_trainer_config
from lmcot.optimizers.training import choose_algorithm

if TYPE_CHECKING:
    from lmcot.model_loading import ModelSource


def preflight_training(config: LMCoTConfig, student, out: str | Path, source: ModelSource | None = None) -> None:
    """What training will need, checked before the first paid call: the student's generation lengths
    against its context (``small_lm.max_tokens``, ``rl.max_new_tokens``), the trainer configs of the
    stages as they will be built (``kd/rl.trainer_args`` merged), and, for RL, the scorer's models
    (``rationale_metrics.reference_lm`` / ``embedding_model``). ``student``: the small LM's settings;
    ``source``: its model as already resolved (the checks' or the LM's own), not resolved again."""
    from lmcot.model_loading import check_generation_bounds, check_model_source

    if source is None or not source.is_for(student):
        source = check_model_source(student.model, "small_lm.model", revision=student.revision,
                                    trust_remote_code=student.trust_remote_code)
    model_config = source.config
    bounds = {"rl.max_new_tokens": config.rl.max_new_tokens} if "rl" in config.stages else {}
    check_generation_bounds(student, "small_lm", bounds, config=model_config)
    check_all_trainer_args(config, bool(getattr(model_config, "is_encoder_decoder", False)), out=out, student=student)
    if "rl" in config.stages:
        from lmcot.metrics.rationale import check_scorer_models

        check_scorer_models(config.rationale_metrics)
    if config.stages:
        from lmcot.preflight import check_free_space, model_bytes

        # One stage's resume checkpoint (weights + Adam's two moments, 3x) while every stage's model (1x
        # each) is kept: finished stages remove their checkpoints. A floor: two checkpoints are kept.
        need = (3 + len(config.stages)) * model_bytes(student.model, student.revision)
        check_free_space(out, config.cache_dir, need)


def check_report_to(report_to: list[str], key: str) -> None:
    """Every tracker in ``report_to`` is one transformers knows (else the trainer fails at start)."""
    from transformers.integrations import get_reporting_integration_callbacks

    from lmcot.config import ConfigError

    try:
        get_reporting_integration_callbacks([r for r in report_to if r not in ("none", "all")])
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"{key}={report_to}: {' '.join(str(exc).split())[:200]}") from None


def check_all_trainer_args(config, encoder_decoder: bool, out: str | Path | None = None, student=None) -> None:
    """Before any paid call: the trainer configs of the stages in ``config.stages`` are built as
    training will build them (lmcot's settings with ``kd.trainer_args`` / ``rl.trainer_args`` merged
    over them), so a bad setting fails now naming its key, not after the teacher was paid.
    ``student`` is the small LM's settings (default ``config.small_lm``); nothing is written."""
    from lmcot.config import ConfigError

    student = student if student is not None else config.small_lm
    out = Path(out if out is not None else "lmcot-out")  # building a config creates no folder
    if "kd" in config.stages:
        if config.kd.max_length <= student.max_tokens:
            raise ConfigError(f"kd.max_length={config.kd.max_length}: must be more than small_lm.max_tokens="
                              f"{student.max_tokens} (a training example holds the prompt and a rationale of up "
                              "to small_lm.max_tokens tokens)")
        kd_trainer_config(config.kd, student, out / "kd" / "checkpoints", encoder_decoder)
        check_report_to(config.kd.report_to, "kd.report_to")
    if "rl" in config.stages:
        algorithm = choose_algorithm(config.rl.algorithm, encoder_decoder)
        if algorithm in ("grpo", "rloo"):
            from lmcot.model_loading import pick_device

            rl_trainer_config(algorithm, config.rl, student, out / "rl", pick_device(student.device))
        elif config.rl.trainer_args:
            raise ConfigError(f"rl.trainer_args: {algorithm} is lmcot's own loop, not a TRL trainer; "
                              "trainer_args apply to rl.algorithm grpo and rloo")
        check_report_to(config.rl.report_to, "rl.report_to")
