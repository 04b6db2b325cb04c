"""Tests for provenance.importers: other tools' unsigned generation metadata.

Every input here is written by hand in the layout the tool itself writes, then
carried in real PNG/JPEG/WebP files built with Pillow (and, where Pillow would
hide what is being tested, with hand-made chunks).
"""

from __future__ import annotations

import copy
import io
import json
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from provenance.errors import ImportFormatError
from provenance.importers import (
    ImportedStep,
    ImportResult,
    import_from_image,
    parse_a1111_parameters,
    parse_comfyui,
    parse_invokeai,
    parse_novelai,
)

# --- fixtures in each tool's own layout --------------------------------------------

A1111_FULL = (
    "masterpiece, best quality, 1girl, <lora:add_detail:0.8>, solo,\n"
    "looking at viewer, (detailed eyes:1.2), <lora:more_details:0.5>\n"
    "Negative prompt: (worst quality:1.4), low quality, easynegative,\n"
    "bad hands, extra fingers\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567890, "
    "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, VAE hash: 735e4c3a44, "
    "VAE: vae-ft-mse-840000-ema-pruned.safetensors, Denoising strength: 0.45, Clip skip: 2, "
    "Hires upscale: 2, Hires steps: 15, Hires upscaler: R-ESRGAN 4x+ Anime6B, "
    'Lora hashes: "add_detail: 7c6bad76eb54, more_details: 3b8aa1d351ef", '
    'TI hashes: "easynegative: c74b4e810b03", '
    'Hires prompt: "a \\"quoted\\" prompt, with commas", Version: v1.10.1'
)

A1111_OLD = (
    "a photo of an astronaut riding a horse on mars\n"
    "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 42, Size: 768x512, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.6.0"
)

# ComfyUI's default txt2img graph, as SaveImage writes it into the PNG "prompt" chunk.
COMFY_DEFAULT: dict[str, Any] = {
    "3": {
        "inputs": {
            "seed": 156680208700286,
            "steps": 20,
            "cfg": 8,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
        "class_type": "KSampler",
        "_meta": {"title": "KSampler"},
    },
    "4": {
        "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
        "class_type": "CheckpointLoaderSimple",
        "_meta": {"title": "Load Checkpoint"},
    },
    "5": {
        "inputs": {"width": 512, "height": 512, "batch_size": 1},
        "class_type": "EmptyLatentImage",
        "_meta": {"title": "Empty Latent Image"},
    },
    "6": {
        "inputs": {
            "text": "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,",
            "clip": ["4", 1],
        },
        "class_type": "CLIPTextEncode",
        "_meta": {"title": "CLIP Text Encode (Prompt)"},
    },
    "7": {
        "inputs": {"text": "text, watermark", "clip": ["4", 1]},
        "class_type": "CLIPTextEncode",
        "_meta": {"title": "CLIP Text Encode (Prompt)"},
    },
    "8": {
        "inputs": {"samples": ["3", 0], "vae": ["4", 2]},
        "class_type": "VAEDecode",
        "_meta": {"title": "VAE Decode"},
    },
    "9": {
        "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]},
        "class_type": "SaveImage",
        "_meta": {"title": "Save Image"},
    },
}

# The same default graph as the UI "workflow" chunk stores it.
COMFY_DEFAULT_WORKFLOW: dict[str, Any] = {
    "last_node_id": 9,
    "last_link_id": 9,
    "nodes": [
        {
            "id": 7,
            "type": "CLIPTextEncode",
            "pos": [413, 389],
            "size": [425.3, 180.6],
            "flags": {},
            "order": 3,
            "mode": 0,
            "inputs": [{"name": "clip", "type": "CLIP", "link": 5}],
            "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [6], "slot_index": 0}],
            "properties": {"Node name for S&R": "CLIPTextEncode"},
            "widgets_values": ["text, watermark"],
        },
        {
            "id": 6,
            "type": "CLIPTextEncode",
            "pos": [415, 186],
            "size": [422.8, 164.3],
            "flags": {},
            "order": 2,
            "mode": 0,
            "inputs": [{"name": "clip", "type": "CLIP", "link": 3}],
            "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [4], "slot_index": 0}],
            "properties": {"Node name for S&R": "CLIPTextEncode"},
            "widgets_values": ["beautiful scenery nature glass bottle landscape, , purple galaxy bottle,"],
        },
        {
            "id": 5,
            "type": "EmptyLatentImage",
            "pos": [473, 609],
            "size": [315, 106],
            "flags": {},
            "order": 1,
            "mode": 0,
            "outputs": [{"name": "LATENT", "type": "LATENT", "links": [2], "slot_index": 0}],
            "properties": {"Node name for S&R": "EmptyLatentImage"},
            "widgets_values": [512, 512, 1],
        },
        {
            "id": 3,
            "type": "KSampler",
            "pos": [863, 186],
            "size": [315, 262],
            "flags": {},
            "order": 4,
            "mode": 0,
            "inputs": [
                {"name": "model", "type": "MODEL", "link": 1},
                {"name": "positive", "type": "CONDITIONING", "link": 4},
                {"name": "negative", "type": "CONDITIONING", "link": 6},
                {"name": "latent_image", "type": "LATENT", "link": 2},
            ],
            "outputs": [{"name": "LATENT", "type": "LATENT", "links": [7], "slot_index": 0}],
            "properties": {"Node name for S&R": "KSampler"},
            "widgets_values": [156680208700286, "randomize", 20, 8, "euler", "normal", 1],
        },
        {
            "id": 8,
            "type": "VAEDecode",
            "pos": [1209, 188],
            "size": [210, 46],
            "flags": {},
            "order": 5,
            "mode": 0,
            "inputs": [
                {"name": "samples", "type": "LATENT", "link": 7},
                {"name": "vae", "type": "VAE", "link": 8},
            ],
            "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [9], "slot_index": 0}],
            "properties": {"Node name for S&R": "VAEDecode"},
        },
        {
            "id": 9,
            "type": "SaveImage",
            "pos": [1451, 189],
            "size": [210, 58],
            "flags": {},
            "order": 6,
            "mode": 0,
            "inputs": [{"name": "images", "type": "IMAGE", "link": 9}],
            "properties": {},
            "widgets_values": ["ComfyUI"],
        },
        {
            "id": 4,
            "type": "CheckpointLoaderSimple",
            "pos": [26, 474],
            "size": [315, 98],
            "flags": {},
            "order": 0,
            "mode": 0,
            "outputs": [
                {"name": "MODEL", "type": "MODEL", "links": [1], "slot_index": 0},
                {"name": "CLIP", "type": "CLIP", "links": [3, 5], "slot_index": 1},
                {"name": "VAE", "type": "VAE", "links": [8], "slot_index": 2},
            ],
            "properties": {"Node name for S&R": "CheckpointLoaderSimple"},
            "widgets_values": ["v1-5-pruned-emaonly.safetensors"],
        },
    ],
    "links": [
        [1, 4, 0, 3, 0, "MODEL"],
        [2, 5, 0, 3, 3, "LATENT"],
        [3, 4, 1, 6, 0, "CLIP"],
        [4, 6, 0, 3, 1, "CONDITIONING"],
        [5, 4, 1, 7, 0, "CLIP"],
        [6, 7, 0, 3, 2, "CONDITIONING"],
        [7, 3, 0, 8, 0, "LATENT"],
        [8, 4, 2, 8, 1, "VAE"],
        [9, 8, 0, 9, 0, "IMAGE"],
    ],
    "groups": [],
    "config": {},
    "extra": {"ds": {"scale": 1, "offset": [0, 0]}},
    "version": 0.4,
}

# Two LoRAs, clip skip, a seed and a prompt from literal nodes, combined
# conditioning through a ControlNet, and a hires pass (a second KSampler with a
# smaller node id, so order must come from the graph, not the ids).
COMFY_LORA_HIRES: dict[str, Any] = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "dreamshaper_8.safetensors"}},
    "2": {
        "class_type": "LoraLoader",
        "inputs": {
            "lora_name": "add_detail.safetensors",
            "strength_model": 0.8,
            "strength_clip": 0.7,
            "model": ["1", 0],
            "clip": ["1", 1],
        },
    },
    "3": {
        "class_type": "LoraLoader",
        "inputs": {
            "lora_name": "styles/watercolor.safetensors",
            "strength_model": 0.5,
            "strength_clip": 0.5,
            "model": ["2", 0],
            "clip": ["2", 1],
        },
    },
    "4": {"class_type": "CLIPSetLastLayer", "inputs": {"stop_at_clip_layer": -2, "clip": ["3", 1]}},
    "5": {"class_type": "PrimitiveString", "inputs": {"value": "a castle on a hill, watercolor"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": ["5", 0], "clip": ["4", 0]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "golden hour", "clip": ["4", 0]}},
    "8": {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["6", 0], "conditioning_2": ["7", 0]}},
    "9": {"class_type": "CLIPTextEncode", "inputs": {"text": "lowres, blurry", "clip": ["4", 0]}},
    "10": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "control_v11p_sd15_canny.pth"}},
    "11": {"class_type": "LoadImage", "inputs": {"image": "edges.png", "upload": "image"}},
    "12": {
        "class_type": "ControlNetApplyAdvanced",
        "inputs": {
            "strength": 0.6,
            "start_percent": 0.0,
            "end_percent": 1.0,
            "positive": ["8", 0],
            "negative": ["9", 0],
            "control_net": ["10", 0],
            "image": ["11", 0],
        },
    },
    "13": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 768, "batch_size": 1}},
    "14": {"class_type": "Seed (rgthree)", "inputs": {"seed": 987654321}},
    "20": {
        "class_type": "KSampler",
        "inputs": {
            "seed": ["14", 0],
            "steps": 25,
            "cfg": 6.5,
            "sampler_name": "dpmpp_2m",
            "scheduler": "karras",
            "denoise": 1.0,
            "model": ["3", 0],
            "positive": ["12", 0],
            "negative": ["12", 1],
            "latent_image": ["13", 0],
        },
    },
    "21": {
        "class_type": "LatentUpscaleBy",
        "inputs": {"upscale_method": "nearest-exact", "scale_by": 1.5, "samples": ["20", 0]},
    },
    "15": {
        "class_type": "KSampler",
        "inputs": {
            "seed": ["14", 0],
            "steps": 12,
            "cfg": 6.5,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 0.5,
            "model": ["3", 0],
            "positive": ["12", 0],
            "negative": ["12", 1],
            "latent_image": ["21", 0],
        },
    },
    "16": {"class_type": "VAEDecode", "inputs": {"samples": ["15", 0], "vae": ["1", 2]}},
    "17": {"class_type": "SaveImage", "inputs": {"filename_prefix": "hires", "images": ["16", 0]}},
}

# Flux through SamplerCustomAdvanced: settings live on the noise/guider/sampler/sigmas nodes.
COMFY_FLUX: dict[str, Any] = {
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox in snow", "clip": ["11", 0]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["10", 0]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "flux", "images": ["8", 0]}},
    "10": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
    "11": {
        "class_type": "DualCLIPLoader",
        "inputs": {"clip_name1": "t5xxl_fp16.safetensors", "clip_name2": "clip_l.safetensors", "type": "flux"},
    },
    "12": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}},
    "13": {
        "class_type": "SamplerCustomAdvanced",
        "inputs": {
            "noise": ["25", 0],
            "guider": ["22", 0],
            "sampler": ["16", 0],
            "sigmas": ["17", 0],
            "latent_image": ["27", 0],
        },
    },
    "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
    "17": {
        "class_type": "BasicScheduler",
        "inputs": {"scheduler": "simple", "steps": 20, "denoise": 1.0, "model": ["12", 0]},
    },
    "22": {"class_type": "BasicGuider", "inputs": {"model": ["12", 0], "conditioning": ["26", 0]}},
    "25": {"class_type": "RandomNoise", "inputs": {"noise_seed": 219670278747233}},
    "26": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.5, "conditioning": ["6", 0]}},
    "27": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 1024, "batch_size": 1}},
}

INVOKE_V5: dict[str, Any] = {
    "generation_mode": "sdxl_txt2img",
    "positive_prompt": "a lighthouse on a cliff at dusk, dramatic clouds, 35mm photo",
    "negative_prompt": "blurry, lowres, watermark",
    "width": 1024,
    "height": 1024,
    "seed": 2947294710,
    "rand_device": "cpu",
    "cfg_scale": 6.5,
    "cfg_rescale_multiplier": 0,
    "steps": 30,
    "scheduler": "dpmpp_2m_k",
    "model": {
        "key": "0d3b7a5b-2f1e-4c8e-9a51-5a0b1d6c1f11",
        "hash": "blake3:7b1c0e3f5b8e4f7a9d2c1b0a9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c",
        "name": "Juggernaut XL v9",
        "base": "sdxl",
        "type": "main",
    },
    "vae": {"key": "5e4f", "hash": "blake3:aa11", "name": "sdxl-vae-fp16-fix", "base": "sdxl", "type": "vae"},
    "loras": [
        {
            "model": {
                "key": "9a8b",
                "hash": "blake3:9d0e",
                "name": "detail-tweaker-xl",
                "base": "sdxl",
                "type": "lora",
            },
            "weight": 0.75,
        }
    ],
    "positive_style_prompt": "a lighthouse on a cliff at dusk, dramatic clouds, 35mm photo",
    "negative_style_prompt": "blurry, lowres, watermark",
    "app_version": "5.4.2",
}

INVOKE_V3: dict[str, Any] = {
    "generation_mode": "txt2img",
    "positive_prompt": "portrait of a knight",
    "negative_prompt": "",
    "width": 512,
    "height": 768,
    "seed": 123,
    "cfg_scale": 7.5,
    "steps": 50,
    "scheduler": "euler_a",
    "clip_skip": 0,
    "model": {"model_name": "stable-diffusion-v1-5", "base_model": "sd-1", "model_type": "main"},
    "loras": [{"lora": {"model_name": "epiNoiseoffset", "base_model": "sd-1"}, "weight": 0.6}],
    "app_version": "3.4.0",
}

INVOKE_LEGACY: dict[str, Any] = {
    "model": "stable diffusion",
    "model_weights": "stable-diffusion-1.5",
    "model_hash": "cc6cb27103417325ff94f52b7a5d2dde45a7515b25c255d8e396c90014281516",
    "app_id": "invoke-ai/InvokeAI",
    "app_version": "2.3.5",
    "image": {
        "prompt": [{"prompt": "a cozy cabin in the woods [people]", "weight": 1.0}],
        "steps": 50,
        "cfg_scale": 7.5,
        "threshold": 0,
        "perlin": 0,
        "height": 512,
        "width": 512,
        "seed": 3815231223,
        "seamless": False,
        "hires_fix": False,
        "type": "txt2img",
        "postprocessing": None,
        "sampler": "k_lms",
        "variations": [],
    },
}

NOVELAI_V3: dict[str, Any] = {
    "prompt": "1girl, solo, silver hair, looking at viewer, cherry blossoms, best quality, amazing quality",
    "steps": 28,
    "height": 1216,
    "width": 832,
    "scale": 5.0,
    "uncond_scale": 1.0,
    "cfg_rescale": 0.0,
    "seed": 3312004281,
    "n_samples": 1,
    "hide_debug_overlay": False,
    "noise_schedule": "native",
    "legacy_v3_extend": False,
    "reference_information_extracted_multiple": [],
    "reference_strength_multiple": [],
    "sampler": "k_euler_ancestral",
    "controlnet_strength": 1.0,
    "controlnet_model": None,
    "dynamic_thresholding": False,
    "dynamic_thresholding_percentile": 0.999,
    "dynamic_thresholding_mimic_scale": 10.0,
    "sm": False,
    "sm_dyn": False,
    "skip_cfg_below_sigma": 0.0,
    "lora_unet_weights": None,
    "lora_clip_weights": None,
    "uc": "lowres, bad anatomy, bad hands, text, error, worst quality",
    "request_type": "PromptGenerateRequest",
    "signed_hash": "R5h4fJ0i3+Xm0q8vM9nqkq5mUj2eJw0p1c0yY1z5mZ0=",
}

NOVELAI_V4: dict[str, Any] = {
    "prompt": "2girls, park, autumn",
    "steps": 23,
    "height": 832,
    "width": 1216,
    "scale": 6.0,
    "seed": 1181170511,
    "noise_schedule": "karras",
    "sampler": "k_euler_ancestral",
    "v4_prompt": {
        "caption": {
            "base_caption": "2girls, park, autumn",
            "char_captions": [
                {"char_caption": "girl, red hair", "centers": [{"x": 0.3, "y": 0.5}]},
                {"char_caption": "girl, black hair", "centers": [{"x": 0.7, "y": 0.5}]},
            ],
        },
        "use_coords": True,
        "use_order": True,
    },
    "v4_negative_prompt": {
        "caption": {
            "base_caption": "lowres",
            "char_captions": [
                {"char_caption": "hat", "centers": [{"x": 0.3, "y": 0.5}]},
                {"char_caption": "", "centers": [{"x": 0.7, "y": 0.5}]},
            ],
        },
        "legacy_uc": False,
    },
    "uc": "lowres",
}

# --- image builders ------------------------------------------------------------------


def _png(texts: dict[str, str] | None = None, *, itxt: dict[str, str] | None = None, zip_: bool = False) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in (texts or {}).items():
        info.add_text(key, value, zip=zip_)
    for key, value in (itxt or {}).items():
        info.add_itxt(key, value, zip=zip_)
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 100, 50)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _raw_png(*chunks: bytes, width: int = 1, height: int = 1, idat: bytes | None = None) -> bytes:
    """A PNG assembled chunk by chunk, for layouts Pillow will not write."""
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    if idat is None:
        idat = zlib.compress(b"\0\0")
    return b"\x89PNG\r\n\x1a\n" + ihdr + b"".join(chunks) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _tiff_user_comment(comment: bytes, order: str = ">") -> bytes:
    """TIFF bytes as piexif dumps them: IFD0 → Exif IFD (0x8769) → UserComment (0x9286)."""
    head = (b"MM" if order == ">" else b"II") + struct.pack(order + "HI", 42, 8)
    ifd0 = struct.pack(order + "H", 1) + struct.pack(order + "HHII", 0x8769, 4, 1, 26) + struct.pack(order + "I", 0)
    exif_ifd = struct.pack(order + "H", 1) + struct.pack(order + "HHII", 0x9286, 7, len(comment), 44)
    exif_ifd += struct.pack(order + "I", 0)
    data = head + ifd0 + exif_ifd
    assert len(data) == 44
    return data + comment


def _jpeg(exif_tiff: bytes | None) -> bytes:
    buf = io.BytesIO()
    kwargs = {} if exif_tiff is None else {"exif": b"Exif\x00\x00" + exif_tiff}
    Image.new("RGB", (16, 16), (10, 20, 30)).save(buf, "JPEG", **kwargs)
    return buf.getvalue()


def _webp(exif: bytes) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(buf, "WEBP", exif=exif)
    return buf.getvalue()


def _a1111_user_comment(text: str) -> bytes:
    # piexif.helper.UserComment.dump(text, encoding="unicode"), as A1111 calls it.
    return b"UNICODE\0" + text.encode("utf-16-be")


# --- AUTOMATIC1111 -------------------------------------------------------------------


def test_a1111_full_parameters() -> None:
    result = parse_a1111_parameters(A1111_FULL)
    assert result.skipped == ()
    (step,) = result.steps
    assert step.tool == "automatic1111"
    assert step.prompt is not None and step.prompt.startswith("masterpiece, best quality")
    assert step.prompt.endswith("<lora:more_details:0.5>")
    assert "\n" in step.prompt  # multi-line prompt kept as lines
    assert step.negative_prompt == "(worst quality:1.4), low quality, easynegative,\nbad hands, extra fingers"
    p = step.parameters
    assert p["steps"] == 28
    assert p["sampler"] == "DPM++ 2M"
    assert p["scheduler"] == "Karras"
    assert p["cfg_scale"] == 7.0 and isinstance(p["cfg_scale"], float)
    assert p["seed"] == 1234567890
    assert (p["width"], p["height"]) == (512, 768)
    assert p["model_hash"] == "6ce0161689"
    assert p["model"] == "v1-5-pruned-emaonly"
    assert p["vae"] == "vae-ft-mse-840000-ema-pruned.safetensors"
    assert p["vae_hash"] == "735e4c3a44"
    assert p["denoising_strength"] == 0.45
    assert p["clip_skip"] == 2
    assert p["hires_upscale"] == 2.0
    assert p["hires_steps"] == 15
    assert p["hires_upscaler"] == "R-ESRGAN 4x+ Anime6B"
    assert p["tool_version"] == "v1.10.1"
    assert p["Hires prompt"] == 'a "quoted" prompt, with commas'
    assert p["loras"] == [
        {"name": "add_detail", "weight": 0.8, "hash": "7c6bad76eb54"},
        {"name": "more_details", "weight": 0.5, "hash": "3b8aa1d351ef"},
    ]
    assert p["embeddings"] == [{"name": "easynegative", "hash": "c74b4e810b03"}]
    # raw keeps what was written, unnormalised
    raw_params = step.raw["parameters"]
    assert isinstance(raw_params, dict)
    assert raw_params["Size"] == "512x768"
    assert raw_params["Lora hashes"] == "add_detail: 7c6bad76eb54, more_details: 3b8aa1d351ef"
    json.dumps(step.raw)  # JSON-compatible
    json.dumps(step.parameters)


def test_a1111_older_layout_without_negative_or_schedule() -> None:
    (step,) = parse_a1111_parameters(A1111_OLD).steps
    assert step.prompt == "a photo of an astronaut riding a horse on mars"
    assert step.negative_prompt is None
    assert step.parameters["sampler"] == "DPM++ 2M Karras"
    assert "scheduler" not in step.parameters
    assert step.parameters["cfg_scale"] == 7.5
    assert (step.parameters["width"], step.parameters["height"]) == (768, 512)


def test_a1111_negative_only_and_crlf() -> None:
    text = "Negative prompt: ugly\r\nSteps: 10, Sampler: Euler a, Seed: 5, Size: 64x64"
    (step,) = parse_a1111_parameters(text).steps
    assert step.prompt is None
    assert step.negative_prompt == "ugly"
    assert step.parameters["sampler"] == "Euler a"


def test_a1111_lora_tag_forms_and_hash_only_lora() -> None:
    text = (
        "a cat <lora:catstyle> <LORA:Fur Detail:te=0.6:unet=0.9> <lyco:oldschool:0.3>\n"
        'Steps: 20, Sampler: Euler, Seed: 1, Lora hashes: "catstyle: aaa111, fur detail: bbb222, wildcard_lora: ccc333"'
    )
    (step,) = parse_a1111_parameters(text).steps
    assert step.parameters["loras"] == [
        {"name": "catstyle", "weight": 1.0, "hash": "aaa111"},
        {"name": "Fur Detail", "weight": 0.6, "unet_weight": 0.9, "hash": "bbb222"},  # case-insensitive join
        {"name": "oldschool", "weight": 0.3},
        {"name": "wildcard_lora", "weight": None, "hash": "ccc333"},
    ]


def test_a1111_civitai_hashes_json_value() -> None:
    text = (
        "a dog <lora:pupper:0.7>\n"
        'Steps: 20, Sampler: Euler, Seed: 1, Hashes: {"model": "6ce0161689", "lora:pupper": "d00d"}, Version: 1.0'
    )
    result = parse_a1111_parameters(text)
    (step,) = result.steps
    assert step.parameters["Hashes"] == {"model": "6ce0161689", "lora:pupper": "d00d"}
    assert step.parameters["loras"] == [{"name": "pupper", "weight": 0.7, "hash": "d00d"}]
    assert step.parameters["tool_version"] == "1.0"
    assert result.skipped == ()


def test_a1111_bad_values_are_noted_and_kept() -> None:
    text = (
        "prompt\n"
        "Steps: many, Sampler: Euler, Seed: 12, Size: huge, CFG scale: nan, just garbage, "
        'Lora hashes: "never closed, Version: v1'
    )
    result = parse_a1111_parameters(text)
    (step,) = result.steps
    assert step.parameters["Steps"] == "many"  # kept under its own name
    assert step.parameters["Size"] == "huge"
    assert step.parameters["CFG scale"] == "nan"
    assert step.parameters["seed"] == 12
    notes = " | ".join(result.skipped)
    assert "Steps" in notes and "Size" in notes and "garbage" in notes and "quote" in notes
    assert step.parameters["tool_version"] == "v1"  # A1111's own fallback: read to the next comma


def test_a1111_trailing_lines_and_duplicates_are_noted() -> None:
    text = "p\nSteps: 1, Sampler: Euler, Seed: 2, Seed: 3\n@@@ not parameters\n"
    result = parse_a1111_parameters(text)
    assert result.steps[0].parameters["seed"] == 3
    assert any("twice" in note for note in result.skipped)
    assert any("after the parameter line" in note for note in result.skipped)


def test_a1111_prompt_only() -> None:
    result = parse_a1111_parameters("just a prompt, style: anime, mood: calm, light: soft")
    (step,) = result.steps
    assert step.prompt == "just a prompt, style: anime, mood: calm, light: soft"
    assert step.parameters == {}
    assert any("no parameter line" in note for note in result.skipped)


@pytest.mark.parametrize("text", ["", "   \n\n ", "x" * (1 << 20 + 1)])
def test_a1111_refuses_empty_and_oversized(text: str) -> None:
    with pytest.raises(ImportFormatError):
        parse_a1111_parameters(text)


def test_a1111_refuses_non_text() -> None:
    with pytest.raises(ImportFormatError):
        parse_a1111_parameters(b"Steps: 1")  # type: ignore[arg-type]


def test_a1111_long_lines_stay_linear() -> None:
    # A1111's own regex backtracks quadratically here; 1 MiB must still be quick.
    started = time.monotonic()
    parse_a1111_parameters("a" * 500_000 + " b c d" * 80_000)
    parse_a1111_parameters("k:" + '"' * 400_000)
    parse_a1111_parameters("<lora:" * 150_000)
    parse_a1111_parameters(("x: 1, " * 100_000) + "Steps: 1")
    assert time.monotonic() - started < 10


# --- ComfyUI -------------------------------------------------------------------------


def test_comfyui_default_graph() -> None:
    result = parse_comfyui(json.dumps(COMFY_DEFAULT), None)
    assert result.source == "ComfyUI prompt"
    (step,) = result.steps
    assert step.tool == "comfyui"
    assert step.prompt == "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,"
    assert step.negative_prompt == "text, watermark"
    assert step.parameters == {
        "seed": 156680208700286,
        "steps": 20,
        "cfg_scale": 8.0,
        "sampler": "euler",
        "scheduler": "normal",
        "denoising_strength": 1.0,
        "model": "v1-5-pruned-emaonly.safetensors",
        "width": 512,
        "height": 512,
        "batch_size": 1,
    }
    assert step.raw["node_id"] == "3"
    assert step.raw["feeds_output"] is True
    nodes = step.raw["nodes"]
    assert isinstance(nodes, dict) and set(nodes) == {"3", "4", "5", "6", "7"}
    assert result.skipped == ()
    json.dumps(step.raw)


def test_comfyui_workflow_kept_raw_and_used_as_fallback() -> None:
    with_both = parse_comfyui(json.dumps(COMFY_DEFAULT), json.dumps(COMFY_DEFAULT_WORKFLOW))
    assert with_both.steps[0].raw["workflow"] == COMFY_DEFAULT_WORKFLOW
    only_workflow = parse_comfyui(None, json.dumps(COMFY_DEFAULT_WORKFLOW))
    assert only_workflow.source == "ComfyUI workflow"
    (step,) = only_workflow.steps
    assert step.prompt == with_both.steps[0].prompt
    assert step.negative_prompt == "text, watermark"
    assert step.parameters == with_both.steps[0].parameters
    assert only_workflow.skipped == ()


def test_comfyui_workflow_with_primitive_and_dict_links() -> None:
    workflow = copy.deepcopy(COMFY_DEFAULT_WORKFLOW)
    # The seed widget turned into an input fed by a PrimitiveNode; links as objects.
    sampler = next(n for n in workflow["nodes"] if n["id"] == 3)
    sampler["inputs"].append({"name": "seed", "type": "INT", "widget": {"name": "seed"}, "link": 10})
    sampler["widgets_values"] = [1, 20, 8, "euler", "normal", 1]  # no control value saved
    workflow["nodes"].append({"id": 10, "type": "PrimitiveNode", "mode": 0, "widgets_values": [777, "fixed"]})
    workflow["nodes"].append({"id": 11, "type": "Note", "mode": 0, "widgets_values": ["a", "b"]})
    workflow["links"] = [
        {
            "id": link[0],
            "origin_id": link[1],
            "origin_slot": link[2],
            "target_id": link[3],
            "target_slot": link[4],
            "type": link[5],
        }
        for link in workflow["links"]
    ] + [{"id": 10, "origin_id": 10, "origin_slot": 0, "target_id": 3, "target_slot": 4, "type": "INT"}]
    (step,) = parse_comfyui(None, json.dumps(workflow)).steps
    assert step.parameters["seed"] == 777
    assert step.parameters["steps"] == 20


def test_comfyui_lora_chain_hires_and_controlnet() -> None:
    result = parse_comfyui(json.dumps(COMFY_LORA_HIRES), None)
    base, hires = result.steps
    assert (base.raw["node_id"], hires.raw["node_id"]) == ("20", "15")  # graph order, not id order
    assert hires.raw["latent_from_node"] == "20"
    # The base pass's own nodes are in its step's raw, not repeated in the hires step's.
    assert "13" in base.raw["nodes"] and "13" not in hires.raw["nodes"]
    assert {"20", "21"} <= set(hires.raw["nodes"])
    assert base.prompt == "a castle on a hill, watercolor\ngolden hour"
    assert base.negative_prompt == "lowres, blurry"
    assert base.parameters["seed"] == 987654321
    assert base.parameters["model"] == "dreamshaper_8.safetensors"
    assert base.parameters["loras"] == [
        {"name": "add_detail.safetensors", "weight": 0.8, "clip_weight": 0.7},
        {"name": "styles/watercolor.safetensors", "weight": 0.5, "clip_weight": 0.5},
    ]
    assert base.parameters["clip_skip"] == 2
    assert (base.parameters["width"], base.parameters["height"]) == (512, 768)
    assert (hires.parameters["width"], hires.parameters["height"]) == (768, 1152)
    assert hires.parameters["denoising_strength"] == 0.5
    assert hires.parameters["steps"] == 12
    assert base.raw["feeds_output"] is True and hires.raw["feeds_output"] is True
    assert result.skipped == ()


def test_comfyui_sampler_custom_advanced_flux() -> None:
    (step,) = parse_comfyui(json.dumps(COMFY_FLUX), None).steps
    assert step.prompt == "a red fox in snow"
    assert step.negative_prompt is None
    p = step.parameters
    assert p["seed"] == 219670278747233
    assert p["steps"] == 20
    assert p["sampler"] == "euler"
    assert p["scheduler"] == "simple"
    assert p["denoising_strength"] == 1.0
    assert p["guidance"] == 3.5
    assert p["model"] == "flux1-dev.safetensors"
    assert (p["width"], p["height"]) == (1024, 1024)


def test_comfyui_api_request_body_is_unwrapped() -> None:
    body = {"client_id": "abc", "prompt": COMFY_DEFAULT}
    assert parse_comfyui(json.dumps(body), None).steps[0].parameters["steps"] == 20


def test_comfyui_cycles_terminate_with_notes() -> None:
    graph = copy.deepcopy(COMFY_DEFAULT)
    graph["6"] = {
        "class_type": "ConditioningCombine",
        "inputs": {"conditioning_1": ["30", 0], "conditioning_2": ["7", 0]},
    }
    graph["30"] = {"class_type": "ConditioningSetArea", "inputs": {"conditioning": ["6", 0]}}
    graph["4"] = {"class_type": "LoraLoader", "inputs": {"lora_name": "x", "strength_model": 1, "model": ["31", 0]}}
    graph["31"] = {"class_type": "ModelSamplingDiscrete", "inputs": {"model": ["4", 0]}}
    graph["3"]["inputs"]["seed"] = ["32", 0]
    graph["32"] = {"class_type": "Reroute", "inputs": {"x": ["33", 0]}}
    graph["33"] = {"class_type": "Reroute", "inputs": {"x": ["32", 0]}}
    graph["5"] = {"class_type": "LatentUpscaleBy", "inputs": {"scale_by": 2, "samples": ["3", 0]}}
    result = parse_comfyui(json.dumps(graph), None)
    (step,) = result.steps
    assert step.prompt == "text, watermark"  # the only text reachable from the cycle
    assert "seed" not in step.parameters
    notes = " | ".join(result.skipped)
    assert "cycle" in notes


def test_comfyui_dangling_links_and_wrong_types() -> None:
    graph = copy.deepcopy(COMFY_DEFAULT)
    sampler = graph["3"]
    sampler["inputs"]["positive"] = ["99", 0]
    sampler["inputs"]["steps"] = "twenty"
    sampler["inputs"]["cfg"] = True
    graph["7"] = {"class_type": "CLIPTextEncode", "inputs": ["not", "a", "dict"]}
    graph["8"] = "not a node"
    graph["10"] = {"inputs": {}}
    result = parse_comfyui(json.dumps(graph), None)
    (step,) = result.steps
    assert step.prompt is None and step.negative_prompt is None
    assert "steps" not in step.parameters and "cfg_scale" not in step.parameters
    assert step.parameters["seed"] == 156680208700286
    notes = " | ".join(result.skipped)
    for expected in ("missing node '99'", "'steps'", "'cfg'", "not an object", "no class_type", "inputs are not"):
        assert expected in notes


def test_comfyui_odd_node_ids() -> None:
    graph = {"²": COMFY_DEFAULT["3"], "4": COMFY_DEFAULT["4"], "٣": COMFY_DEFAULT["3"], "x": COMFY_DEFAULT["3"]}
    result = parse_comfyui(json.dumps(graph), None)
    assert [s.raw["node_id"] for s in result.steps] == ["x", "²", "٣"]  # non-numeric ids sort as text


def test_comfyui_graph_without_sampler() -> None:
    result = parse_comfyui(json.dumps({"1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}}}), None)
    assert result.steps == ()
    assert any("no sampler" in note for note in result.skipped)


@pytest.mark.parametrize(
    ("prompt", "workflow"),
    [
        (None, None),
        ('{"3": {"class_type": "KSampler", "inputs": {"seed": 1', None),
        ("[1, 2, 3]", None),
        ('"just a string"', None),
        ("{" * 5000 + "}" * 5000, None),
        ("[" * 100 + "]" * 100, None),
        ('{"a": 1e999999}', None),
        ('{"a": ' + "9" * 5000 + "}", None),
        (None, "not json"),
        (None, '{"nodes": "nope"}'),
        (None, "[]"),
        ("", ""),
        ("{}", None),
        ('{"1": null, "2": {"inputs": {}}}', None),
    ],
)
def test_comfyui_malformed_raises(prompt: str | None, workflow: str | None) -> None:
    with pytest.raises(ImportFormatError) as info:
        parse_comfyui(prompt, workflow)
    assert "\n" not in str(info.value)


def test_comfyui_non_finite_numbers_become_null() -> None:
    graph = copy.deepcopy(COMFY_DEFAULT)
    text = json.dumps(graph).replace('"denoise": 1', '"denoise": NaN')
    result = parse_comfyui(text, None)
    assert "denoising_strength" not in result.steps[0].parameters
    assert any("NaN" in note for note in result.skipped)
    json.dumps(result.steps[0].raw, allow_nan=False)


def test_comfyui_bad_prompt_falls_back_to_workflow() -> None:
    result = parse_comfyui('{"3": {', json.dumps(COMFY_DEFAULT_WORKFLOW))
    assert result.source == "ComfyUI workflow"
    assert result.steps[0].parameters["steps"] == 20
    assert any("fell back" in note for note in result.skipped)


def test_comfyui_node_count_is_bounded() -> None:
    graph = {str(i): {"class_type": "Note", "inputs": {}} for i in range(10_001)}
    with pytest.raises(ImportFormatError):
        parse_comfyui(json.dumps(graph), None)


def test_comfyui_long_link_chain_is_bounded() -> None:
    graph = copy.deepcopy(COMFY_DEFAULT)
    graph["3"]["inputs"]["seed"] = ["r0", 0]
    for i in range(2000):
        graph[f"r{i}"] = {"class_type": "Reroute", "inputs": {"x": [f"r{i + 1}", 0]}}
    result = parse_comfyui(json.dumps(graph), None)
    assert "seed" not in result.steps[0].parameters
    assert any("too long" in note for note in result.skipped)


def test_comfyui_lone_surrogates_are_replaced() -> None:
    graph = copy.deepcopy(COMFY_DEFAULT)
    text = json.dumps(graph).replace("text, watermark", "text\\ud800")
    (step,) = parse_comfyui(text, None).steps
    assert step.negative_prompt is not None
    step.negative_prompt.encode("utf-8")


# --- InvokeAI ------------------------------------------------------------------------


def test_invokeai_v5() -> None:
    result = parse_invokeai(json.dumps(INVOKE_V5))
    (step,) = result.steps
    assert step.tool == "invokeai"
    assert step.prompt == INVOKE_V5["positive_prompt"]
    assert step.negative_prompt == "blurry, lowres, watermark"
    p = step.parameters
    assert p["seed"] == 2947294710
    assert p["steps"] == 30
    assert p["cfg_scale"] == 6.5
    assert p["sampler"] == "dpmpp_2m_k"
    assert (p["width"], p["height"]) == (1024, 1024)
    assert p["model"] == "Juggernaut XL v9"
    assert p["model_hash"] == INVOKE_V5["model"]["hash"]
    assert p["model_base"] == "sdxl"
    assert p["vae"] == "sdxl-vae-fp16-fix"
    assert p["loras"] == [{"name": "detail-tweaker-xl", "weight": 0.75, "hash": "blake3:9d0e"}]
    assert p["generation_mode"] == "sdxl_txt2img"
    assert p["tool_version"] == "5.4.2"
    assert p["rand_device"] == "cpu"
    assert step.raw == INVOKE_V5
    assert result.skipped == ()


def test_invokeai_v3_and_legacy() -> None:
    (v3,) = parse_invokeai(json.dumps(INVOKE_V3)).steps
    assert v3.parameters["model"] == "stable-diffusion-v1-5"
    assert v3.parameters["loras"] == [{"name": "epiNoiseoffset", "weight": 0.6}]
    assert v3.negative_prompt == ""
    legacy = parse_invokeai(json.dumps(INVOKE_LEGACY))
    assert legacy.source == "InvokeAI sd-metadata"
    (step,) = legacy.steps
    assert step.prompt == "a cozy cabin in the woods [people]"
    assert step.parameters["model"] == "stable-diffusion-1.5"
    assert step.parameters["sampler"] == "k_lms"
    assert step.parameters["seed"] == 3815231223
    assert step.parameters["generation_mode"] == "txt2img"


def test_invokeai_wrong_types_are_noted() -> None:
    meta = dict(INVOKE_V5, seed="lucky", loras={"x": 1}, positive_prompt=5, model=[1])
    result = parse_invokeai(json.dumps(meta))
    (step,) = result.steps
    assert step.prompt is None
    assert step.parameters["seed"] == "lucky"
    assert "loras" in step.parameters and step.parameters["loras"] == []
    notes = " | ".join(result.skipped)
    assert "seed" in notes and "loras" in notes and "positive_prompt" in notes and "model" in notes


@pytest.mark.parametrize("text", ["", "{", "[]", '{"unrelated": true}', "null", '"x"'])
def test_invokeai_malformed_raises(text: str) -> None:
    with pytest.raises(ImportFormatError):
        parse_invokeai(text)


# --- NovelAI -------------------------------------------------------------------------


def test_novelai_v3_comment() -> None:
    result = parse_novelai(json.dumps(NOVELAI_V3), NOVELAI_V3["prompt"])
    (step,) = result.steps
    assert step.tool == "novelai"
    assert step.prompt == NOVELAI_V3["prompt"]
    assert step.negative_prompt == NOVELAI_V3["uc"]
    p = step.parameters
    assert p["seed"] == 3312004281
    assert p["steps"] == 28
    assert p["cfg_scale"] == 5.0
    assert p["sampler"] == "k_euler_ancestral"
    assert p["scheduler"] == "native"
    assert (p["width"], p["height"]) == (832, 1216)
    assert p["cfg_rescale"] == 0.0
    assert "description" not in p  # same as the prompt
    assert "prompt" not in p and "uc" not in p


def test_novelai_v4_characters() -> None:
    (step,) = parse_novelai(json.dumps(NOVELAI_V4)).steps
    assert step.prompt == "2girls, park, autumn"
    assert step.parameters["scheduler"] == "karras"
    assert step.parameters["characters"] == [
        {"prompt": "girl, red hair", "negative_prompt": "hat", "centers": [{"x": 0.3, "y": 0.5}]},
        {"prompt": "girl, black hair", "negative_prompt": "", "centers": [{"x": 0.7, "y": 0.5}]},
    ]


def test_novelai_old_img2img_comment_with_description_prompt() -> None:
    comment = {
        "steps": 28,
        "sampler": "k_euler_ancestral",
        "seed": 9,
        "strength": 0.7,
        "noise": 0.2,
        "scale": 11,
        "uc": "bad",
    }
    (step,) = parse_novelai(json.dumps(comment), "a fox, masterpiece").steps
    assert step.prompt == "a fox, masterpiece"
    assert step.parameters["denoising_strength"] == 0.7
    assert step.parameters["noise"] == 0.2


def test_novelai_bad_comment() -> None:
    with pytest.raises(ImportFormatError):
        parse_novelai("{not json")
    with pytest.raises(ImportFormatError):
        parse_novelai("[1]")
    result = parse_novelai("{not json", "the prompt")
    assert result.steps[0].prompt == "the prompt"
    assert result.skipped


# --- images --------------------------------------------------------------------------


def test_png_a1111_from_file(tmp_path: Path) -> None:
    path = tmp_path / "a1111.png"
    path.write_bytes(_png({"parameters": A1111_FULL}))
    result = import_from_image(path)
    assert result.source == "PNG tEXt 'parameters'"
    assert result.steps == parse_a1111_parameters(A1111_FULL).steps
    assert import_from_image(str(path)) == result


def test_png_non_latin1_prompt_is_itxt() -> None:
    text = "桜の木の下の少女, <lora:anime:0.6>\nSteps: 20, Sampler: Euler a, Seed: 7, Size: 512x512"
    result = import_from_image(_png({"parameters": text}))  # Pillow writes iTXt for non-Latin-1
    assert result.source == "PNG iTXt 'parameters'"
    assert result.steps[0].prompt == "桜の木の下の少女, <lora:anime:0.6>"


@pytest.mark.parametrize("zip_", [True, False])
def test_png_comfyui_prompt_and_workflow(zip_: bool) -> None:
    data = _png({"prompt": json.dumps(COMFY_DEFAULT), "workflow": json.dumps(COMFY_DEFAULT_WORKFLOW)}, zip_=zip_)
    result = import_from_image(data)
    kind = "zTXt" if zip_ else "tEXt"
    assert result.source == f"PNG {kind} 'prompt' + PNG {kind} 'workflow'"
    (step,) = result.steps
    assert step.parameters["seed"] == 156680208700286
    assert step.raw["workflow"] == COMFY_DEFAULT_WORKFLOW


def test_png_invokeai_and_compressed_itxt() -> None:
    data = _png(itxt={"invokeai_metadata": json.dumps(INVOKE_V5)}, zip_=True)
    result = import_from_image(data)
    assert result.source == "PNG iTXt 'invokeai_metadata'"
    assert result.steps[0].parameters["model"] == "Juggernaut XL v9"
    legacy = import_from_image(_png({"sd-metadata": json.dumps(INVOKE_LEGACY)}))
    assert legacy.steps[0].parameters["sampler"] == "k_lms"


def test_png_novelai() -> None:
    data = _png(
        {
            "Title": "NovelAI generated image",
            "Description": NOVELAI_V3["prompt"],
            "Software": "NovelAI",
            "Source": "Stable Diffusion XL C1E1DE52",
            "Generation time": "3.82",
            "Comment": json.dumps(NOVELAI_V3),
        }
    )
    result = import_from_image(data)
    assert result.source == "PNG tEXt 'Comment'"
    (step,) = result.steps
    assert step.tool == "novelai"
    assert step.parameters["model"] == "Stable Diffusion XL C1E1DE52"
    assert step.raw["Source"] == "Stable Diffusion XL C1E1DE52"


def test_png_unrelated_comment_and_json_parameters_are_skipped() -> None:
    data = _png({"Comment": "made in GIMP", "parameters": '{"fooocus_scheme": "x", "Prompt": "a"}'})
    with pytest.raises(ImportFormatError, match="no generation metadata"):
        import_from_image(data)


def test_png_combines_several_tools() -> None:
    data = _png({"parameters": A1111_OLD, "prompt": json.dumps(COMFY_DEFAULT)})
    result = import_from_image(data)
    assert [s.tool for s in result.steps] == ["automatic1111", "comfyui"]
    assert result.source == "PNG tEXt 'parameters'; PNG tEXt 'prompt'"


def test_png_partial_import_notes_broken_fields() -> None:
    data = _png({"parameters": A1111_OLD, "prompt": "{broken", "invokeai_metadata": "[]"})
    result = import_from_image(data)
    assert [s.tool for s in result.steps] == ["automatic1111"]
    notes = " | ".join(result.skipped)
    assert "PNG tEXt 'prompt'" in notes and "PNG tEXt 'invokeai_metadata'" in notes


def test_png_only_broken_fields_raise() -> None:
    with pytest.raises(ImportFormatError, match="could not be parsed"):
        import_from_image(_png({"prompt": "{broken"}))


def test_png_text_after_image_data_without_decoding_pixels() -> None:
    # Declared 100000x100000 with garbage pixel data: decoding would fail or
    # exhaust memory; reading metadata must do neither.
    params = _chunk(b"tEXt", b"parameters\0" + A1111_OLD.encode("latin-1"))
    png = (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
        + _chunk(b"IDAT", b"\xde\xad\xbe\xef" * 1000)
        + params
        + _chunk(b"IEND", b"")
    )
    max_pixels, max_text = Image.MAX_IMAGE_PIXELS, PngImagePlugin.MAX_TEXT_CHUNK
    result = import_from_image(png)
    assert result.steps[0].parameters["seed"] == 42
    assert (max_pixels, max_text) == (Image.MAX_IMAGE_PIXELS, PngImagePlugin.MAX_TEXT_CHUNK)


def test_png_ztxt_bomb_is_refused() -> None:
    bomb = zlib.compress(b"\0" * (64 << 20), 9)  # 64 MiB of zeros in ~64 KiB
    png = _raw_png(
        _chunk(b"zTXt", b"parameters\0\0" + bomb), _chunk(b"tEXt", b"prompt\0" + json.dumps(COMFY_DEFAULT).encode())
    )
    result = import_from_image(png)
    assert [s.tool for s in result.steps] == ["comfyui"]
    assert any("more than" in note for note in result.skipped)


def test_png_oversized_text_chunk_is_skipped() -> None:
    big = b"parameters\0" + b"a" * (2 << 20)
    png = _raw_png(_chunk(b"tEXt", big), _chunk(b"tEXt", b"invokeai_metadata\0" + json.dumps(INVOKE_V3).encode()))
    result = import_from_image(png)
    assert [s.tool for s in result.steps] == ["invokeai"]
    assert any("over the limits" in note for note in result.skipped)


def test_png_corrupt_chunks_are_noted() -> None:
    good = _chunk(b"tEXt", b"parameters\0" + A1111_OLD.encode())
    bad_crc = bytearray(_chunk(b"tEXt", b"prompt\0{}"))
    bad_crc[-1] ^= 0xFF
    bad_itxt = _chunk(b"iTXt", b"prompt\0\0\0\0\0\xff\xfe{}")
    no_keyword = _chunk(b"tEXt", b"no separator")
    result = import_from_image(_raw_png(bytes(bad_crc), bad_itxt, no_keyword, good))
    assert result.steps[0].tool == "automatic1111"
    notes = " | ".join(result.skipped)
    assert "CRC" in notes and "keyword" in notes


def test_png_latin1_and_utf8_in_text_chunks() -> None:
    latin1 = "caf\xe9 at night\nSteps: 20, Sampler: Euler, Seed: 1".encode("latin-1")
    assert import_from_image(_raw_png(_chunk(b"tEXt", b"parameters\0" + latin1))).steps[0].prompt == "café at night"
    utf8 = "東京の夜\nSteps: 20, Sampler: Euler, Seed: 1".encode()
    assert import_from_image(_raw_png(_chunk(b"tEXt", b"parameters\0" + utf8))).steps[0].prompt == "東京の夜"
    bad_itxt = b"parameters\0\0\0\0\0" + b"caf\xe9\nSteps: 20, Sampler: Euler, Seed: 1"
    result = import_from_image(_raw_png(_chunk(b"iTXt", bad_itxt)))
    assert result.steps[0].prompt == "caf\ufffd"
    assert any("UTF-8" in note for note in result.skipped)


def test_png_truncated_after_metadata() -> None:
    data = _png({"parameters": A1111_OLD})
    cut = data[: data.index(b"IDAT") + 10]
    result = import_from_image(cut)
    assert result.steps[0].parameters["seed"] == 42
    assert any("truncated" in note for note in result.skipped)


def test_png_exif_chunk_user_comment() -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = _a1111_user_comment(A1111_OLD)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG", exif=exif.tobytes())
    result = import_from_image(buf.getvalue())
    assert result.source == "PNG eXIf EXIF UserComment"
    assert result.steps[0].parameters["seed"] == 42


def test_jpeg_a1111_user_comment_piexif_layout(tmp_path: Path) -> None:
    path = tmp_path / "a1111.jpg"
    path.write_bytes(_jpeg(_tiff_user_comment(_a1111_user_comment(A1111_FULL))))
    result = import_from_image(path)
    assert result.source == "JPEG EXIF UserComment"
    assert result.steps == parse_a1111_parameters(A1111_FULL).steps


def test_jpeg_user_comment_written_by_pillow() -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = _a1111_user_comment("猫 <lora:neko:0.5>\n" + A1111_OLD.split("\n")[1])
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG", exif=exif.tobytes())
    (step,) = import_from_image(buf.getvalue()).steps
    assert step.prompt == "猫 <lora:neko:0.5>"
    assert step.parameters["loras"] == [{"name": "neko", "weight": 0.5}]


@pytest.mark.parametrize(
    ("body", "order"),
    [
        (("\ufeff" + A1111_OLD).encode("utf-16-le"), "<"),
        (("\ufeff" + A1111_OLD).encode("utf-16-be"), ">"),
        (A1111_OLD.encode("utf-16-le"), "<"),
        (A1111_OLD.encode("utf-16-be") + b"\0", ">"),
    ],
)
def test_jpeg_user_comment_utf16_variants(body: bytes, order: str) -> None:
    result = import_from_image(_jpeg(_tiff_user_comment(b"UNICODE\0" + body, order)))
    assert result.steps[0].prompt == "a photo of an astronaut riding a horse on mars"
    assert result.steps[0].parameters["seed"] == 42


@pytest.mark.parametrize(
    "comment",
    [
        b"ASCII\0\0\0" + A1111_OLD.encode("ascii"),
        b"\0" * 8 + A1111_OLD.encode("utf-8"),
        A1111_OLD.encode("utf-8"),  # no charset prefix at all
        b"UNICODE\0" + A1111_OLD.encode("utf-16-be") + b"\0\0",  # NUL-terminated
    ],
)
def test_jpeg_user_comment_charsets(comment: bytes) -> None:
    result = import_from_image(_jpeg(_tiff_user_comment(comment)))
    assert result.steps[0].parameters["steps"] == 20


def test_jpeg_camera_comment_is_not_generation_metadata() -> None:
    data = _jpeg(_tiff_user_comment(b"ASCII\0\0\0Shot on a sunny day"))
    with pytest.raises(ImportFormatError, match="no generation metadata"):
        import_from_image(data)


def test_jpeg_without_exif_and_with_bad_exif() -> None:
    with pytest.raises(ImportFormatError):
        import_from_image(_jpeg(None))
    with pytest.raises(ImportFormatError):
        import_from_image(_jpeg(b"XX\0*garbage"))
    bad_offset = bytearray(_tiff_user_comment(_a1111_user_comment(A1111_OLD)))
    bad_offset[4:8] = struct.pack(">I", 0xFFFFFF)
    with pytest.raises(ImportFormatError):
        import_from_image(_jpeg(bytes(bad_offset)))


def test_jpeg_user_comment_with_json() -> None:
    comment = _a1111_user_comment(json.dumps(NOVELAI_V3))
    result = import_from_image(_jpeg(_tiff_user_comment(comment)))
    assert result.steps[0].tool == "novelai"


def test_webp_a1111_user_comment() -> None:
    result = import_from_image(_webp(_tiff_user_comment(_a1111_user_comment(A1111_FULL))))
    assert result.source == "WebP EXIF UserComment"
    assert result.steps == parse_a1111_parameters(A1111_FULL).steps


def test_webp_comfyui_exif_layout() -> None:
    # ComfyUI's SaveAnimatedWEBP: Model = "prompt:{json}", Make = "workflow:{json}".
    exif = Image.Exif()
    exif[0x0110] = "prompt:" + json.dumps(COMFY_DEFAULT)
    exif[0x010F] = "workflow:" + json.dumps(COMFY_DEFAULT_WORKFLOW)
    result = import_from_image(_webp(exif.tobytes()))
    assert result.source == "WebP EXIF Model 'prompt:' + WebP EXIF Make 'workflow:'"
    (step,) = result.steps
    assert step.parameters["seed"] == 156680208700286
    assert step.raw["workflow"] == COMFY_DEFAULT_WORKFLOW


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello world",
        b"GIF89a" + b"\0" * 20,
        b"RIFF\0\0\0\0WAVEfmt ",
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff",
        b"RIFF\xff\xff\xff\xffWEBPVP8 ",
    ],
)
def test_not_images_or_empty_images_raise(data: bytes) -> None:
    with pytest.raises(ImportFormatError):
        import_from_image(data)


def test_plain_png_without_metadata_raises() -> None:
    with pytest.raises(ImportFormatError, match="no generation metadata"):
        import_from_image(_png())


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(ImportFormatError, match="cannot read"):
        import_from_image(tmp_path / "nope.png")


def test_results_are_frozen() -> None:
    result = parse_a1111_parameters(A1111_OLD)
    with pytest.raises(AttributeError):
        result.source = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        result.steps[0].tool = "x"  # type: ignore[misc]


# --- property tests ------------------------------------------------------------------

_PARSERS = [
    parse_a1111_parameters,
    lambda text: parse_comfyui(text, None),
    lambda text: parse_comfyui(None, text),
    parse_invokeai,
    parse_novelai,
    lambda text: parse_novelai(text, text),
]

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=30,
)


def _graph_like() -> st.SearchStrategy[object]:
    """Dicts shaped roughly like ComfyUI graphs, so the walker itself gets exercised."""
    ids = st.sampled_from(["1", "2", "3", "4", "x"])
    value = st.one_of(
        _json_values,
        st.tuples(ids, st.integers(0, 2)).map(list),
    )
    node = st.fixed_dictionaries(
        {
            "class_type": st.sampled_from(
                [
                    "KSampler",
                    "SamplerCustomAdvanced",
                    "CLIPTextEncode",
                    "LoraLoader",
                    "ConditioningCombine",
                    "Reroute",
                    "X",
                ]
            ),
            "inputs": st.dictionaries(
                st.sampled_from(
                    [
                        "seed",
                        "steps",
                        "cfg",
                        "model",
                        "positive",
                        "negative",
                        "latent_image",
                        "text",
                        "conditioning_1",
                        "clip",
                        "lora_name",
                        "width",
                        "height",
                        "guider",
                        "noise",
                    ]
                ),
                value,
                max_size=8,
            ),
        }
    )
    return st.dictionaries(ids, node, max_size=5)


def _check(parse: object, text: str) -> None:
    assert callable(parse)
    try:
        result = parse(text)
    except ImportFormatError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(result, ImportResult)
    for step in result.steps:
        assert isinstance(step, ImportedStep)
        json.dumps(step.raw, allow_nan=False).encode("utf-8")
        json.dumps(step.parameters, allow_nan=False).encode("utf-8")
    assert all(isinstance(note, str) and "\n" not in note for note in result.skipped)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300), st.sampled_from(range(len(_PARSERS))))
def test_random_text_into_every_parser(text: str, which: int) -> None:
    _check(_PARSERS[which], text)


@settings(max_examples=150, deadline=None)
@given(st.one_of(_json_values, _graph_like()), st.sampled_from(range(len(_PARSERS))))
def test_random_json_into_every_parser(value: object, which: int) -> None:
    _check(_PARSERS[which], json.dumps(value))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "Steps: 3",
                "Seed: x",
                '"',
                ",",
                ":",
                "\n",
                "Negative prompt:",
                "<lora:a:",
                ">",
                "Size: 1x2",
                "Sampler: E",
                "\\",
                " ",
            ]
        ),
        max_size=30,
    )
)
def test_a1111_token_soup(tokens: list[str]) -> None:
    _check(parse_a1111_parameters, "".join(tokens))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_into_import_from_image(data: bytes) -> None:
    for candidate in (data, b"\x89PNG\r\n\x1a\n" + data, b"\xff\xd8\xff" + data, b"RIFF\x00\x01\x00\x00WEBP" + data):
        try:
            result = import_from_image(candidate)
        except ImportFormatError:
            continue
        assert isinstance(result, ImportResult)


_SAMPLE_IMAGES = [
    _png({"parameters": A1111_OLD, "prompt": json.dumps(COMFY_DEFAULT)}, zip_=True),
    _jpeg(_tiff_user_comment(_a1111_user_comment(A1111_OLD))),
    _webp(_tiff_user_comment(_a1111_user_comment(A1111_OLD))),
]


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(range(len(_SAMPLE_IMAGES))),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8),
)
def test_mutated_images_never_crash(which: int, flips: list[tuple[int, int]]) -> None:
    data = bytearray(_SAMPLE_IMAGES[which])
    for position, value in flips:
        data[position % len(data)] = value
    try:
        result = import_from_image(bytes(data))
    except ImportFormatError:
        return
    assert isinstance(result, ImportResult)
