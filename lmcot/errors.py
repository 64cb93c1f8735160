"""The one exception type for "the person running lmcot must change something" (a bad config, file,
path, program folder or endpoint), as opposed to a bug in lmcot.

The CLI prints a :class:`UserError` as one line and exits 2; any other exception is a bug and keeps
its traceback. The subclasses also derive from the builtin type they replaced (``ValueError``,
``RuntimeError``), so code that caught those keeps working.
"""

from __future__ import annotations


class UserError(Exception):
    """Input or environment the user must fix; the message is one line naming the file, record, key
    or path."""


class RunError(UserError, RuntimeError):
    """A run that cannot go on for a reason outside lmcot (every call failed, nothing to train on)."""


class ModelLoadError(UserError, ValueError):
    """A model folder that cannot be loaded as it is (missing, corrupt, mismatched or changed weights,
    code that would need ``trust_remote_code``)."""


class EndpointError(UserError, RuntimeError):
    """An LM endpoint that cannot serve the run: a host that does not resolve or refuses connections,
    or a call that got no reply within ``total_timeout`` (the message names the config keys)."""


class PathError(UserError, ValueError):
    """A path that cannot be used as given (an output or cache folder, a model folder or file); the
    message names it and the option or config key."""
