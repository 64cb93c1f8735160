"""Issue 16.6-16.8 and 16.11: what training needs is checked before the first paid call, and its
TensorBoard logs outlive the checkpoints.

* 16.6: event files go to OUT/logs/kd and OUT/logs/rl (they were written into the checkpoints and
  deleted with them), so ``tensorboard --logdir OUT`` shows the curves.
* 16.7: trainer settings that move lmcot's files or upload them are refused by name at config time.
* 16.8: bad trainer settings and unresolvable scoring models failed after 3-15 paid calls; the
  trainer configs are now built and every model resolved first.
* 16.11: generation lengths beyond the model's context are refused when its config is read.
"""

from __future__ import annotations

import pytest

from lmcot.config import ConfigError, RLConfig, config_from_dict, load_config
from support.paths import HOTPOT
from support.reliability import assert_one_line_error, invoke



def _compile_args(server, tmp_path, tiny, *extra: str) -> list[str]:
    sets = [f"small_lm.model={tiny}", "small_lm.max_tokens=8", "large_lm.model=openai/oracle",
            f"large_lm.api_base={server.url}", f"data.train={HOTPOT}", "data.train_limit=4", "data.max_context_tokens=null",
            "kd.num_samples=1", "kd.max_steps=2", "kd.batch_size=2", "kd.logging_steps=1", "kd.save_steps=1",
            "kd.max_length=256", "rl.max_steps=1", "rl.num_generations=2", "rl.batch_size=2", "rl.max_new_tokens=8",
            "rl.logging_steps=1", f"cache_dir={tmp_path / 'cache'}", *extra]
    return ["compile", "--out", str(tmp_path / "out")] + [a for s in sets for a in ("--set", s)]


# ------------------------------------------------------------------ 16.7 settings that move lmcot's files


@pytest.mark.parametrize("setting", ["kd.trainer_args.output_dir=/etc", "rl.trainer_args.logging_dir=/tmp/x",
                                     "kd.trainer_args.resume_from_checkpoint=/tmp/ckpt",
                                     "kd.trainer_args.chat_template_path=/tmp/t.jinja",
                                     "rl.trainer_args.push_to_hub=true", "kd.trainer_args.hub_model_id=me/model",
                                     "rl.trainer_args.hub_strategy=every_save",
                                     "rl.trainer_args.log_completions_hub_repo=me/logs"])
def test_trainer_settings_that_move_or_upload_files_are_refused_by_name(setting):
    key, name = setting.split("=")[0].rsplit(".", 1)
    with pytest.raises(ConfigError) as err:
        load_config(None, [setting])
    assert str(err.value).startswith(f"config: {key}: ") and f"{name}:" in str(err.value)


def test_output_dir_in_trainer_args_writes_nothing_there(oracle_server, tmp_path, tiny_causal_path):
    target = tmp_path / "elsewhere"
    before = oracle_server.request_count
    result = invoke(_compile_args(oracle_server, tmp_path, tiny_causal_path, f"kd.trainer_args.output_dir={target}"))
    assert_one_line_error(result, "kd.trainer_args", "output_dir")
    assert not target.exists() and not (tmp_path / "out").exists() and oracle_server.request_count == before


# ------------------------------------------------------------------ 16.8 / 16.11 before the first paid call


@pytest.mark.parametrize(("settings", "needles"), [
    (["kd.trainer_args.warmup_steps=abc"], ["kd.trainer_args.warmup_steps='abc'", "SFTConfig.warmup_steps"]),
    (["stages=[kd,rl]", "rl.trainer_args.loss_type=nonsense"], ["rl.trainer_args.loss_type='nonsense'", "dapo"]),
    (["kd.trainer_args.lr_scheduler_type=nope"], ["kd.trainer_args.lr_scheduler_type='nope'", "SFTConfig"]),
    (["kd.max_length=1"], ["kd.max_length=1", "small_lm.max_tokens=8"]),
    (["kd.report_to=[nope]"], ["kd.report_to"]),
    (["stages=[kd,rl]", "rationale_metrics.embedding_model=/nope/emb"], ["/nope/emb", "rationale_metrics.embedding_model"]),
    (["stages=[kd,rl]", "rationale_metrics.embedding_model=foo/bar"], ["rationale_metrics.embedding_model=foo/bar"]),
    (["stages=[kd,rl]", "rationale_metrics.reference_lm=foo/bar"], ["rationale_metrics.reference_lm=foo/bar"]),
    (["small_lm.max_tokens=100000000"], ["small_lm.max_tokens=100000000", "8192 positions"]),
    (["stages=[kd,rl]", "rl.max_new_tokens=100000"], ["rl.max_new_tokens=100000", "8192 positions"]),
])
def test_training_settings_fail_before_the_first_paid_call(settings, needles, oracle_server, tmp_path,
                                                          tiny_causal_path):
    before = oracle_server.request_count
    result = invoke(_compile_args(oracle_server, tmp_path, tiny_causal_path, *settings))
    assert_one_line_error(result, *needles)
    assert oracle_server.request_count == before and not (tmp_path / "out").exists()


def test_trainer_settings_are_checked_before_the_network(tmp_path, tiny_causal_path):
    """The command's own checks come before the endpoint probe: a bad trainer setting is reported as
    such even when nobody listens on large_lm.api_base."""
    import socket
    from types import SimpleNamespace

    with socket.socket() as s:  # a port that was free a moment ago: nobody listens there
        s.bind(("127.0.0.1", 0))
        dead = SimpleNamespace(url=f"http://127.0.0.1:{s.getsockname()[1]}/v1")
    result = invoke(_compile_args(dead, tmp_path, tiny_causal_path, "kd.trainer_args.warmup_steps=abc"))
    assert_one_line_error(result, "kd.trainer_args.warmup_steps='abc'")
    assert not (tmp_path / "out").exists()


def test_the_library_compile_checks_before_the_bootstrap(oracle_server, tmp_path, tiny_causal_path):
    """LMCoTCompiler.compile (the Python API) runs the same pre-flight before any teacher call."""
    from lmcot.data import load_examples
    from lmcot.lms import build_lm
    from lmcot.optimizers import LMCoTCompiler
    from lmcot.programs import LMGuidedCoT

    cfg = config_from_dict({"stages": ["kd", "rl"], "rl": {"trainer_args": {"loss_type": "nonsense"}},
                            "cache_dir": str(tmp_path / "cache")})
    program = LMGuidedCoT(build_lm(cfg.small_lm.model_copy(update={"model": str(tiny_causal_path), "max_tokens": 8})),
                          build_lm(cfg.large_lm.model_copy(update={"api_base": oracle_server.url})))
    before = oracle_server.request_count
    with pytest.raises(ConfigError, match=r"^rl\.trainer_args\.loss_type='nonsense': not one of "):
        LMCoTCompiler(cfg, tmp_path / "out").compile(program, load_examples("hotpotqa", str(HOTPOT), limit=2).examples)
    assert oracle_server.request_count == before and not (tmp_path / "out").exists()


def test_a_float_for_a_whole_number_is_refused():
    with pytest.raises(ValueError):
        RLConfig(max_new_tokens=1e8)
    with pytest.raises(ConfigError, match=r"rl\.max_new_tokens"):
        config_from_dict({"rl": {"max_new_tokens": 1.0e8}})


def test_max_tokens_beyond_the_context_fails_when_the_model_is_built(tiny_causal_path):
    from lmcot.config import SmallLMConfig
    from lmcot.lms import build_lm

    with pytest.raises(ConfigError, match=r"^small_lm\.max_tokens=100000: more than .* context of 8192 positions "
                                          r"\(max_position_embeddings"):
        build_lm(SmallLMConfig(model=str(tiny_causal_path), max_tokens=100_000))


def test_free_space_is_checked_before_training(oracle_server, tmp_path, tiny_causal_path, monkeypatch):
    """16.9: a disk without room for the checkpoints fails before the first paid call, naming --out."""
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    before = oracle_server.request_count
    result = invoke(_compile_args(oracle_server, tmp_path, tiny_causal_path))
    assert_one_line_error(result, str(tmp_path / "out"), "--out has 1000 B free")
    assert oracle_server.request_count == before


# ------------------------------------------------------------------ 16.6 TensorBoard logs survive the stage


@pytest.mark.slow
def test_tensorboard_logs_survive_a_compile(oracle_server, tmp_path, tiny_causal_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = invoke(_compile_args(oracle_server, tmp_path, tiny_causal_path, "stages=[kd,rl]",
                                  "kd.report_to=[tensorboard]", "rl.report_to=[tensorboard]"))
    assert result.exit_code == 0, result.output[-3000:]
    out = tmp_path / "out"
    assert not (out / "kd" / "checkpoints").exists() and not (out / "rl" / "checkpoints").exists()
    for stage, scalar in (("kd", "train/loss"), ("rl", "train/reward")):
        assert list((out / "logs" / stage).glob("events.out.tfevents.*")), stage
        events = EventAccumulator(str(out / "logs" / stage))
        events.Reload()
        assert scalar in events.Tags()["scalars"], (stage, events.Tags()["scalars"])
