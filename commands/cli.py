"""The ``lmcot`` command line: ``evaluate``, ``compile``, ``score``, ``experiment``, ``report`` and ``serve``.

Every command takes ``--config FILE.yaml`` and any number of ``--set key.path=value`` overrides
(the same pydantic config as the Python API). This module only declares the commands and their
options; each command's body is its own module in this folder (``commands/evaluate.py``, ...), and
what they share (errors as one line, the config shown, the checks before any paid call) is
``commands/common.py``. Heavy libraries load only inside the command.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

# show_locals=False: a bug's traceback must not print local variables (an API key among them).
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="LM-guided chain-of-thought: a small LM writes the rationale, a large LM answers.")

def version_text() -> str:
    """``lmcot 0.1.0 (dspy 3.4.x, transformers 5.x, trl 1.16.x, torch 2.x, litellm 1.x, python 3.11.x)``:
    what a bug report needs, read from the installed packages' metadata (nothing is imported)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    parts = ", ".join(f"{name} {of(name)}" for name in ("dspy", "transformers", "trl", "torch", "litellm"))
    return f"lmcot {of('lmcot')} ({parts}, python {platform.python_version()})"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", is_eager=True, callback=_show_version,
                                       help="Print lmcot's version (and its main libraries') and exit.")) -> None:
    """LM-guided chain-of-thought: a small LM writes the rationale, a large LM answers."""


ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config (see configs/).")
SetOpt = typer.Option(None, "--set", help="Override a config key: key.path=value (repeatable).")
SkipBadOpt = typer.Option(False, "--skip-bad", help="Skip malformed records and report how many.")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="Show per-call warnings and tracebacks.")


def _sets(overrides: Optional[List[str]], skip_bad: bool = False, stages: Optional[str] = None) -> list[str]:
    """The ``--set`` overrides, with what a command's own flags set (``--skip-bad``, ``--stages``)."""
    return [*(overrides or []), *([f"stages=[{stages}]"] if stages else []), *(["data.skip_bad=true"] if skip_bad else [])]


@app.command()
def evaluate(
    config: Optional[Path] = ConfigOpt,
    methods: Optional[str] = typer.Option(None, help="Comma-separated subset of standard,cot,guided."),
    limit: Optional[int] = typer.Option(None, min=1, help="Evaluate the first N dev examples."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default eval.out)."),
    program: Optional[Path] = typer.Option(None, help="A compiled program folder (from `lmcot compile`)."),
    skip_bad: bool = SkipBadOpt,
    overrides: Optional[List[str]] = SetOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Measure LM-guided CoT against standard and CoT prompting of the large LM on the dev set."""
    from lmcot.commands.evaluate import main as evaluate_main

    evaluate_main(config, _sets(overrides, skip_bad), methods=methods, limit=limit, out=out, program=program,
                  verbose=verbose)


@app.command(name="compile")
def compile_(
    config: Optional[Path] = ConfigOpt,
    out: Path = typer.Option(..., "--out", "-o", help="Folder of the compiled program."),
    stages: Optional[str] = typer.Option(None, help="Comma-separated stages to run, e.g. kd or kd,rl (default: config)."),
    skip_bad: bool = SkipBadOpt,
    overrides: Optional[List[str]] = SetOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Bootstrap teacher rationales, distil them into the small LM, then RL; save a compiled program."""
    from lmcot.commands.compile import main as compile_main

    compile_main(config, _sets(overrides, skip_bad, stages), out=out, verbose=verbose)


@app.command()
def score(
    rationales: Path = typer.Option(..., "--rationales", help="JSONL with question, context, rationale per line, "
                                    "or the predictions.jsonl of `lmcot evaluate`."),
    config: Optional[Path] = ConfigOpt,
    out: Optional[Path] = typer.Option(None, help="Per-row scores JSONL (default: <rationales>.scores.jsonl)."),
    overrides: Optional[List[str]] = SetOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Score rationales on the eight quality aspects and print a per-aspect table."""
    from lmcot.commands.score import main as score_main

    score_main(rationales, config, _sets(overrides), out=out, verbose=verbose)


@app.command()
def experiment(
    config: Optional[Path] = ConfigOpt,
    out: Path = typer.Option(..., "--out", "-o", help="Folder of the experiment (results.json, report, plots)."),
    skip_bad: bool = SkipBadOpt,
    overrides: Optional[List[str]] = SetOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """The paper's experiments in one run: baselines, guided students (untrained/KD/KD+RL), RL ablation,
    rationale-quality analysis; then the report. Reruns skip finished steps and pay for no call twice."""
    from lmcot.commands.experiment import main as experiment_main

    experiment_main(config, _sets(overrides, skip_bad), out=out, verbose=verbose)


@app.command()
def report(
    out: Path = typer.Argument(..., help="An experiment folder (with results.json)."),
    verbose: bool = VerboseOpt,
) -> None:
    """Re-render report.md, report.html and the plots from OUT/results.json (no LM call)."""
    from lmcot.commands.experiment import report as report_main

    report_main(out, verbose=verbose)


@app.command()
def serve(
    program: Path = typer.Option(..., "--program", help="A compiled program folder (from `lmcot compile`)."),
    config: Optional[Path] = ConfigOpt,
    overrides: Optional[List[str]] = SetOpt,
    host: str = typer.Option("127.0.0.1", help="Address to listen on; any other than loopback needs --api-key-env."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on (0: any free port, printed at start)."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="Name of an environment variable holding "
                                              "the key clients must send (Authorization: Bearer <key>)."),
    request_timeout: float = typer.Option(300.0, "--request-timeout", min=1.0, help="Seconds a request may take "
                                          "(queueing included) before it is answered 504."),
    max_request_bytes: int = typer.Option(1_000_000, "--max-request-bytes", min=1024,
                                          help="Largest request body accepted (400 above)."),
    served_model_name: Optional[str] = typer.Option(None, "--served-model-name", help="Model id clients send "
                                                    "(default: the program folder's name)."),
    verbose: bool = VerboseOpt,
) -> None:
    """Serve a compiled program as an OpenAI-compatible chat model (POST /v1/chat/completions)."""
    from lmcot.commands.serve import main as serve_main

    serve_main(program, config, _sets(overrides), host=host, port=port, api_key_env=api_key_env,
               request_timeout=request_timeout, max_request_bytes=max_request_bytes,
               served_model_name=served_model_name, verbose=verbose)


def main() -> None:  # pragma: no cover - console script entry
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
