"""What every command does around its own work: read the config, show what differs, check everything
that can be checked before the first paid call, and turn errors into one line.

    with guard(verbose, "nothing written; ...") as places:
        cfg = prepare(config, overrides, out=out, places=places, verbose=verbose)
        check_before_calls(cfg, out, roles=("small_lm", "large_lm"))   # lmcot.preflight: or check_local, its own
                                                                       # checks, check_endpoints
        ... the command's library call ...

Errors: a :class:`lmcot.errors.UserError` (bad config, file, path, program folder, endpoint), an
``OSError`` or a provider error (authentication, billing, unreachable) is the user's to fix: one line
on stderr naming the file, record or key, exit 2 (``--verbose`` adds the traceback). Anything else is
a bug in lmcot: its traceback is always shown (exit 1), because the person who hit it should not have
to rerun a long or paid command to get what a bug report needs. Ctrl-C exits 130 and says what was
kept. Every message is plain text with secrets redacted (``lmcot.console``).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from lmcot.console import print_exception, say


def fail(message: str, code: int = 2) -> None:
    say("error:", "bold red", message)
    raise typer.Exit(code)


def _fail_with(exc: BaseException, verbose: bool) -> None:
    """The user's mistake in one line (``--verbose`` adds the traceback)."""
    if verbose:
        print_exception()
    fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _bug(exc: BaseException) -> None:
    """Not the user's input: the traceback (always), then one line saying so; exit 1."""
    print_exception()
    say("internal error:", "bold red", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
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
def guard(verbose: bool, interrupted: str, *, lm_calls: bool = True):
    """Run a command body: user errors as one line, Ctrl-C with ``interrupted``, bugs with traceback.
    Yields a dict the body fills with its writable places (``--out``, ``cache_dir``), named when a
    write fails for lack of space (lmcot.disk). ``lm_calls=False``: a body that calls no LM (its
    logging setup imports no LM library)."""
    from lmcot.console import setup_logging

    setup_logging(verbose, lm_calls=lm_calls)
    places: dict[str, object] = {}
    try:
        yield places
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        say("interrupted:", "bold yellow", interrupted)
        raise typer.Exit(130)
    except Exception as exc:
        from lmcot.disk import disk_full_error

        full = disk_full_error(exc, places)
        if full is not None:
            _fail_with(full, verbose)
        if isinstance(exc, _user_errors()):
            _fail_with(exc, verbose)
        _bug(exc)


def load(config: Optional[Path], overrides: Optional[list[str]], program: Optional[Path] = None):
    """The config: the YAML and ``--set``; with ``--program``, a program folder checked first, before
    anything else is read, built or sent (``lmcot.program_trust``). Without ``--config`` the user's
    settings are lmcot's defaults and ``--set``; the folder adds only what defines the program."""
    from lmcot.config import load_config

    if program is None:
        return load_config(config, list(overrides or []))
    from lmcot.programs.program_io import large_lm_note, program_config, read_program

    folder = read_program(program)
    mine = load_config(config, list(overrides or [])) if config is not None else None  # the user's own, if any
    cfg = program_config(folder, mine, list(overrides or []))
    note = large_lm_note(folder, cfg)
    if note:
        say("note:", "bold cyan", note)
    return cfg


def prepare(config: Optional[Path], overrides: Optional[list[str]], *, out: Path, places: dict[str, object],
            verbose: bool):
    """The config of a command that writes a run folder ``out`` (compile, experiment): read, shown, and its
    writable places (``--out``, ``cache_dir``) named in ``guard``'s ``places``; ``out/config.json`` will hold it."""
    places["--out"] = out
    cfg = load(config, overrides)
    places["cache_dir"] = cfg.cache_dir
    show_config(cfg, verbose, out / "config.json")
    return cfg


def show_config(cfg, verbose: bool = False, saved: Optional[Path] = None) -> None:
    """The settings that differ from the defaults (the whole config with ``--verbose``); ``saved``
    names the file that will hold the whole config."""
    import json

    import yaml

    from lmcot.config import config_changes
    from lmcot.console import rule

    where = f"; all settings: {saved}" if saved is not None else ""
    if verbose:
        rule("resolved config")
        say("", "", yaml.safe_dump(cfg.to_public_dict(), sort_keys=False).rstrip())
        rule()
        return
    changes = config_changes(cfg)
    if not changes:
        say("config:", "bold", f"the defaults{where} (--verbose prints them)")
        return
    say("config:", "bold", f"{len(changes)} setting(s) differ from the defaults{where} (--verbose prints all)")

    def shown(value) -> str:
        plain = isinstance(value, str) and value and not any(c.isspace() for c in value)
        return value if plain else json.dumps(value, ensure_ascii=False)

    sections: dict[str, list[str]] = {}  # one line per section: section: key=value key=value
    for key, value in changes.items():
        section, _, rest = key.partition(".")
        sections.setdefault(section if rest else "", []).append(f"{rest or section}={shown(value)}")
    for section, items in sections.items():
        say("", "", f"  {section + ': ' if section else ''}{' '.join(items)}")


def methods_arg(methods: Optional[str]) -> Optional[list[str]]:
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
