"""The one stage shape (optimizers/stage.py): the Stage life cycle, the stage folder's marker and
checkpoints, and the one atomic model-folder save that KD, GRPO and the seq2seq loop share."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from lmcot.keyed import Marker
from lmcot.optimizers.stage import Stage, StageFolder, keep_checkpoints_if, replacing_folder, save_model


class _Weights:
    """Stands in for a model and its tokenizer: ``save_pretrained`` writes a file, or fails half-way."""

    def __init__(self, name: str, fail: bool = False):
        self.name, self.fail = name, fail

    def save_pretrained(self, folder: str) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / self.name).write_text("new")
        if self.fail:
            raise OSError(28, "No space left on device")


def _old_model(target: Path) -> None:
    target.mkdir(parents=True)
    (target / "model.safetensors").write_text("old")
    (target / "only-in-the-old-one.json").write_text("{}")


def test_save_model_replaces_the_folder_whole(tmp_path):
    target = tmp_path / "rl" / "model"
    _old_model(target)
    save_model(_Weights("model.safetensors"), _Weights("tokenizer.json"), target, {"lmcot_kd.json": {"fingerprint": "f"}})
    assert sorted(p.name for p in target.iterdir()) == ["lmcot_kd.json", "model.safetensors", "tokenizer.json"]
    assert (target / "model.safetensors").read_text() == "new"
    assert json.loads((target / "lmcot_kd.json").read_text()) == {"fingerprint": "f"}
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]  # no .tmp / .old left beside it


def test_a_save_that_raises_leaves_the_old_model_and_no_half_written_folder(tmp_path):
    target = tmp_path / "kd" / "model"
    _old_model(target)
    with pytest.raises(OSError, match="No space"):
        save_model(_Weights("model.safetensors"), _Weights("tokenizer.json", fail=True), target)
    assert (target / "model.safetensors").read_text() == "old"
    assert (target / "only-in-the-old-one.json").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]


def test_a_first_save_that_raises_leaves_no_model_folder(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(OSError):
        save_model(_Weights("model.safetensors", fail=True), _Weights("tokenizer.json"), target)
    assert list(tmp_path.iterdir()) == []


def test_replacing_folder_clears_a_leftover_from_a_killed_save(tmp_path):
    (tmp_path / ".small_lm.tmp").mkdir()
    (tmp_path / ".small_lm.tmp" / "torn.safetensors").write_text("half")
    with replacing_folder(tmp_path / "small_lm") as tmp:
        assert not tmp.exists()  # the killed run's half-written folder is gone before anything is written
        tmp.mkdir()
        (tmp / "config.json").write_text("{}")
    assert [p.name for p in (tmp_path / "small_lm").iterdir()] == ["config.json"]


class _Recorded(Stage):
    def __init__(self, calls: list[str], fail_in: str = "", finished: Path | None = None):
        self.calls, self.fail_in, self._finished = calls, fail_in, finished

    def _step(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail_in:
            raise RuntimeError(f"{name} failed")

    def finished(self):
        self.calls.append("finished")
        return self._finished

    def setup(self):
        self._step("setup")

    def train(self):
        self._step("train")

    def save(self):
        self._step("save")
        return Path("model")

    def cleanup(self):
        calls = self.calls
        super().cleanup()
        calls.append("cleanup")
        assert self.__dict__ == {}  # the stage holds no trainer or weights any more


def test_a_stage_runs_setup_train_save_then_cleanup():
    calls: list[str] = []
    assert _Recorded(calls).run() == Path("model")
    assert calls == ["finished", "setup", "train", "save", "cleanup"]


@pytest.mark.parametrize("fail_in", ["setup", "train", "save"])
def test_a_failed_stage_still_cleans_up_and_saves_nothing_after_the_failure(fail_in):
    calls: list[str] = []
    with pytest.raises(RuntimeError, match=fail_in):
        _Recorded(calls, fail_in=fail_in).run()
    order = ["finished", "setup", "train", "save"]
    assert calls == order[: order.index(fail_in) + 1] + ["cleanup"]


def test_a_finished_stage_is_not_run_again():
    calls: list[str] = []
    assert _Recorded(calls, finished=Path("done/model")).run() == Path("done/model")
    assert calls == ["finished"]


def test_the_trainers_are_stages_and_save_through_the_one_atomic_save():
    from lmcot.optimizers import distill, rl_grpo, rl_seq2seq

    for module, stage in ((distill, distill.Distill), (rl_grpo, rl_grpo.GRPO), (rl_seq2seq, rl_seq2seq.Seq2SeqRL)):
        assert issubclass(stage, Stage)
        source = inspect.getsource(module)
        assert ".save_pretrained(" not in source and "save_model(" in source, module.__name__


def test_stage_folder_skips_a_finished_stage_and_reruns_a_changed_one(tmp_path, capsys):
    stage = StageFolder(tmp_path / "rl")
    (stage.checkpoints / "checkpoint-2").mkdir(parents=True)
    assert not stage.finished("k1")
    stage.done("k1", train_seconds=1.5)
    assert not stage.checkpoints.exists()  # finished: no resume state kept
    assert json.loads((stage.path / "DONE.json").read_text()) == {"key": "k1", "model": "model", "train_seconds": 1.5}
    assert stage.finished("k1")
    assert stage.skipped() == str(tmp_path / "rl" / "model")
    assert f"rl: complete under {stage.path}, skipped" in capsys.readouterr().err

    assert not stage.finished("k2", remove_stale=False)  # another process's view: the marker stays
    assert stage.marker.exists()
    assert not stage.finished("k2")
    assert not stage.marker.exists()
    assert "rl: settings, data or start weights changed since the finished run; running it again" in \
        capsys.readouterr().err


def test_checkpoints_are_kept_for_the_same_inputs_only(tmp_path, capsys):
    ckpts, marker = tmp_path / "rl" / "checkpoints", Marker(tmp_path / "rl" / "resume_key.json")
    keep_checkpoints_if(ckpts, marker, "a")
    (ckpts / "step-000002").mkdir(parents=True)
    keep_checkpoints_if(ckpts, marker, "a")
    assert (ckpts / "step-000002").is_dir()
    keep_checkpoints_if(ckpts, marker, "b", "old checkpoints removed")
    assert not ckpts.exists() and marker.matches("b")
    assert "rl: old checkpoints removed" in capsys.readouterr().err


def test_a_marker_under_another_field_name(tmp_path):
    # KD's lmcot_kd.json predates the scheme and calls its key "fingerprint": the file stays as it was.
    marker = Marker(tmp_path / "lmcot_kd.json", "fingerprint")
    marker.write("f1", examples=3)
    assert json.loads(marker.path.read_text()) == {"fingerprint": "f1", "examples": 3}
    assert marker.matches("f1") and marker.found("f1") == {"fingerprint": "f1", "examples": 3}
    assert marker.found("f2") is None and Marker(marker.path).key() is None


def test_experiment_steps_use_the_same_marker(tmp_path):
    from lmcot.experiment.steps import Steps

    said: list[str] = []
    steps, runs = Steps(tmp_path, said.append), []
    assert steps.run("kd", "k", lambda: runs.append(1) or {"em": 0.5}) == {"em": 0.5}
    assert steps.run("kd", "k", lambda: runs.append(1) or {"em": 0.9}) == {"em": 0.5}
    assert Marker(steps.path("kd")).found("k") == {"key": "k", "result": {"em": 0.5}}
    assert steps.run("kd", "changed", lambda: runs.append(1) or {"em": 0.7}) == {"em": 0.7}
    assert runs == [1, 1] and said == ["kd: running", "kd: done earlier, skipped", "kd: running"]
