"""The ``lmcot`` command line: ``evaluate``, ``compile``, ``score``, ``experiment``, ``report`` and ``serve``.

Every command takes ``--config FILE.yaml`` and any number of ``--set key.path=value`` overrides
(the same pydantic config as the Python API). Heavy libraries load only inside the command.

Errors: a :class:`lmcot.errors.UserError` (bad config, file, path, program folder, endpoint), an
``OSError`` or a provider error (authentication, billing, unreachable) is the user's to fix: one line
on stderr naming the file, record or key, exit 2 (``--verbose`` adds the traceback). Anything else
is a bug in lmcot: its traceback is always shown (exit 1), because the person who hit it should not
have to rerun a long or paid command to get what a bug report needs. Ctrl-C exits 130 and says what
was kept. Every message is printed as plain text (never as rich markup: a path with ``[/x]`` in it
prints as it is) and with secrets redacted (``lmcot.redact``).
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.text import Text

from lmcot.plain_progress import table_console

# show_locals=False: a bug's traceback must not print local variables (an API key among them).
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="LM-guided chain-of-thought: a small LM writes the rationale, a large LM answers.")
console = Console(stderr=True)

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


def _say(label: str, style: str, message: str, *, to: Console | None = None) -> None:
    """``label message`` as plain text: the message is never read as rich markup, secrets redacted."""
    from lmcot.redact import redact

    text = Text.assemble((label, style), " " if label else "", redact(str(message)))
    (to or console).print(text, highlight=False, soft_wrap=True)


def _fail(message: str, code: int = 2) -> None:
    _say("error:", "bold red", message)
    raise typer.Exit(code)


def _fail_with(exc: BaseException, verbose: bool) -> None:
    """The user's mistake in one line (``--verbose`` adds the traceback)."""
    if verbose:
        console.print_exception(show_locals=False)
    _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _bug(exc: BaseException) -> None:
    """Not the user's input: the traceback (always), then one line saying so; exit 1."""
    console.print_exception(show_locals=False)
    _say("internal error:", "bold red", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
         "(a bug in lmcot, not your input; please report it with the traceback above)")
    raise typer.Exit(1)


def _user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that are the user's input or environment, not a bug: shown as one line."""
    from dspy.utils.exceptions import LMError

    from lmcot.errors import UserError

    # OSError: a path the user named (permission, disk full, missing file); LMError: the provider
    # refused or could not be reached (authentication, billing, timeouts after retries).
    return (UserError, OSError, LMError)


@contextmanager
def _guard(verbose: bool, interrupted: str):
    """Run a command body: user errors as one line, Ctrl-C with ``interrupted``, bugs with traceback.
    Yields a dict the body fills with its writable places (``--out``, ``cache_dir``), named when a
    write fails for lack of space (lmcot.disk)."""
    places: dict[str, object] = {}
    try:
        yield places
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        _interrupted(interrupted)
    except Exception as exc:
        from lmcot.disk import disk_full_error

        full = disk_full_error(exc, places)
        if full is not None:
            _fail_with(full, verbose)
        if isinstance(exc, _user_errors()):
            _fail_with(exc, verbose)
        _bug(exc)


class _RedactFilter(logging.Filter):
    """Log records pass through lmcot.redact (a URL with a key in an error a library logs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from lmcot.redact import redact

        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def _setup_logging(verbose: bool) -> None:
    if not verbose:
        # transformers draws a bar for every weights load and save ("Loading weights", "Writing model
        # shards"): several per stage, noise between lmcot's own progress lines. Its switch is the hub
        # library's, read when huggingface_hub is first imported (dspy may import it: set it first).
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _RedactFilter) for f in handler.filters):
            handler.addFilter(_RedactFilter())
    import dspy  # noqa: F401 - dspy sets up its loggers on import; quiet them after that, not before

    # Per-call notices (e.g. DSPy's "LM response was truncated" for every capped rationale) drown the
    # progress bars; --verbose shows them.
    for noisy in ("LiteLLM", "litellm", "httpx", "dspy"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose else logging.ERROR)
    if not verbose:
        from lmcot.optimizers._trl_reaches import hide_checkpointing_deprecation_warnings

        hide_checkpointing_deprecation_warnings()


def _load(config: Optional[Path], overrides: Optional[List[str]], program: Optional[Path] = None):
    from lmcot.config import load_config

    if program is None:
        return load_config(config, list(overrides or []))
    from lmcot.programs.program_io import large_lm_note, program_config, read_program

    # The folder is checked first, before anything else is read, built or sent (lmcot.program_trust).
    # Without --config, the user's settings are lmcot's defaults and --set; the folder adds only what
    # defines the program (and its large LM's name, unless --set large_lm.model names another).
    folder = read_program(program)
    cfg = program_config(folder, load_config(config, list(overrides or [])) if config is not None else None,
                         list(overrides or []))
    note = large_lm_note(folder, cfg)
    if note:
        _say("note:", "bold cyan", note)
    return cfg


def _print_config(cfg, verbose: bool = False, saved: Optional[Path] = None) -> None:
    """The settings that differ from the defaults (the whole config with ``--verbose``); ``saved``
    names the file that will hold the whole config."""
    import json

    import yaml

    from lmcot.config import config_changes

    where = f"; all settings: {saved}" if saved is not None else ""
    if verbose:
        console.rule("resolved config")
        console.print(yaml.safe_dump(cfg.to_public_dict(), sort_keys=False).rstrip(), highlight=False, markup=False)
        console.rule()
        return
    changes = config_changes(cfg)
    if not changes:
        _say("config:", "bold", f"the defaults{where} (--verbose prints them)")
        return
    _say("config:", "bold", f"{len(changes)} setting(s) differ from the defaults{where} (--verbose prints all)")

    def shown(value) -> str:
        plain = isinstance(value, str) and value and not any(c.isspace() for c in value)
        return value if plain else json.dumps(value, ensure_ascii=False)

    sections: dict[str, list[str]] = {}  # one line per section: section: key=value key=value
    for key, value in changes.items():
        section, _, rest = key.partition(".")
        sections.setdefault(section if rest else "", []).append(f"{rest or section}={shown(value)}")
    for section, items in sections.items():
        _say("", "", f"  {section + ': ' if section else ''}{' '.join(items)}")


def _note_remote_code(cfg) -> None:
    """Running a model's own Python is the user's decision (``--set ROLE.trust_remote_code=true``);
    say plainly whose code will run."""
    sections = {"small_lm": cfg.small_lm, "large_lm": cfg.large_lm, "kd.teacher": cfg.kd.teacher,
                "rationale_metrics.judge": cfg.rationale_metrics.judge}
    for role, lm in sections.items():
        if lm is not None and lm.backend == "transformers" and lm.trust_remote_code:
            _say("warning:", "bold yellow", f"{role}.trust_remote_code=true: the Python code shipped with {lm.model} "
                 "will run on this machine with your permissions")


def _preflight(cfg, out: Optional[Path] = None, roles: tuple[str, ...] = ("small_lm", "large_lm"), *,
               training: bool = False, scoring: bool = False) -> None:
    """What can be checked without the network, before any endpoint is reached or call is paid
    (lmcot.preflight): paths (output, cache, local models); the in-process models of ``roles``,
    resolved to their config (hub ids: offline, in the local cache) with max_tokens within their
    context; with ``training``, the trainer configs of ``cfg.stages`` and free disk space; with
    ``scoring``, the scorer's reference LM and embedding model."""
    from lmcot.preflight import check_config_models, check_config_paths

    check_config_paths(cfg, out=out, roles=roles)
    check_config_models(cfg, roles)
    if training and cfg.stages:
        from lmcot.optimizers.preflight import preflight_training

        preflight_training(cfg, cfg.small_lm, out)
    if scoring:
        from lmcot.metrics.rationale import check_scorer_models

        check_scorer_models(cfg.rationale_metrics)


def _methods(methods: Optional[str]) -> Optional[list[str]]:
    """``--methods standard,cot``: the list, each a known method (None: the config's eval.methods)."""
    if methods is None:
        return None
    from lmcot.config import ConfigError
    from lmcot.programs.evaluation import METHODS, check_methods

    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    if not chosen:
        raise ConfigError(f"--methods {methods!r}: no method named; give a comma-separated subset of "
                          f"{','.join(METHODS)}")
    try:
        return check_methods(chosen)
    except ConfigError as exc:
        raise ConfigError(f"--methods {methods!r}: {exc}") from None


@contextmanager
def _locked(out: Path, command: str):
    """The output folder's lock (lmcot.run_lock) for the whole command, report rendering included."""
    from lmcot.run_lock import output_lock

    with output_lock(out, command):
        yield


def _check_endpoints(cfg, *, teacher: bool = False, judge: bool = False) -> None:
    """An ``api_base`` nobody listens on fails now, in one line, not after every call's retries."""
    from lmcot.lms import check_endpoint

    check_endpoint(cfg.large_lm, "large_lm")
    if teacher and cfg.kd.teacher is not None:
        check_endpoint(cfg.kd.teacher, "kd.teacher")
    if judge and cfg.rationale_metrics.judge is not None and "judge" in cfg.rationale_metrics.backends.values():
        check_endpoint(cfg.rationale_metrics.judge, "rationale_metrics.judge")


def _interrupted(message: str) -> None:
    """Ctrl-C: say what is kept and how to go on, instead of exiting silently."""
    _say("interrupted:", "bold yellow", message)
    raise typer.Exit(130)


@app.command()
def evaluate(
    config: Optional[Path] = ConfigOpt,
    methods: Optional[str] = typer.Option(None, help="Comma-separated subset of standard,cot,guided."),
    limit: Optional[int] = typer.Option(None, help="Evaluate the first N dev examples."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default eval.out)."),
    program: Optional[Path] = typer.Option(None, help="A compiled program folder (from `lmcot compile`)."),
    skip_bad: bool = SkipBadOpt,
    overrides: Optional[List[str]] = SetOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Measure LM-guided CoT against standard and CoT prompting of the large LM on the dev set."""
    _setup_logging(verbose)
    with _guard(verbose, "nothing written; the LM calls that finished are cached, so a rerun does not pay for them "
                "again") as places:
        cfg = _load(config, (overrides or []) + (["data.skip_bad=true"] if skip_bad else []), program)
        method_list = _methods(methods)  # the command's arguments, like the config, before the network
        _print_config(cfg, verbose, (out or Path(cfg.eval.out)) / "config.json")
        _note_remote_code(cfg)
        from lmcot.commands.evaluate import metrics_table, run_evaluate

        out_dir = out or Path(cfg.eval.out)
        places.update({"--out": out_dir, "cache_dir": cfg.cache_dir})
        chosen = method_list if method_list is not None else cfg.eval.methods
        # The small LM writes guided rationales, and its tokenizer counts every method's context.
        small = program is None and ("guided" in chosen or cfg.data.max_context_tokens is not None)
        _preflight(cfg, out_dir, roles=("small_lm", "large_lm") if small else ("large_lm",))
        _check_endpoints(cfg)
        with _locked(out_dir, "lmcot evaluate"):
            metrics = run_evaluate(cfg, methods=method_list, out_dir=out_dir, limit=limit, program_dir=program)
    table_console().print(metrics_table(metrics))
    _say("", "", f"wrote {out_dir}/metrics.json, {out_dir}/predictions.jsonl, {out_dir}/config.json")


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
    _setup_logging(verbose)
    with _guard(verbose, f"finished stages, teacher traces ({out}/kd/traces.jsonl), training checkpoints and cached "
                "LM calls are kept; rerun the same command to resume") as places:
        places["--out"] = out
        extra = list(overrides or [])
        if stages:
            extra.append(f"stages=[{stages}]")
        if skip_bad:
            extra.append("data.skip_bad=true")
        cfg = _load(config, extra)
        places["cache_dir"] = cfg.cache_dir
        _print_config(cfg, verbose, out / "config.json")
        _note_remote_code(cfg)
        from lmcot.optimizers.compiler import compile_from_config
        from lmcot.optimizers.dev_report import report_table

        _preflight(cfg, out, roles=("small_lm", "large_lm", "kd.teacher", "rationale_metrics.judge"), training=True)
        _check_endpoints(cfg, teacher="kd" in cfg.stages, judge="rl" in cfg.stages)
        with _locked(out, "lmcot compile"):
            report = compile_from_config(cfg, out)
    if any(k in report for k in ("untrained", "compiled")):
        table_console().print(report_table(report))
    _say("", "", f"compiled program: {out}  (evaluate it with: lmcot evaluate --program {out})")


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
    _setup_logging(verbose)
    with _guard(verbose, "nothing written; the judge calls that finished are cached, so a rerun does not pay for "
                "them again") as places:
        cfg = _load(config, overrides)
        places.update({"--out": out or rationales.parent, "cache_dir": cfg.cache_dir})
        _print_config(cfg, verbose)
        _note_remote_code(cfg)
        from lmcot.lms import check_endpoint
        from lmcot.metrics.rationale import summarize
        from lmcot.preflight import PathError
        from lmcot.commands.score import choose_scorer, render_score_table, run_score, score_backends

        out_path = out or rationales.with_suffix(".scores.jsonl")
        if out_path.is_dir():
            raise PathError(f"{out_path}: --out must be a file (per-row scores JSONL), but it is a folder")
        judged = "judge" in cfg.rationale_metrics.backends.values()
        _preflight(cfg, out_path.parent, roles=("rationale_metrics.judge",) if judged else (), scoring=True)
        if judged:
            check_endpoint(cfg.judge(), "rationale_metrics.judge" if cfg.rationale_metrics.judge else "large_lm")
        # Which model reads the rationales for fluency / naturalness, and why: never a silent fallback.
        cfg, reference, why = choose_scorer(cfg, rationales, explicit=config is not None)
        if any(cfg.rationale_metrics.backends[a] == "cheap" for a in ("fluency", "naturalness")):
            _say("scorer:", "bold", f"fluency and naturalness by {f'perplexity under {reference}' if reference else 'the lexical proxy'}"
                 f": {why}")
        rows, means = run_score(cfg, rationales, out_path, progress=True, reference=(reference, why))
    backends = score_backends(cfg, (reference, why))
    methods = list(dict.fromkeys(r["method"] for r in rows if "method" in r))
    if len(methods) > 1:  # a predictions.jsonl: CoT prompting's and the small LM's rationales apart
        for method in methods:
            table_console().print(render_score_table(summarize([r for r in rows if r.get("method") == method]),
                                               backends=backends, title=Text(f"Rationale quality of {method} (0-1)")))
    else:
        table_console().print(render_score_table(means, backends=backends))
    _say("", "", f"wrote {out_path}")


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
    _setup_logging(verbose)
    with _guard(verbose, f"finished steps ({out}/steps/), trained students and cached LM calls are kept; rerun the "
                "same command to resume") as places:
        places["--out"] = out
        cfg = _load(config, (overrides or []) + (["data.skip_bad=true"] if skip_bad else []))
        places["cache_dir"] = cfg.cache_dir
        _print_config(cfg, verbose, out / "config.json")
        _note_remote_code(cfg)
        from lmcot.experiment.grid import students_needed
        from lmcot.experiment.report import render
        from lmcot.experiment.run import run_experiment
        from lmcot.experiment.students import training_config

        _preflight(training_config(cfg, students_needed(cfg.experiment)), out,
                   roles=("small_lm", "large_lm", "kd.teacher", "rationale_metrics.judge"), training=True, scoring=True)
        _check_endpoints(cfg, teacher=True, judge=True)
        with _locked(out, "lmcot experiment"):
            run_experiment(cfg, out, say=lambda m: _say("experiment", "bold cyan", m))
            paths = render(out)
    _print_methods_table(out)
    _say("", "", f"wrote {out}/results.json, {paths['md']}, {paths['html']}, {paths['plots']}/")


def _print_methods_table(out: Path) -> None:
    """The report's main table in the terminal (from the tables.json the report wrote)."""
    import json

    from rich.table import Table

    t = json.loads((out / "tables.json").read_text(encoding="utf-8"))["methods"]
    # The answer columns are the task's (EM/F1 for spans, one accuracy for numbers and labels, the user metric).
    keep = [c for c in t["columns"] if "95% CI" not in c and c not in ("prompt tok", "completion tok")]
    table = Table(title=t["title"])
    for col in keep:
        table.add_column(col, justify="left" if col == "method" else "right")
    for row in t["rows"]:
        table.add_row(*(Text(row[t["columns"].index(c)]) for c in keep))
    table_console().print(table)


@app.command()
def report(
    out: Path = typer.Argument(..., help="An experiment folder (with results.json)."),
    verbose: bool = VerboseOpt,
) -> None:
    """Re-render report.md, report.html and the plots from OUT/results.json (no LM call)."""
    with _guard(verbose, "the report may be half written; run the same command again") as places:
        places["OUT"] = out
        from lmcot.experiment.report import render

        paths = render(out)
    _say("", "", f"wrote {paths['md']}, {paths['html']}, {paths['plots']}/")


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
    _setup_logging(verbose)
    with _guard(verbose, "server stopped; every request in flight was answered, and the LM calls that finished are "
                "cached") as places:
        import re

        from lmcot.commands.serve import is_loopback

        if api_key_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", api_key_env):
            _fail("--api-key-env must be the NAME of an environment variable that holds the key, not the key itself")
        if api_key_env is None and not is_loopback(host):
            _fail(f"--host {host} is not a loopback address: anyone who reaches it could spend your large-LM budget; "
                  "pass --api-key-env NAME (clients then send that key as a bearer token) or use --host 127.0.0.1")
        key = os.environ.get(api_key_env) if api_key_env else None
        if api_key_env and not key:
            _fail(f"--api-key-env {api_key_env}: the environment variable is not set (or empty)")
        from lmcot.redact import register_secret

        register_secret(key)
        cfg = _load(config, overrides, program)
        _print_config(cfg, verbose)
        _note_remote_code(cfg)
        places.update({"cache_dir": cfg.cache_dir})
        _preflight(cfg, roles=("large_lm",))
        _check_endpoints(cfg)
        from lmcot.commands.serve import run_server

        run_server(cfg, program, host=host, port=port, api_key=key, request_timeout=request_timeout,
                   max_request_bytes=max_request_bytes, model_name=served_model_name,
                   say=lambda m: _say("serve:", "bold cyan", m))


def main() -> None:  # pragma: no cover - console script entry
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
