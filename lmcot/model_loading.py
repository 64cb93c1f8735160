"""Loading a Hugging Face checkpoint for lmcot: device and dtype choice, causal vs encoder-decoder,
model + tokenizer with clear errors (missing or unexpected weights name the folder), and the
fingerprint of loaded weights. Shared by the inference engine (``lmcot.hf_engine``), distillation
and RL, so all three load a checkpoint the same way."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


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

    @property
    def is_encoder_decoder(self) -> bool:
        return bool(getattr(self.config, "is_encoder_decoder", False))


def resolve_source(model: str | ModelSource, *, trust_remote_code: bool = False,
                   revision: str | None = None) -> ModelSource:
    """The one resolution of a model setting (a folder, hub id, ``pkg://`` file or GGUF; lmcot.checkpoint)
    with its ``revision`` and ``trust_remote_code``: where its files are and its config, no weights
    loaded. A ``ModelSource`` is returned as it is."""
    if isinstance(model, ModelSource):
        return model
    from transformers import AutoConfig

    from lmcot.checkpoint import resolve_model, resolve_package_file

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
    import shutil

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
    from lmcot.errors import ModelLoadError

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
        from lmcot.errors import ModelLoadError, UserError

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
    any training step changes it, and it costs milliseconds even for a 1B model."""
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
