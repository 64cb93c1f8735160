"""``small_lm.model`` is resolved in one place (``lmcot.model_loading.resolve_source``) and once per run:
the engine, its tokenizer, the context check and the token counter take the resolved ``ModelSource``."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from lmcot import model_loading
from lmcot.commands.cli import app
from lmcot.errors import ModelLoadError, PathError
from lmcot.model_loading import ModelSource, check_model_source, resolve_source
from support.paths import HOTPOT

KEY_VAR = "LMCOT_TEST_SOURCE_KEY"


def test_a_folder_resolves_to_itself_with_its_config(tiny_causal_path, tiny_seq2seq_path):
    source = resolve_source(str(tiny_causal_path), revision=None)
    assert source.setting == source.path == source.files == str(tiny_causal_path)
    assert source.config.model_type and not source.is_encoder_decoder
    assert resolve_source(source) is source  # a resolved source is never resolved again
    assert resolve_source(str(tiny_seq2seq_path)).is_encoder_decoder


def test_trust_and_revision_travel_with_the_source(tiny_causal_path):
    source = resolve_source(str(tiny_causal_path), trust_remote_code=True, revision="main")
    assert (source.trust_remote_code, source.revision) == (True, "main")


def test_unresolvable_settings_fail_in_one_line(tmp_path):
    with pytest.raises(ModelLoadError, match="not installed"):
        resolve_source("pkg://no_such_package_for_lmcot/model.gguf")
    with pytest.raises(ModelLoadError, match="no such GGUF file"):
        resolve_source(str(tmp_path / "nope.gguf"))
    with pytest.raises(PathError, match=r"small_lm\.model"):  # the checked resolution names the config key
        check_model_source(str(tmp_path / "missing"), "small_lm.model")


@pytest.fixture()
def resolutions(monkeypatch):
    """Every resolution of a setting (a string) through the one resolver, by setting. (The engine takes
    a resolved model and never resolves one: it does not import the resolver.)"""
    import lmcot.hf_engine as hf_engine

    assert not hasattr(hf_engine, "resolve_source")
    seen: list[str] = []

    def counting(model, **kwargs):
        if not isinstance(model, ModelSource):
            seen.append(str(model))
        return resolve_source(model, **kwargs)

    monkeypatch.setattr(model_loading, "resolve_source", counting)
    return seen


def _args(server, cache, out, small=None) -> list[str]:
    args = ["evaluate", "--methods", "guided", "--limit", "2", "--out", str(out),
            "--set", "large_lm.model=openai/oracle", "--set", f"large_lm.api_base={server.url}",
            "--set", f"large_lm.api_key_env={KEY_VAR}", "--set", "large_lm.num_retries=0",
            "--set", f"data.dev={HOTPOT}", "--set", "data.max_context_tokens=200", "--set", f"cache_dir={cache}"]
    return args + (["--set", f"small_lm.model={small}", "--set", "small_lm.max_tokens=8"] if small else [])


def test_evaluate_resolves_the_small_lm_once(oracle_server, tiny_causal_path, tmp_path, monkeypatch, resolutions):
    monkeypatch.setenv(KEY_VAR, "sk-test")
    result = CliRunner().invoke(app, _args(oracle_server, tmp_path / "c", tmp_path / "o", small=tiny_causal_path))
    assert result.exit_code == 0, result.output
    # Checked before any call, then built, loaded, tokenized and counted with from that one resolution.
    assert resolutions == [str(tiny_causal_path)]


def test_evaluate_of_a_program_folder_resolves_it_once(oracle_server, tiny_causal_path, tmp_path, monkeypatch,
                                                      resolutions):
    from lmcot.config import LMCoTConfig
    from lmcot.lms import build_lm, cache_in
    from lmcot.programs import LMGuidedCoT
    from lmcot.programs.program_io import save_program

    monkeypatch.setenv(KEY_VAR, "sk-test")
    folder = tmp_path / "program"
    shutil.copytree(tiny_causal_path, folder / "small_lm")
    cfg = LMCoTConfig.model_validate({"small_lm": {"model": str(folder / "small_lm"), "max_tokens": 8},
                                      "large_lm": {"model": "openai/oracle"}})
    with cache_in(tmp_path / "c0"):
        save_program(LMGuidedCoT(build_lm(cfg.small_lm), None), folder, cfg)
    resolutions.clear()
    args = _args(oracle_server, tmp_path / "c", tmp_path / "o") + ["--program", str(folder)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert resolutions == [str(folder / "small_lm")]


def test_compile_builds_its_lms_from_the_checked_resolution(oracle_server, tiny_causal_path, tmp_path, monkeypatch,
                                                           resolutions):
    """``lmcot compile`` resolves the small LM once, in its checks, and builds the run's LMs (and counts
    contexts) from that: by the time training starts nothing has resolved it again. Its reply cache is
    installed once, too."""
    import lmcot.optimizers.distill as distill_module

    seen_at_training: list[list[str]] = []

    def fake_distill(kept, student, out_dir, kd, small_cfg, progress=True):
        seen_at_training.append(list(resolutions))
        return str(tiny_causal_path)  # the start weights stand in for the trained ones

    import lmcot.lms as lms

    installs: list[str] = []
    configure = lms.configure_cache
    monkeypatch.setattr(lms, "configure_cache", lambda d, **kw: installs.append(str(d)) or configure(d, **kw))
    monkeypatch.setattr(distill_module, "distill", fake_distill)
    monkeypatch.setenv(KEY_VAR, "sk-test")
    args = _args(oracle_server, tmp_path / "c", tmp_path / "o", small=tiny_causal_path)
    args[:args.index("--out") + 2] = ["compile", "--out", str(tmp_path / "o")]
    args += ["--set", f"data.train={HOTPOT}", "--set", "data.train_limit=2", "--set", "data.dev_limit=2",
             "--set", "kd.num_samples=1", "--set", "kd.max_steps=1", "--set", "stages=kd"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen_at_training == [[str(tiny_causal_path)]]
    assert installs == [str(tmp_path / "c")]  # the run's cache installed once (compile inside compile_from_config)


def test_the_training_check_resolves_a_source_of_another_model_again(tiny_causal_path, tiny_seq2seq_path, resolutions):
    """``preflight_training`` uses the source it is given only when it is the student's own model."""
    from lmcot.config import LMCoTConfig
    from lmcot.optimizers.preflight import preflight_training

    cfg = LMCoTConfig.model_validate({"small_lm": {"model": str(tiny_causal_path), "max_tokens": 8}, "stages": []})
    own, other = resolve_source(str(tiny_causal_path)), resolve_source(str(tiny_seq2seq_path))
    resolutions.clear()
    preflight_training(cfg, cfg.small_lm, "unused", source=own)
    assert resolutions == []  # its own model: not resolved again
    preflight_training(cfg, cfg.small_lm, "unused", source=other)
    assert resolutions == [str(tiny_causal_path)]


def test_the_engine_takes_a_resolved_model_only(tiny_causal_path):
    from lmcot.hf_engine import TransformersEngine

    with pytest.raises(TypeError, match="resolved model"):
        TransformersEngine(str(tiny_causal_path))


def test_an_experiment_without_students_counts_contexts_with_the_checked_resolution(
        oracle_server, tiny_causal_path, tmp_path, monkeypatch, resolutions):
    """Baselines only: no small LM is built, yet contexts are counted with its tokenizer, loaded from the
    model the checks resolved rather than resolved again."""
    monkeypatch.setenv(KEY_VAR, "sk-test")
    args = _args(oracle_server, tmp_path / "c", tmp_path / "o", small=tiny_causal_path)
    args[:args.index("--out") + 2] = ["experiment", "--out", str(tmp_path / "o")]
    args += ["--set", "experiment.students=[]", "--set", "experiment.rl_ablation=[]",
             "--set", "experiment.quality_analysis=false", "--set", "experiment.self_consistency=false",
             "--set", "experiment.baselines=[standard]", "--set", "experiment.rationale_forms=[]",
             "--set", "experiment.dev_limit=2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "results.json").is_file()
    assert resolutions == [str(tiny_causal_path)]


def test_compile_builds_an_in_process_teacher_from_the_checked_resolution(
        oracle_server, tiny_causal_path, tmp_path, monkeypatch, resolutions):
    """An in-process ``kd.teacher`` is resolved by the checks and built from that resolution, as the small
    LM is: when the KD stage builds it, each model has been resolved once."""
    import lmcot.lms as lms

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_causal_path, teacher)
    built: list[tuple[list[str], object]] = []
    real_build_lm = lms.build_lm

    class TeacherBuilt(Exception):
        pass

    def watching_build_lm(cfg, name=None, *, role=None, source=None):
        if role == "kd.teacher":  # the KD stage builds its teacher: what has been resolved by now?
            built.append((list(resolutions), source))
            raise TeacherBuilt
        return real_build_lm(cfg, name, role=role, source=source)

    monkeypatch.setattr(lms, "build_lm", watching_build_lm)
    monkeypatch.setenv(KEY_VAR, "sk-test")
    args = _args(oracle_server, tmp_path / "c", tmp_path / "o", small=tiny_causal_path)
    args[:args.index("--out") + 2] = ["compile", "--out", str(tmp_path / "o")]
    args += ["--set", f"data.train={HOTPOT}", "--set", "data.train_limit=2", "--set", "data.dev_limit=2",
             "--set", "stages=kd", "--set", f"kd.teacher.model={teacher}", "--set", "kd.teacher.backend=transformers",
             "--set", "kd.teacher.max_tokens=8"]
    CliRunner().invoke(app, args)
    assert len(built) == 1, "the KD stage did not build its teacher"
    seen, source = built[0]
    assert sorted(seen) == sorted([str(tiny_causal_path), str(teacher)])  # each resolved once, by the checks
    assert isinstance(source, ModelSource) and source.setting == str(teacher)  # and built from that


def test_the_scorer_builds_an_in_process_judge_from_a_resolved_source(tiny_causal_path, tmp_path, resolutions):
    from lmcot.config import LMCoTConfig
    from lmcot.lms import cache_in
    from lmcot.metrics.rationale import scorer_from_config

    cfg = LMCoTConfig.model_validate({
        "rationale_metrics": {"judge": {"model": str(tiny_causal_path), "backend": "transformers", "max_tokens": 4},
                              "backends": {"fluency": "judge"}}})
    judge = resolve_source(str(tiny_causal_path))
    resolutions.clear()
    with cache_in(tmp_path / "c"):
        scorer = scorer_from_config(cfg, reference_lm="lexical", sources={"rationale_metrics.judge": judge})
        assert scorer.judge_lm is not None and resolutions == []  # built from the given resolution
        scorer_from_config(cfg, reference_lm="lexical")
        assert resolutions == [str(tiny_causal_path)]  # without one, it resolves the setting itself


def test_the_perplexity_reference_reuses_the_small_lms_resolution(tiny_causal_path, tiny_seq2seq_path, resolutions):
    from lmcot.config import LMCoTConfig
    from lmcot.metrics.rationale import choose_reference_lm, reference_name

    cfg = LMCoTConfig.model_validate({"small_lm": {"model": str(tiny_causal_path), "max_tokens": 8}})
    own, other = resolve_source(str(tiny_causal_path)), resolve_source(str(tiny_seq2seq_path))
    resolutions.clear()
    reference, _ = choose_reference_lm(cfg, own)
    assert reference is own and resolutions == []  # the small LM as the checks resolved it
    reference, _ = choose_reference_lm(cfg, other)  # another model's resolution is not taken for it
    assert reference_name(reference) == str(tiny_causal_path) and resolutions == [str(tiny_causal_path)]


def test_evaluate_checks_the_quality_judge_before_any_call(oracle_server, tiny_causal_path, tmp_path, monkeypatch):
    """Guided rationales picked by quality are scored by the judge: a judge model that is not there fails the
    run before the first call, in one line naming its key, as the small and large LM do."""
    monkeypatch.setenv(KEY_VAR, "sk-test")
    args = _args(oracle_server, tmp_path / "c", tmp_path / "o", small=tiny_causal_path)
    args += ["--set", "eval.select=quality", "--set", "eval.num_samples=2",
             "--set", f"rationale_metrics.judge.model={tmp_path / 'no-judge'}",
             "--set", "rationale_metrics.judge.backend=transformers", "--set", "rationale_metrics.backends.fluency=judge"]
    posts_before = len([r for r in oracle_server.records if r.method == "POST"])  # the server is shared
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "rationale_metrics.judge.model" in result.output and str(tmp_path / "no-judge") in result.output
    assert "rationales:" not in result.output  # stopped before the small LM wrote a rationale, not at scoring
    assert len([r for r in oracle_server.records if r.method == "POST"]) == posts_before  # nothing asked of it
    assert not (tmp_path / "o").exists()


def test_score_builds_an_in_process_judge_from_its_checked_resolution(tiny_causal_path, tmp_path, resolutions):
    import json

    rationales = tmp_path / "r.jsonl"
    rationales.write_text(json.dumps({"id": "1", "question": "Where is Paris?", "context": "Paris is in France.",
                                      "rationale": "Paris is in France. So the answer is France."}) + "\n")
    result = CliRunner().invoke(app, [
        "score", "--rationales", str(rationales), "--set", f"cache_dir={tmp_path / 'c'}",
        "--set", f"rationale_metrics.judge.model={tiny_causal_path}", "--set", "rationale_metrics.judge.backend=transformers",
        "--set", "rationale_metrics.judge.max_tokens=4", "--set", "rationale_metrics.backends.fluency=judge",
        "--set", "rationale_metrics.reference_lm=lexical"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.scores.jsonl").is_file()
    assert resolutions == [str(tiny_causal_path)]  # checked once, and the judge built from that


def test_every_local_path_is_checked_before_any_model_is_read(tiny_causal_path, tmp_path, monkeypatch):
    """``check_local`` reads no model while a later role's path is missing: a typo costs no load."""
    from lmcot import preflight
    from lmcot.config import LMCoTConfig

    cfg = LMCoTConfig.model_validate({
        "small_lm": {"model": str(tiny_causal_path)}, "cache_dir": str(tmp_path / "cache"),
        "kd": {"teacher": {"model": str(tmp_path / "no-such-teacher"), "backend": "transformers"}}})
    read: list[str] = []
    monkeypatch.setattr(preflight, "check_model_source", lambda model, key, **kw: read.append(key))
    with pytest.raises(PathError, match=r"no-such-teacher: kd\.teacher\.model: no such model folder"):
        preflight.check_local(cfg, tmp_path / "out", roles=("small_lm", "large_lm", "kd.teacher"))
    assert read == []


def test_check_local_resolves_only_the_in_process_models_of_its_roles(tiny_causal_path, tmp_path):
    from lmcot.config import LMCoTConfig
    from lmcot.preflight import check_local

    cfg = LMCoTConfig.model_validate({
        "small_lm": {"model": str(tiny_causal_path)}, "cache_dir": str(tmp_path / "cache"),
        "rationale_metrics": {"judge": {"model": str(tiny_causal_path), "backend": "transformers"}}})
    assert set(cfg.lm_roles()) == {"small_lm", "large_lm", "kd.teacher", "rationale_metrics.judge"}
    sources = check_local(cfg, roles=("small_lm", "large_lm", "kd.teacher"))
    assert list(sources) == ["small_lm"], "large_lm is litellm, kd.teacher unset, the judge not among the roles"
    assert list(check_local(cfg, roles=("rationale_metrics.judge",))) == ["rationale_metrics.judge"]
