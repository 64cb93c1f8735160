"""A rich progress bar for transformers/TRL trainers, replacing their tqdm bar and printed log dicts.

    trainer = SFTTrainer(..., args=SFTConfig(..., disable_tqdm=True), callbacks=[rich_progress("KD", "loss")])
    quiet_trainer(trainer)          # drop the PrinterCallback that would print every log dict
"""

from __future__ import annotations


def rich_progress(label: str, metric: str = "loss", enabled: bool = True, value=None):
    """A TrainerCallback drawing ``label <metric value> [bar] step/total``; ``metric`` is the logged
    key to show (``loss`` for distillation, ``reward`` for RL), or ``value(logs)`` computes the number
    when given (None: leave the bar as it is). Full logs still go to ``report_to``."""
    from transformers import TrainerCallback

    class RichProgress(TrainerCallback):
        def __init__(self) -> None:
            self._progress = None
            self._task = None

        def on_train_begin(self, args, state, control, **kwargs):
            # Several processes: one bar, drawn by the main one (as transformers' own tqdm bar).
            if not enabled or state.max_steps <= 0 or not state.is_world_process_zero:
                return
            from lmcot.console import progress_bar

            # Plain lines when stderr is not a terminal (a CI log, nohup): every step is minutes there.
            self._progress = progress_bar(label)
            self._progress.start()
            self._task = self._progress.add_task("", total=state.max_steps, completed=state.global_step)

        def on_step_end(self, args, state, control, **kwargs):
            if self._progress is not None:
                self._progress.update(self._task, completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self._progress is None or not logs:
                return
            shown = value(logs) if value is not None else logs.get(metric)
            if shown is not None:
                text = f"{metric} {float(shown):.3f}"
                # TRL's share of rollouts stopped by max_completion_length (repetition loops, mostly).
                clipped = logs.get("completions/clipped_ratio")
                if clipped is not None:
                    text += f", cut at max_new_tokens {float(clipped):.0%}"
                self._progress.update(self._task, description=text)

        def on_train_end(self, args, state, control, **kwargs):
            if self._progress is not None:
                self._progress.stop()
                self._progress = None

    return RichProgress()


def quiet_trainer(trainer) -> None:
    """With ``disable_tqdm=True`` the Trainer prints every log dict; the rich bar replaces that."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
