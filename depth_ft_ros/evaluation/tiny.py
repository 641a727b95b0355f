"""Tiny randomly initialised checkpoints with the real file layout, for tests, demos and benchmarks.

make_tiny_model(out_dir, "e2e-ft-depth") writes what the Hub checkpoints hold: model_index.json,
unet/, vae/, scheduler/, text_encoder/ + tokenizer/ (a tiny CLIP with a byte-level vocabulary built
here, no Hub access) and a README.md model card. Every config value comes from the family's record
of its published checkpoint (families/published.py): scheduler class, prediction_type, timestep
spacing, SD2 noise schedule, model_index class name and fields, sample sizes, VAE scaling factor,
Lotus' projection class embedding. The networks keep the real structure (VAE: 4 blocks, 8x; UNet:
SD2's 4 down / 4 up blocks, 8x down-sampling, so latent sizes that are not a multiple of 8 take the
UNet's forward_upsample_size path as with the real model); only the widths are small (2 layers per block
as in SD2), and the UNet's highest-resolution level has no cross-attention (attention over
96x72 latent tokens would dominate CPU time). A 640x480 frame at processing resolution 768 runs in a
few tenths of a second on a CPU. The same seed gives byte-identical files, and the same VAE for every
family.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from depth_ft_ros.model.families import FAMILIES, get_family
from depth_ft_ros.model.families.checkpoint import quiet_hf_progress
from depth_ft_ros.model.families.published import (
    PUBLISHED,
    SD2_DOWN_BLOCKS,
    SD2_UP_BLOCKS,
    SD_VAE_SCALING_FACTOR,
    PublishedCheckpoint,
)

TEXT_DIM = 32  # cross_attention_dim (1024 in SD2)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte -> printable character table (the base alphabet of the BPE vocabulary)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


def _tokenizer(out_dir: Path) -> int:
    """Write a CLIP BPE tokenizer in the SD2 layout (vocab.json, merges.txt, configs): the 512
    single-character tokens + BOS/EOS and no merges. Returns the vocabulary size."""
    chars = list(_bytes_to_unicode().values())
    tokens = [*chars, *(c + "</w>" for c in chars), "<|startoftext|>", "<|endoftext|>"]
    folder = out_dir / "tokenizer"
    folder.mkdir(parents=True, exist_ok=True)
    specials = {
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
    }
    files = {
        "vocab.json": {token: index for index, token in enumerate(tokens)},
        "special_tokens_map.json": specials,
        "tokenizer_config.json": {
            **specials, "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
        },
    }
    for name, content in files.items():
        (folder / name).write_text(json.dumps(content, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return len(tokens)


def _text_encoder(out_dir: Path, vocab_size: int) -> None:
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=TEXT_DIM, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, projection_dim=TEXT_DIM, hidden_act="gelu",
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
    )
    with quiet_hf_progress():
        CLIPTextModel(config).save_pretrained(out_dir / "text_encoder")


def _vae(out_dir: Path, sample_size: int) -> None:
    from diffusers import AutoencoderKL

    # 4 blocks: the real 8x downsampling (the SD2 VAE has 128/256/512/512 channels, 2 layers per block).
    AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4, sample_size=sample_size,
        scaling_factor=SD_VAE_SCALING_FACTOR,
    ).save_pretrained(out_dir / "vae")


def _unet(out_dir: Path, in_channels: int, published: PublishedCheckpoint) -> None:
    from diffusers import UNet2DConditionModel

    # SD2's block layout (4 levels, 8x down-sampling) with small widths; the first level's
    # cross-attention blocks become plain ones (see the module docstring).
    down = ("DownBlock2D", *SD2_DOWN_BLOCKS[1:])
    up = (*SD2_UP_BLOCKS[:-1], "UpBlock2D")
    UNet2DConditionModel(
        sample_size=published.unet_sample_size, in_channels=in_channels, out_channels=4,
        down_block_types=down, up_block_types=up, block_out_channels=(16, 32, 32, 32), layers_per_block=2,
        cross_attention_dim=TEXT_DIM, attention_head_dim=(2, 2, 4, 4), use_linear_projection=True,
        norm_num_groups=8, **published.unet_extra,
    ).save_pretrained(out_dir / "unet")


def _scheduler(out_dir: Path, published: PublishedCheckpoint) -> None:
    import diffusers

    scheduler_cls = getattr(diffusers, published.scheduler_class)
    scheduler_cls.from_config(published.scheduler_config()).save_pretrained(out_dir / "scheduler")


def _model_index(family: str) -> dict[str, object]:
    import diffusers

    published = PUBLISHED[family]
    components = {
        "scheduler": ["diffusers", published.scheduler_class],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    return {"_diffusers_version": diffusers.__version__, **published.model_index, **components}


def _model_card(family: str, seed: int) -> str:
    spec = get_family(family)
    return (
        "---\nlibrary_name: diffusers\nlicense: apache-2.0\n"
        f"tags:\n- {family}\n- {spec.task}\n- tiny-random\n---\n"
        f"# tiny-random-{family}\n\n"
        f"Randomly initialised {spec.summary} checkpoint (seed {seed}) with the real file layout, written by "
        "`depth-ft-ros make-tiny-model`. Its outputs are meaningless; it exists to test and time the code.\n"
    )


def make_tiny_model(out_dir: str | Path, family: str, seed: int = 0) -> Path:
    """Write a tiny random checkpoint of `family` into out_dir (created); returns out_dir."""
    spec = get_family(family)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    published = PUBLISHED[family]
    # One fixed seed per component: the VAE (and text encoder) are identical across families, as the
    # real checkpoints all share the SD2 VAE.
    builders = (
        (0, lambda: _vae(out, published.vae_sample_size)),
        (1, lambda: _text_encoder(out, _tokenizer(out))),
        (2, lambda: _unet(out, spec.unet_in_channels, published)),
    )
    for offset, build in builders:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1000 + offset)
            build()
    _scheduler(out, published)
    (out / "model_index.json").write_text(json.dumps(_model_index(family), indent=2) + "\n")
    (out / "README.md").write_text(_model_card(family, seed))
    return out


TINY_FAMILIES = tuple(FAMILIES)
