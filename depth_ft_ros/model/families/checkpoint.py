"""The checkpoint on disk: finding it (folder or Hub cache), checking its files, loading its parts.

Layout (diffusers): model_index.json, unet/, vae/, scheduler/, and text_encoder/ + tokenizer/, which
are only read once to compute the empty-prompt embedding; that embedding is cached in
empty_text_embedding.safetensors beside the weights, or under the user cache dir when the folder is
read-only or managed by the Hugging Face cache.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib.util
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from depth_ft_ros.errors import ModelLoadError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
EMBEDDING_FILE = "empty_text_embedding.safetensors"
FETCH_PATTERNS = ["*.json", "*.txt", "*.md", "*.safetensors"]
_WEIGHT_FILES = {
    "unet": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
    "vae": ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
    "text_encoder": ("model.safetensors", "pytorch_model.bin"),
}
_SHA256_MEMO: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class ResolvedModel:
    path: Path  # the checkpoint folder
    model_id: str  # the Hub id, or the folder's absolute path
    hub_id: str | None


@dataclass(frozen=True)
class WeightsFile:
    path: Path
    variant: str | None  # "fp16" when only the fp16 variant is present


@contextlib.contextmanager
def quiet_hf_progress() -> Iterator[None]:
    """No transformers progress bars (weights loading/writing) in a node's log."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def fetch_command(repo_id: str, revision: str | None = None) -> str:
    return f"depth-ft-ros fetch-model {repo_id}" + (f" --revision {revision}" if revision else "")


def hub_cache_dir() -> str:
    """Read at call time so HF_HOME / HF_HUB_CACHE set after import still count."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return constants.HF_HUB_CACHE


def hub_offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return flag or bool(constants.HF_HUB_OFFLINE)


def download(repo_id: str, revision: str | None = None, *, local_only: bool = False) -> Path:
    """snapshot_download of the files inference needs (configs, card, safetensors weights)."""
    from huggingface_hub import snapshot_download

    path = snapshot_download(
        repo_id,
        revision=revision,
        cache_dir=hub_cache_dir(),
        allow_patterns=FETCH_PATTERNS,
        local_files_only=local_only,
    )
    return Path(path)


def resolve_model(model: str | os.PathLike[str], revision: str | None = None) -> ResolvedModel:
    path = Path(model).expanduser()
    if path.is_dir():
        return ResolvedModel(path.resolve(), str(path.resolve()), None)
    text = str(model)
    if path.exists():
        raise ModelLoadError(f"model {text} is a file; expected a checkpoint folder or a Hugging Face Hub id")
    if not HUB_ID.match(text):
        raise ModelLoadError(f"model folder {text} does not exist (and it is not a Hugging Face Hub id)")
    try:
        return ResolvedModel(download(text, revision, local_only=True), text, text)
    except Exception as exc:  # not cached: LocalEntryNotFoundError and friends
        cached_error = exc
    if hub_offline():
        raise ModelLoadError(
            f"model {text} is not in the Hugging Face cache ({hub_cache_dir()}) and HF_HUB_OFFLINE is set; "
            f"fetch it where there is network with `{fetch_command(text, revision)}` "
            f"(same HF_HOME), then run offline"
        ) from cached_error
    try:
        return ResolvedModel(download(text, revision), text, text)
    except Exception as exc:
        raise ModelLoadError(
            f"model {text} is not in the Hugging Face cache ({hub_cache_dir()}) and could not be downloaded "
            f"({type(exc).__name__}: {exc}); fetch it where there is network with "
            f"`{fetch_command(text, revision)}`, or pass a local checkpoint folder"
        ) from exc


def read_json(model_dir: Path, relative: str) -> dict[str, Any]:
    path = model_dir / relative
    if not path.is_file():
        raise ModelLoadError(f"checkpoint {model_dir} is missing {relative}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} is not a JSON object")
    return data


def find_weights(model_dir: Path, component: str, *, required: bool = True) -> WeightsFile | None:
    """The weights file of one component: full precision first, then the fp16 variant."""
    names = _WEIGHT_FILES[component]
    for variant in (None, "fp16"):
        for name in names:
            stem, ext = name.rsplit(".", 1)
            candidate = f"{stem}.{variant}.{ext}" if variant else name
            for suffix in ("", ".index.json"):  # a sharded checkpoint has an index file instead
                path = model_dir / component / (candidate + suffix)
                if path.is_file():
                    return WeightsFile(path, variant)
    if required:
        raise ModelLoadError(
            f"checkpoint {model_dir} is missing {component}/{names[0]} (nor {names[1]} or an fp16 variant); "
            f"the folder is incomplete, fetch it again"
        )
    return None


def in_hub_cache(path: Path) -> bool:
    return any(part.startswith("models--") for part in path.resolve().parts)


def file_identity(path: Path) -> str:
    """A content key: the blob name for Hub-cache files (their sha256), else a memoised sha256."""
    real = path.resolve()
    if real.parent.name == "blobs" and re.fullmatch(r"[0-9a-f]{64}", real.name):
        return real.name
    stat = real.stat()
    memo_key = (str(real), stat.st_size, stat.st_mtime_ns)
    if memo_key not in _SHA256_MEMO:
        digest = hashlib.sha256()
        with real.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        _SHA256_MEMO[memo_key] = digest.hexdigest()
    return _SHA256_MEMO[memo_key]


def component_identity(model_dir: Path, component: str) -> str:
    """A content key of one component (e.g. the VAE): equal keys mean the same network with the same weights.

    sha256 over its config (without diffusers' bookkeeping fields, which start with "_") and the content key of
    each weights file (every shard of a sharded checkpoint), so two checkpoint folders that ship one VAE get one
    key wherever they are stored."""
    config = read_json(model_dir, f"{component}/config.json")
    weights = find_weights(model_dir, component)
    assert weights is not None
    files = [weights.path]
    if weights.path.name.endswith(".index.json"):  # sharded: the index names the shards holding the tensors
        index = json.loads(weights.path.read_text(encoding="utf-8"))
        files += [weights.path.parent / shard for shard in sorted(set(index.get("weight_map", {}).values()))]
    digest = hashlib.sha256()
    digest.update(json.dumps({k: v for k, v in config.items() if not k.startswith("_")}, sort_keys=True).encode())
    for path in files:
        digest.update(file_identity(path).encode())
    return digest.hexdigest()


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "depth_ft_ros"


def _embedding_paths(model_dir: Path) -> list[Path]:
    # Keyed by the resolved folder: a Hub snapshot folder name is the revision's commit hash.
    key = hashlib.sha256(str(model_dir.resolve()).encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_dir.resolve().name)[-40:]
    in_user_cache = user_cache_dir() / "empty_text_embedding" / f"{slug}-{key}.safetensors"
    return [in_user_cache] if in_hub_cache(model_dir) else [model_dir / EMBEDDING_FILE, in_user_cache]


def _text_encoder_stamp(weights: WeightsFile) -> str:
    stat = weights.path.resolve().stat()
    return f"{weights.path.name}:{stat.st_size}:{stat.st_mtime_ns}"


def _compute_empty_embedding(model_dir: Path, weights: WeightsFile) -> torch.Tensor:
    from transformers import CLIPTextModel, CLIPTokenizer

    if not (model_dir / "tokenizer").is_dir():
        raise ModelLoadError(f"checkpoint {model_dir} is missing tokenizer/ (needed once for the text embedding)")
    try:
        tokenizer = CLIPTokenizer.from_pretrained(model_dir / "tokenizer")
        with quiet_hf_progress():
            encoder = CLIPTextModel.from_pretrained(
                model_dir / "text_encoder", variant=weights.variant, torch_dtype=torch.float32
            )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load the text encoder of {model_dir}: {exc}") from exc
    # Same call as diffusers' Marigold pipelines: "" -> [BOS, EOS], no padding.
    ids = tokenizer(
        "", padding="do_not_pad", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    with torch.inference_mode():
        embedding = encoder(ids)[0].float().clone()
    del encoder
    gc.collect()
    return embedding


def empty_text_embedding(model_dir: Path) -> torch.Tensor:
    """[1, tokens, dim] float32 CPU embedding of the empty prompt, from the cache when it is current."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    weights = find_weights(model_dir, "text_encoder", required=False)
    stamp = _text_encoder_stamp(weights) if weights else None
    paths = _embedding_paths(model_dir)
    for path in paths:
        if path.is_file():
            try:
                with safe_open(str(path), framework="pt") as handle:
                    if stamp is None or (handle.metadata() or {}).get("text_encoder") == stamp:
                        return handle.get_tensor("embedding")
            except (OSError, ValueError, KeyError):
                pass  # unreadable cache: recompute below
    if weights is None:
        raise ModelLoadError(
            f"checkpoint {model_dir} is missing text_encoder/model.safetensors and has no cached "
            f"{EMBEDDING_FILE}; one of the two is needed for the empty-prompt embedding"
        )
    embedding = _compute_empty_embedding(model_dir, weights)
    for path in paths:  # first writable location wins; a read-only cache is not an error
        if _write_atomically(path, lambda name: save_file(
            {"embedding": embedding.contiguous()}, name, metadata={"text_encoder": stamp or ""}
        )):
            break
    return embedding


def _write_atomically(path: Path, write: Any) -> bool:
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
            tmp_name = tmp.name
        write(tmp_name)
        os.replace(tmp_name, path)
        return True
    except OSError:
        if tmp_name and os.path.exists(tmp_name):
            os.unlink(tmp_name)
        return False


def load_component(model_dir: Path, component: str, dtype: torch.dtype) -> torch.nn.Module:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    cls = {"unet": UNet2DConditionModel, "vae": AutoencoderKL}[component]
    weights = find_weights(model_dir, component)
    assert weights is not None
    try:
        module = cls.from_pretrained(
            model_dir, subfolder=component, torch_dtype=dtype, variant=weights.variant,
            # Without accelerate diffusers falls back to a full load anyway; say so to skip its warning.
            low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None,
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"cannot load {component}/ of {model_dir}: {exc}") from exc
    return module.eval().requires_grad_(False)
