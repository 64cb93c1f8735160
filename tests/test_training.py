"""What the trainers share: kd/rl.trainer_args pass through to TRL / transformers configs (unknown
keys are one-line config errors, before any paid call), one LoRA builder, one checkpoint finder."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmcot.config import ConfigError, config_from_dict


def test_kd_trainer_args_reach_sft_config_and_override_lmcot_defaults(tmp_path):
    from lmcot.optimizers.distill import _common_args
    from lmcot.optimizers.training import trainer_config
    from trl import SFTConfig

    cfg = config_from_dict({"kd": {"trainer_args": {"warmup_steps": 3, "save_total_limit": 5}}})
    args = _common_args(cfg.kd, tmp_path, cfg.small_lm.model_copy(update={"device": "cpu"}))
    sft = trainer_config(SFTConfig, args, cfg.kd.trainer_args, "kd.trainer_args")
    assert sft.warmup_steps == 3 and sft.save_total_limit == 5 and sft.learning_rate == cfg.kd.learning_rate


def test_rl_trainer_args_reach_grpo_config(tmp_path):
    from lmcot.optimizers.rl_grpo import rl_trainer_config

    cfg = config_from_dict({"rl": {"trainer_args": {"loss_type": "dapo", "num_iterations": 2}}})
    args = rl_trainer_config("grpo", cfg.rl, cfg.small_lm, Path(tmp_path), "cpu")
    assert args.loss_type == "dapo" and args.num_iterations == 2 and args.beta == cfg.rl.kl


@pytest.mark.parametrize(("data", "encoder_decoder", "message"), [
    ({"stages": ["kd"], "kd": {"trainer_args": {"warmup_stpes": 3}}}, False,
     "kd.trainer_args.warmup_stpes: not a setting of SFTConfig"),
    ({"stages": ["kd"], "kd": {"trainer_args": {"packing": True}}}, True,
     "kd.trainer_args.packing: not a setting of Seq2SeqTrainingArguments"),
    ({"stages": ["rl"], "rl": {"trainer_args": {"betta": 0.1}}}, False, "rl.trainer_args.betta: not a setting of GRPOConfig"),
    ({"stages": ["rl"], "rl": {"trainer_args": {"beta": 0.1}}}, True, "rl.trainer_args: seq2seq_rloo is lmcot's own loop"),
])
def test_unknown_trainer_setting_is_a_one_line_config_error(data, encoder_decoder, message):
    from lmcot.optimizers.preflight import check_all_trainer_args

    with pytest.raises(ConfigError) as err:
        check_all_trainer_args(config_from_dict(data), encoder_decoder)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_no_secret_in_trainer_args():
    with pytest.raises(ConfigError, match="kd.trainer_args"):
        config_from_dict({"kd": {"trainer_args": {"hub_token": "x"}}})


def test_rl_lora_settings_come_from_config():
    from lmcot.optimizers.training import lora_config

    rl = config_from_dict({"rl": {"lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.1,
                                  "lora_target_modules": ["q_proj"]}}).rl
    lora = lora_config(rl, encoder_decoder=False)
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, set(lora.target_modules)) == (4, 8, 0.1, {"q_proj"})
    assert lora_config(rl, encoder_decoder=True).task_type == "SEQ_2_SEQ_LM"
