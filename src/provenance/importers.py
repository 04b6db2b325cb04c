"""Parse the unsigned generation metadata other image tools already write.

Nothing here is evidence: AUTOMATIC1111, ComfyUI, InvokeAI and NovelAI write
plain, unsigned text that anyone can edit.  These importers only turn it into
:class:`ImportedStep` values so that the journal can record it as history that
was *imported, not witnessed*.

Every importer treats its input as hostile.  Text fields are capped at
``1 MiB``, JSON nesting and graph sizes are bounded, graph walks carry visited
sets and hop limits, and images are read as containers only: PNG chunks, JPEG
segments and WebP RIFF chunks are walked by hand, pixel data is skipped over
unread, and compressed text is inflated with a size cap.  Pillow is not used to
read, so no Pillow-wide limit is ever touched.  What cannot be understood is
reported in :attr:`ImportResult.skipped` (a partial import) or, when nothing
usable is left, raised as :class:`~provenance.errors.ImportFormatError`.

Normalised parameter names
--------------------------
Where a tool's own key has a known meaning it is stored under one shared name:

=====================  ==========  ============================================
name                   type        meaning
=====================  ==========  ============================================
``seed``               int         noise seed (ComfyUI ``seed``/``noise_seed``)
``steps``              int         sampling steps
``cfg_scale``          float       classifier-free guidance scale
``sampler``            str         sampling algorithm (InvokeAI's diffusers
                                   "scheduler" is one, so it lands here)
``scheduler``          str         sigma schedule (A1111 "Schedule type",
                                   ComfyUI ``scheduler``, NovelAI
                                   ``noise_schedule``)
``width``, ``height``  int         output size in pixels
``model``              str         checkpoint name
``model_hash``         str         checkpoint hash as the tool wrote it
``denoising_strength`` float       img2img / hires strength (ComfyUI
                                   ``denoise``, NovelAI/InvokeAI ``strength``)
``clip_skip``          int         CLIP layers skipped (ComfyUI
                                   ``CLIPSetLastLayer -2`` is 2)
``loras``              list        ``{"name", "weight"[, "hash"]
                                   [, "clip_weight"][, "unet_weight"]}`` in
                                   application order; ``weight`` is None when
                                   only a hash named the LoRA
``embeddings``         list        ``{"name", "hash"}`` (A1111 "TI hashes")
``vae``, ``vae_hash``  str         VAE name and hash
``hires_upscale``      float       A1111 hires-fix factor
``hires_steps``        int         A1111 hires-fix steps
``hires_upscaler``     str         A1111 hires-fix upscaler
``tool_version``       str         the generating tool's version
=====================  ==========  ============================================

Anything else is kept under the tool's own key, and :attr:`ImportedStep.raw`
always holds what was parsed, unnormalised.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import struct
import zlib
from collections.abc import Callable, Iterable
from typing import BinaryIO, Final

import attrs

from provenance.errors import ImportFormatError

__all__ = [
    "ImportResult",
    "ImportedStep",
    "import_from_image",
    "parse_a1111_parameters",
    "parse_comfyui",
    "parse_invokeai",
    "parse_novelai",
]

# --- limits ------------------------------------------------------------------
# Pillow refuses PNG text chunks above 1 MiB, so tools that read metadata with
# Pillow (ComfyUI, A1111 themselves) never see more than this either.
_MAX_FIELD_CHARS: Final = 1 << 20
_MAX_FIELD_BYTES: Final = 1 << 20
# All metadata read from one image, after decompression.
_MAX_TOTAL_TEXT_BYTES: Final = 16 << 20
_MAX_JSON_DEPTH: Final = 64
_MAX_GRAPH_NODES: Final = 10_000
# One walk through a ComfyUI graph (a chain of links or a conditioning tree).
_MAX_WALK_HOPS: Final = 256
_MAX_WALK_DEPTH: Final = 48
# Real workflows have a handful; each step's raw subgraph may repeat shared nodes.
_MAX_SAMPLERS: Final = 64
# Container walking: enough for any real file, small enough to bound a hostile one.
_MAX_PNG_CHUNKS: Final = 200_000
_MAX_TEXT_CHUNKS: Final = 1_000
_MAX_JPEG_SEGMENTS: Final = 10_000
_MAX_WEBP_CHUNKS: Final = 10_000
_MAX_IFD_ENTRIES: Final = 1_000
# Notes beyond this are counted, not kept: garbage in should not mean megabytes out.
_MAX_NOTES: Final = 100
_MAX_LORA_TAGS: Final = 1_000

_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_TAG_EXIF_IFD: Final = 0x8769
_TAG_USER_COMMENT: Final = 0x9286
_TAG_IMAGE_DESCRIPTION: Final = 0x010E
_TAG_MAKE: Final = 0x010F
_TAG_MODEL: Final = 0x0110


# --- public types ------------------------------------------------------------------


@attrs.frozen
class ImportedStep:
    """One generation step that another tool recorded (not witnessed by us).

    ``parameters`` uses the normalised names listed in the module docstring
    where a key's meaning is known and the tool's own key otherwise; ``raw``
    is what was parsed, unnormalised and JSON-compatible.
    """

    tool: str
    prompt: str | None
    negative_prompt: str | None
    parameters: dict[str, object]
    raw: dict[str, object]


@attrs.frozen
class ImportResult:
    """What an importer found: steps, notes on what it skipped, and where from."""

    steps: tuple[ImportedStep, ...]
    skipped: tuple[str, ...]
    source: str


# --- shared helpers ------------------------------------------------------------------


class _Notes:
    """Collects one-line notes on what was skipped, bounded in number and length."""

    __slots__ = ("_dropped", "_items")

    def __init__(self) -> None:
        self._items: list[str] = []
        self._dropped = 0

    def add(self, message: str) -> None:
        if len(self._items) >= _MAX_NOTES:
            self._dropped += 1
            return
        self._items.append(_one_line(message, 300))

    def extend(self, messages: Iterable[str]) -> None:
        for message in messages:
            self.add(message)

    def freeze(self) -> tuple[str, ...]:
        if self._dropped:
            return (*self._items, f"... and {self._dropped} more notes")
        return tuple(self._items)


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _show(value: object, limit: int = 40) -> str:
    """Quote a piece of untrusted input for a note, short and on one line."""
    text = value if isinstance(value, str) else repr(value)
    return repr(_one_line(text, limit))


def _fail(message: str) -> ImportFormatError:
    return ImportFormatError(_one_line(message, 300))


def _clean_str(text: str) -> str:
    """Replace lone surrogates (from JSON ``\\ud800`` escapes) so the text is valid UTF-8."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _check_text(text: object, what: str) -> str:
    if not isinstance(text, str):
        raise _fail(f"{what}: expected text, got {type(text).__name__}")
    if len(text) > _MAX_FIELD_CHARS:
        raise _fail(f"{what}: {len(text)} characters is more than the {_MAX_FIELD_CHARS} allowed")
    return _clean_str(text)


def _load_json(text: object, what: str, notes: _Notes) -> object:
    """Parse bounded JSON and return a cleaned, JSON-compatible copy."""
    checked = _check_text(text, what)
    try:
        value: object = json.loads(checked)
    except RecursionError:
        raise _fail(f"{what}: JSON is nested too deeply") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise _fail(f"{what}: not valid JSON ({exc.msg} at {where})") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python allows
        raise _fail(f"{what}: not valid JSON ({exc})") from None
    flags: dict[str, bool] = {}
    cleaned = _clean_json(value, 0, flags)
    if flags.get("non_finite"):
        notes.add(f"{what}: NaN or infinite numbers (not JSON) were replaced by null")
    return cleaned


def _clean_json(value: object, depth: int, flags: dict[str, bool]) -> object:
    """Copy JSON, fixing strings and non-finite floats; refuse nesting deeper than the cap."""
    if depth > _MAX_JSON_DEPTH:
        raise _fail(f"JSON is nested deeper than {_MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        return _clean_str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        flags["non_finite"] = True
        return None
    if isinstance(value, dict):
        return {_clean_str(str(k)): _clean_json(v, depth + 1, flags) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_json(v, depth + 1, flags) for v in value]
    return value  # bool, int, None


_INT_RE: Final = re.compile(r"[+-]?\d{1,40}")
_FLOAT_RE: Final = re.compile(r"[+-]?(?:\d{1,40}(?:\.\d{0,40})?|\.\d{1,40})(?:[eE][+-]?\d{1,4})?")


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_RE.fullmatch(value.strip()):
        return int(value.strip())
    return None


def _as_float(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
        result = float(value.strip())
    else:
        return None
    return result if math.isfinite(result) else None


def _as_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _as_scalar(value: object) -> object | None:
    """A JSON scalar kept under its own name, or None for containers."""
    return value if isinstance(value, str | int | float | bool) or value is None else None


_Converter = Callable[[object], object | None]


def _put(
    params: dict[str, object],
    notes: _Notes,
    name: str,
    value: object,
    convert: _Converter,
    source_key: str,
    *,
    kept: bool = False,
) -> bool:
    """Store a normalised value, or note why it could not be normalised.

    ``kept`` says the caller stores a failed value under its own name instead.
    """
    if value is None:
        return False
    converted = convert(value)
    if converted is None:
        fate = f"kept as {source_key!r}" if kept else "skipped"
        notes.add(f"{source_key} value {_show(value)} is not a valid {name}; {fate}")
        return False
    params[name] = converted
    return True


# --- AUTOMATIC1111 -------------------------------------------------------------------

# Keys A1111 (and its forks: Forge, SD.Next, reForge) write whose meaning is known.
_A1111_KEYS: Final[dict[str, tuple[str, _Converter]]] = {
    "Steps": ("steps", _as_int),
    "Sampler": ("sampler", _as_str),
    "Schedule type": ("scheduler", _as_str),
    "CFG scale": ("cfg_scale", _as_float),
    "Seed": ("seed", _as_int),
    "Model hash": ("model_hash", _as_str),
    "Model": ("model", _as_str),
    "Denoising strength": ("denoising_strength", _as_float),
    "Clip skip": ("clip_skip", _as_int),
    "VAE": ("vae", _as_str),
    "VAE hash": ("vae_hash", _as_str),
    "Hires upscale": ("hires_upscale", _as_float),
    "Hires steps": ("hires_steps", _as_int),
    "Hires upscaler": ("hires_upscaler", _as_str),
    "Version": ("tool_version", _as_str),
}
# A line is only taken for the parameter line if it names one of these: a prompt
# line like "style: anime, mood: calm, light: soft" must stay part of the prompt.
_A1111_ANCHORS: Final = frozenset({"Steps", "Sampler", "Seed", "CFG scale", "Size", "Model"})
_A1111_KEY_RE: Final = re.compile(r"\w[\w \-/.()+'&]{0,199}")
_SIZE_RE: Final = re.compile(r"(\d{1,6})x(\d{1,6})")
_LORA_TAG_RE: Final = re.compile(r"<(?:lora|lyco):([^<>]{1,1000})>", re.IGNORECASE)
_NEGATIVE_PREFIX: Final = "Negative prompt:"


@attrs.frozen
class _ParamLine:
    """A1111's last line, split into ``Key: value`` pairs and segments that did not parse."""

    pairs: list[tuple[str, object]]
    notes: list[str]  # ready-made notes on segments that did not parse cleanly


def _scan_quoted(line: str, start: int) -> int:
    """Index just past the closing quote of the string opening at ``start``, or -1."""
    i, n = start + 1, len(line)
    while i < n:
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i + 1
        i += 1
    return -1


def _scan_balanced(line: str, start: int) -> int:
    """Index just past the JSON object/array opening at ``start``, or -1 (linear time)."""
    depth, i, n = 0, start, len(line)
    while i < n:
        c = line[i]
        if c == '"':
            end = _scan_quoted(line, i)
            if end == -1:
                return -1
            i = end
            continue
        if c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return -1


def _unquote(quoted: str) -> str:
    # A1111 quotes with json.dumps, so JSON decoding is its exact inverse.
    try:
        value = json.loads(quoted)
    except ValueError:
        value = None
    if isinstance(value, str):
        return _clean_str(value)
    return quoted[1:-1].replace('\\"', '"').replace("\\\\", "\\")


def _scan_param_line(line: str) -> _ParamLine:
    """Split ``Key: value, Key: "quoted, value", ...`` without backtracking regexes.

    A1111's own regex is quadratic on long lines without colons; this scanner
    looks at every character a bounded number of times.
    """
    pairs: list[tuple[str, object]] = []
    bad: list[str] = []
    i, n = 0, len(line)
    while i < n:
        if line[i] in " \t,":
            i += 1
            continue
        colon = line.find(":", i)
        comma = line.find(",", i)
        if colon == -1 or (comma != -1 and comma < colon):
            end = n if comma == -1 else comma
            bad.append(f"parameter {_show(line[i:end].strip())} is not 'Key: value'; skipped")
            i = end + 1
            continue
        key = line[i:colon].strip()
        j = colon + 1
        while j < n and line[j] in " \t":
            j += 1
        value: object | None = None
        next_i = -1
        if j < n and line[j] == '"':
            end = _scan_quoted(line, j)
            if end != -1:
                k = end
                while k < n and line[k] in " \t":
                    k += 1
                if k >= n or line[k] == ",":
                    value, next_i = _unquote(line[j:end]), k + 1
            if value is None:
                bad.append(f"{_show(key)} has an unterminated or stray quote; read up to the next comma")
        elif j < n and line[j] in "{[":
            # Not written by A1111 itself, but Civitai and SD.Next write
            # `Hashes: {"model": "...", "lora:x": "..."}` unquoted.
            end = _scan_balanced(line, j)
            if end != -1:
                try:
                    value = _clean_json(json.loads(line[j:end]), 0, {})
                except (ValueError, RecursionError, ImportFormatError):
                    value = None
                if value is not None:
                    next_i = end
        if value is None:
            end = line.find(",", j)
            end = n if end == -1 else end
            value, next_i = line[j:end].strip(), end + 1
        if _A1111_KEY_RE.fullmatch(key):
            pairs.append((key, value))
        else:
            bad.append(f"parameter key {_show(key)} is not a valid name; skipped")
        i = next_i
    return _ParamLine(pairs, bad)


def _is_param_line(parsed: _ParamLine) -> bool:
    # A1111 itself takes a line with three or more pairs; the anchor keeps
    # prompt lines that happen to contain colons out.
    return len(parsed.pairs) >= 3 and any(k in _A1111_ANCHORS for k, _ in parsed.pairs)


def _parse_name_hash_list(value: str) -> list[tuple[str, str]]:
    """``"add_detail: 7c6bad76eb54, more_details: 3b8aa1d351ef"`` → name/hash pairs."""
    result: list[tuple[str, str]] = []
    for item in value.split(","):
        name, sep, digest = item.rpartition(":")
        if sep and name.strip() and digest.strip():
            result.append((name.strip(), digest.strip()))
    return result


def _lora_tags(prompt: str, notes: _Notes) -> list[dict[str, object]]:
    """Extract ``<lora:name:te[:unet]>`` tags as A1111's extra-network parser reads them."""
    loras: list[dict[str, object]] = []
    for count, match in enumerate(_LORA_TAG_RE.finditer(prompt)):
        if count >= _MAX_LORA_TAGS:
            notes.add(f"more than {_MAX_LORA_TAGS} LoRA tags; the rest were skipped")
            break
        positional: list[str] = []
        named: dict[str, str] = {}
        for part in match.group(1).split(":"):
            key, eq, val = part.partition("=")
            if eq:
                named[key.strip()] = val.strip()
            else:
                positional.append(part.strip())
        name = positional[0] if positional else ""
        if not name:
            notes.add(f"LoRA tag {_show(match.group(0))} has no name; skipped")
            continue
        te_text = named.get("te", positional[1] if len(positional) > 1 else "1")
        weight = _as_float(te_text)
        if weight is None:
            notes.add(f"LoRA tag {_show(match.group(0))} has a bad weight; weight left empty")
        lora: dict[str, object] = {"name": name, "weight": weight}
        unet_text = named.get("unet", positional[2] if len(positional) > 2 else None)
        if unet_text is not None:
            unet = _as_float(unet_text)
            if unet is not None and unet != weight:
                lora["unet_weight"] = unet
        loras.append(lora)
    return loras


def parse_a1111_parameters(text: str) -> ImportResult:
    """Parse the AUTOMATIC1111 ``parameters`` text (PNG chunk or EXIF UserComment).

    Layout: prompt lines, optionally ``Negative prompt:`` lines, then one line
    of comma-separated ``Key: value`` pairs whose values may be JSON-quoted.
    LoRA tags in the prompt become ``loras`` joined with ``Lora hashes``.
    Pairs or lines that do not parse are noted in ``skipped``.
    """
    notes = _Notes()
    text = _check_text(text, "A1111 parameters")
    if not text.strip():
        raise _fail("A1111 parameters: the text is empty")
    lines = text.strip().replace("\r\n", "\n").replace("\r", "\n").split("\n")

    param_index = -1
    parsed = _ParamLine([], [])
    for index in range(len(lines) - 1, -1, -1):
        candidate = _scan_param_line(lines[index])
        if _is_param_line(candidate):
            param_index, parsed = index, candidate
            break
    prompt_lines = lines if param_index == -1 else lines[:param_index]
    if param_index == -1:
        notes.add("no parameter line (Steps: …, Sampler: …, Seed: …) found; imported the prompt only")
    else:
        for offset, extra in enumerate(lines[param_index + 1 :], start=param_index + 2):
            if extra.strip():
                notes.add(f"line {offset} after the parameter line does not parse: {_show(extra)}")

    prompt_parts: list[str] = []
    negative_parts: list[str] = []
    in_negative = False
    for line in prompt_lines:
        line = line.strip()  # A1111 strips every prompt line too
        if line.startswith(_NEGATIVE_PREFIX):
            in_negative = True
            line = line[len(_NEGATIVE_PREFIX) :].strip()
        (negative_parts if in_negative else prompt_parts).append(line)
    prompt = "\n".join(prompt_parts).strip() or None
    negative = "\n".join(negative_parts).strip() if in_negative else None

    raw_params: dict[str, object] = {}
    notes.extend(parsed.notes)
    for key, value in parsed.pairs:
        if key in raw_params:
            notes.add(f"parameter {key!r} appears twice; the last value was kept")
        raw_params[key] = value

    params: dict[str, object] = {}
    lora_hashes: list[tuple[str, str]] = []
    for key, value in raw_params.items():
        if key in _A1111_KEYS:
            name, convert = _A1111_KEYS[key]
            if not _put(params, notes, name, value, convert, key, kept=True):
                params[key] = value  # keep what was written under its own name
        elif key == "Size":
            match = _SIZE_RE.fullmatch(value.strip()) if isinstance(value, str) else None
            if match:
                params["width"], params["height"] = int(match[1]), int(match[2])
            else:
                notes.add(f"Size value {_show(value)} is not WIDTHxHEIGHT; kept as 'Size'")
                params[key] = value
        elif key == "Lora hashes" and isinstance(value, str):
            lora_hashes = _parse_name_hash_list(value)
        elif key == "TI hashes" and isinstance(value, str):
            params["embeddings"] = [{"name": n, "hash": h} for n, h in _parse_name_hash_list(value)]
        else:
            params[key] = value
    hashes = raw_params.get("Hashes")
    if isinstance(hashes, dict):
        # Civitai-style `Hashes: {"lora:name": "..."}` fills in what Lora hashes lacks.
        for hkey, hval in hashes.items():
            known = any(name == hkey[5:] for name, _ in lora_hashes)
            if hkey.startswith("lora:") and isinstance(hval, str) and not known:
                lora_hashes.append((hkey[5:], hval))

    loras = _lora_tags(prompt or "", notes)
    for name, digest in lora_hashes:
        match_lora = next((lo for lo in loras if lo["name"] == name), None)
        if match_lora is None:
            match_lora = next((lo for lo in loras if str(lo["name"]).casefold() == name.casefold()), None)
        if match_lora is None:
            # Hashed but not tagged (the tag may sit in a wildcard): weight unknown.
            loras.append({"name": name, "weight": None, "hash": digest})
        else:
            match_lora.setdefault("hash", digest)
    if loras:
        params["loras"] = loras

    step = ImportedStep(
        tool="automatic1111",
        prompt=prompt,
        negative_prompt=negative,
        parameters=params,
        raw={"prompt": prompt, "negative_prompt": negative, "parameters": raw_params},
    )
    return ImportResult(steps=(step,), skipped=notes.freeze(), source="A1111 parameters text")


# --- ComfyUI -------------------------------------------------------------------------

_KNOWN_SAMPLERS: Final = frozenset({"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"})
# Nodes SamplerCustom/-Advanced take their settings from, merged in as if they were inputs.
_SAMPLER_AUX_INPUTS: Final = ("noise", "guider", "sampler", "sigmas")
_TEXT_KEYS: Final = ("text", "text_g", "text_l", "clip_l", "t5xxl", "prompt")
_SCALAR_KEYS: Final = (
    "value",
    "seed",
    "noise_seed",
    "int",
    "float",
    "number",
    "string",
    "text",
    "Text",
    "STRING",
    "INT",
    "FLOAT",
)
_MODEL_NAME_KEYS: Final = ("ckpt_name", "unet_name", "model_name", "model_path")
# "" is a UI-workflow Reroute's only input.
_LATENT_KEYS: Final = ("latent_image", "samples", "latent", "pixels", "image", "images", "")
# Nodes on a latent path that keep its size (so width/height found upstream still hold).
_SIZE_KEEPING: Final = frozenset(
    {
        "VAEDecode",
        "VAEEncode",
        "VAEDecodeTiled",
        "VAEEncodeTiled",
        "VAEEncodeForInpaint",
        "SetLatentNoiseMask",
        "RepeatLatentBatch",
        "LatentBatchSeedBehavior",
        "Reroute",
        "InpaintModelConditioning",
    }
)
_OUTPUT_HINTS: Final = ("SaveImage", "PreviewImage", "Save", "Preview")
_SEED_CONTROLS: Final = frozenset({"fixed", "increment", "decrement", "randomize"})
_CONTROL: Final = "\0control"
# widgets_values order of the core nodes, for the UI-workflow fallback.
_WIDGETS: Final[dict[str, tuple[str, ...]]] = {
    "KSampler": ("seed", _CONTROL, "steps", "cfg", "sampler_name", "scheduler", "denoise"),
    "KSamplerAdvanced": (
        "add_noise",
        "noise_seed",
        _CONTROL,
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "start_at_step",
        "end_at_step",
        "return_with_leftover_noise",
    ),
    "SamplerCustom": ("add_noise", "noise_seed", _CONTROL, "cfg"),
    "RandomNoise": ("noise_seed", _CONTROL),
    "KSamplerSelect": ("sampler_name",),
    "BasicScheduler": ("scheduler", "steps", "denoise"),
    "CFGGuider": ("cfg",),
    "CLIPTextEncode": ("text",),
    "CLIPTextEncodeSDXL": (
        "width",
        "height",
        "crop_w",
        "crop_h",
        "target_width",
        "target_height",
        "text_g",
        "text_l",
    ),
    "CheckpointLoaderSimple": ("ckpt_name",),
    "UNETLoader": ("unet_name", "weight_dtype"),
    "LoraLoader": ("lora_name", "strength_model", "strength_clip"),
    "LoraLoaderModelOnly": ("lora_name", "strength_model"),
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "EmptySD3LatentImage": ("width", "height", "batch_size"),
    "CLIPSetLastLayer": ("stop_at_clip_layer",),
    "LatentUpscale": ("upscale_method", "width", "height", "crop"),
    "LatentUpscaleBy": ("upscale_method", "scale_by"),
    "ImageScale": ("upscale_method", "width", "height", "crop"),
    "ImageScaleBy": ("upscale_method", "scale_by"),
    "FluxGuidance": ("guidance",),
    "LoadImage": ("image", "upload"),
    "PrimitiveNode": ("value", _CONTROL),
}


@attrs.frozen
class _Node:
    """One node of an API-format graph: its type, inputs and the JSON it came from."""

    id: str
    class_type: str
    inputs: dict[str, object]
    raw: object


def _link_target(value: object) -> tuple[str, int] | None:
    """``[node_id, output_index]`` → (id, index); anything else is a literal."""
    if (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str | int)
        and not isinstance(value[0], bool)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    ):
        return str(value[0]), value[1]
    return None


def _graph_from_prompt(obj: object, notes: _Notes) -> dict[str, _Node]:
    if isinstance(obj, dict) and isinstance(obj.get("prompt"), dict) and "class_type" not in obj:
        obj = obj["prompt"]  # an /prompt API request body rather than the bare graph
    if not isinstance(obj, dict):
        raise _fail("ComfyUI prompt: expected a JSON object of nodes")
    if len(obj) > _MAX_GRAPH_NODES:
        raise _fail(f"ComfyUI prompt: {len(obj)} nodes is more than the {_MAX_GRAPH_NODES} allowed")
    graph: dict[str, _Node] = {}
    for node_id, node in obj.items():
        if not isinstance(node, dict):
            notes.add(f"node {_show(node_id)} is not an object; skipped")
            continue
        class_type = node.get("class_type")
        if not isinstance(class_type, str):
            notes.add(f"node {_show(node_id)} has no class_type; skipped")
            continue
        inputs = node.get("inputs", {})
        if not isinstance(inputs, dict):
            notes.add(f"node {_show(node_id)} ({class_type}) inputs are not an object; ignored")
            inputs = {}
        graph[node_id] = _Node(node_id, class_type, inputs, node)
    if not graph:
        # Nothing node-like at all: this is not a ComfyUI graph, not a partial one.
        raise _fail("ComfyUI prompt: no node with a class_type")
    return graph


def _widget_inputs(class_type: str, widgets: object, notes: _Notes, node_id: str) -> dict[str, object]:
    """Map a UI node's ``widgets_values`` onto input names, as far as they are known."""
    if isinstance(widgets, dict):
        return dict(widgets)  # some custom nodes store widgets by name already
    if not isinstance(widgets, list):
        return {}
    names = _WIDGETS.get(class_type)
    if names is None:
        if len(widgets) == 1:
            return {"value": widgets[0]}  # text/number literal nodes of many packs
        if widgets:
            notes.add(f"workflow node {node_id} ({class_type}): widget layout unknown; kept raw")
        return {"widgets_values": widgets}
    inputs: dict[str, object] = {}
    position = 0
    for name in names:
        if position >= len(widgets):
            break
        if name == _CONTROL:
            # The seed's "control after generate" widget is not always saved.
            if widgets[position] in _SEED_CONTROLS:
                position += 1
            continue
        inputs[name] = widgets[position]
        position += 1
    return inputs


def _graph_from_workflow(obj: object, notes: _Notes) -> dict[str, _Node]:
    """Rebuild an API-format graph from the UI workflow (nodes, links, widgets_values)."""
    if not isinstance(obj, dict):
        raise _fail("ComfyUI workflow: expected a JSON object")
    nodes, links = obj.get("nodes"), obj.get("links", [])
    if not isinstance(nodes, list):
        raise _fail("ComfyUI workflow: 'nodes' is not a list")
    if len(nodes) > _MAX_GRAPH_NODES:
        raise _fail(f"ComfyUI workflow: {len(nodes)} nodes is more than {_MAX_GRAPH_NODES}")
    origins: dict[str, list[object]] = {}
    if not isinstance(links, list):
        notes.add("workflow 'links' is not a list; links ignored")
        links = []
    for link in links:
        # Older files store [id, origin, slot, target, slot, type]; newer ones objects.
        if isinstance(link, list) and len(link) >= 3:
            link_id, origin, slot = link[0], link[1], link[2]
        elif isinstance(link, dict):
            link_id, origin, slot = link.get("id"), link.get("origin_id"), link.get("origin_slot")
        else:
            notes.add(f"workflow link {_show(link)} is malformed; skipped")
            continue
        if _link_target([origin, slot]) is None or isinstance(link_id, bool | float | dict | list):
            notes.add(f"workflow link {_show(link)} is malformed; skipped")
            continue
        origins[str(link_id)] = [str(origin), slot]
    graph: dict[str, _Node] = {}
    for node in nodes:
        if not isinstance(node, dict) or not isinstance(node.get("type"), str):
            notes.add(f"workflow node {_show(node)} has no type; skipped")
            continue
        node_id, class_type = str(node.get("id")), str(node["type"])
        if node.get("mode") in (2, 4):
            notes.add(f"workflow node {node_id} ({class_type}) is muted or bypassed; ignored")
            continue
        inputs: dict[str, object] = {}
        declared = node.get("inputs", [])
        for slot in declared if isinstance(declared, list) else []:
            if isinstance(slot, dict) and isinstance(slot.get("name"), str):
                link_id = slot.get("link")
                if link_id is not None and not isinstance(link_id, bool | dict | list):
                    if str(link_id) in origins:
                        inputs[slot["name"]] = origins[str(link_id)]
                    else:
                        notes.add(f"workflow node {node_id}: link {_show(link_id)} is dangling")
        for name, value in _widget_inputs(class_type, node.get("widgets_values"), notes, node_id).items():
            inputs.setdefault(name, value)  # a widget turned into an input is fed by its link
        graph[node_id] = _Node(node_id, class_type, inputs, node)
    return graph


def _is_sampler(node: _Node) -> bool:
    if node.class_type in _KNOWN_SAMPLERS:
        return True
    # Custom samplers ("KSampler (Efficient)", ...) look like KSampler from the inputs.
    return (
        "Sampler" in node.class_type
        and "steps" in node.inputs
        and ("seed" in node.inputs or "noise_seed" in node.inputs)
    )


def _is_output(node: _Node) -> bool:
    return any(hint in node.class_type for hint in _OUTPUT_HINTS)


class _ComfyWalker:
    """Follows links of one graph with visited sets and hop limits, noting dead ends."""

    def __init__(self, graph: dict[str, _Node], notes: _Notes) -> None:
        self.graph = graph
        self.notes = notes
        self.seen: dict[str, object] = {}  # raw nodes touched while reading one sampler
        self.recording = True  # off past an upstream sampler, whose own step records them

    def node(self, node_id: str, via: str) -> _Node | None:
        node = self.graph.get(node_id)
        if node is None:
            self.notes.add(f"{via}: link to missing node {_show(node_id)}")
            return None
        if self.recording:
            self.seen[node.id] = node.raw
        return node

    def scalar(self, value: object, key: str, via: str) -> object | None:
        """A literal input value, following links through primitive/literal nodes."""
        visited: set[str] = set()
        for _ in range(_MAX_WALK_HOPS):
            target = _link_target(value)
            if target is None:
                return value
            if target[0] in visited:
                self.notes.add(f"{via}: input {key!r} runs in a cycle; skipped")
                return None
            visited.add(target[0])
            node = self.node(target[0], via)
            if node is None:
                return None
            for candidate in (key, *_SCALAR_KEYS):
                if candidate in node.inputs:
                    value = node.inputs[candidate]
                    break
            else:
                literals = [v for v in node.inputs.values() if _link_target(v) is None]
                links = [v for v in node.inputs.values() if _link_target(v) is not None]
                if len(literals) == 1 and not links:
                    value = literals[0]
                elif len(links) == 1 and not literals:
                    value = links[0]  # a reroute-like pass-through
                else:
                    self.notes.add(
                        f"{via}: input {key!r} is computed by node {node.id} ({node.class_type}); value unknown"
                    )
                    return None
        self.notes.add(f"{via}: input {key!r} link chain is too long; skipped")
        return None

    def texts(self, value: object, via: str, extra: dict[str, object]) -> list[str]:
        """Prompt texts feeding a conditioning input, in input order, deduplicated."""
        found: list[str] = []
        self._texts(value, via, extra, found, set(), 0)
        return found

    def _texts(
        self,
        value: object,
        via: str,
        extra: dict[str, object],
        found: list[str],
        visited: set[tuple[str, int]],
        depth: int,
    ) -> None:
        target = _link_target(value)
        if target is None:
            if value is not None:
                self.notes.add(f"{via}: conditioning is not a link; skipped")
            return
        if target in visited:
            return  # shared sub-tree or a cycle: already read
        if depth > _MAX_WALK_DEPTH or len(visited) > _MAX_WALK_HOPS:
            self.notes.add(f"{via}: conditioning graph is too deep; part skipped")
            return
        visited.add(target)
        node = self.node(target[0], via)
        if node is None:
            return
        text_inputs = [k for k in _TEXT_KEYS if k in node.inputs]
        if text_inputs or "TextEncode" in node.class_type:
            where = f"node {node.id} ({node.class_type})"
            for text_key in text_inputs:
                text = self.scalar(node.inputs[text_key], text_key, where)
                if isinstance(text, str) and text not in found:
                    found.append(text)
                elif text is not None and not isinstance(text, str):
                    self.notes.add(f"{where}: {text_key!r} is not text")
            if "clip" in node.inputs and "clip_skip" not in extra:
                self._clip_skip(node.inputs["clip"], extra)
            return
        guidance = _as_float(node.inputs.get("guidance"))
        if guidance is not None:
            extra.setdefault("guidance", guidance)
        if "positive" in node.inputs and "negative" in node.inputs:
            # ControlNetApplyAdvanced & co. output (positive, negative): follow the matching one.
            branch = "negative" if target[1] == 1 else "positive"
            self._texts(node.inputs[branch], via, extra, found, visited, depth + 1)
            return
        followed = False
        for key, sub in node.inputs.items():
            if _link_target(sub) is not None and (key.startswith("cond") or key == ""):
                followed = True
                self._texts(sub, via, extra, found, visited, depth + 1)
        if not followed:
            self.notes.add(f"{via}: conditioning from node {node.id} ({node.class_type}) has no text to read")

    def _clip_skip(self, value: object, extra: dict[str, object]) -> None:
        visited: set[str] = set()
        for _ in range(_MAX_WALK_HOPS):
            target = _link_target(value)
            if target is None or target[0] in visited or target[0] not in self.graph:
                return
            visited.add(target[0])
            node = self.graph[target[0]]
            if "stop_at_clip_layer" in node.inputs:
                self.seen[node.id] = node.raw
                layer = _as_int(self.scalar(node.inputs["stop_at_clip_layer"], "value", node.id))
                if layer is not None:
                    extra["clip_skip"] = abs(layer)
                return
            value = node.inputs.get("clip")

    def model(self, value: object, via: str) -> tuple[str | None, list[dict[str, object]]]:
        """Checkpoint name and the LoRAs on the model path, in application order."""
        loras: list[dict[str, object]] = []
        model_name: str | None = None
        visited: set[str] = set()
        for _ in range(_MAX_WALK_HOPS):
            target = _link_target(value)
            if target is None or target[0] in visited:
                if target is not None:
                    self.notes.add(f"{via}: model path runs in a cycle")
                break
            visited.add(target[0])
            node = self.node(target[0], via)
            if node is None:
                break
            where = f"node {node.id} ({node.class_type})"
            for key in _MODEL_NAME_KEYS:
                name = self.scalar(node.inputs.get(key), key, where)
                if isinstance(name, str):
                    model_name = name
                    break
            if model_name is not None:
                break
            lora_name = self.scalar(node.inputs.get("lora_name"), "lora_name", where)
            if isinstance(lora_name, str):
                lora: dict[str, object] = {
                    "name": lora_name,
                    "weight": _as_float(self.scalar(node.inputs.get("strength_model", 1.0), "value", where)),
                }
                clip_weight = _as_float(self.scalar(node.inputs.get("strength_clip"), "value", where))
                if clip_weight is not None:
                    lora["clip_weight"] = clip_weight
                loras.append(lora)
            for slot in node.inputs.values():
                # rgthree's Power Lora Loader: {"on": true, "lora": "x", "strength": 0.8}
                if isinstance(slot, dict) and isinstance(slot.get("lora"), str) and slot.get("on", True):
                    loras.append({"name": slot["lora"], "weight": _as_float(slot.get("strength"))})
            value = node.inputs.get("model")
            if value is None:
                links = [v for v in node.inputs.values() if _link_target(v) is not None]
                value = links[0] if len(links) == 1 else None  # reroute-like
            if value is None:
                self.notes.add(f"{via}: model path ends at {where} without a checkpoint name")
                break
        else:
            self.notes.add(f"{via}: model path is too long; stopped")
        loras.reverse()  # walked from the sampler backwards
        return model_name, loras

    def latent(self, value: object, via: str) -> dict[str, object]:
        """Size, batch size and upstream sampler of a latent input."""
        info: dict[str, object] = {}
        scale = 1.0
        size_known = True  # false once an unknown node may have resized the image
        visited: set[str] = set()
        for _ in range(_MAX_WALK_HOPS):
            target = _link_target(value)
            if target is None or target[0] in visited:
                break
            visited.add(target[0])
            node = self.node(target[0], via)
            if node is None:
                break
            where = f"node {node.id} ({node.class_type})"
            if _is_sampler(node):
                info.setdefault("latent_from_node", node.id)
                self.recording = False
            elif size_known and "width" not in info:
                width = _as_int(self.scalar(node.inputs.get("width"), "width", where))
                height = _as_int(self.scalar(node.inputs.get("height"), "height", where))
                factor = _as_float(self.scalar(node.inputs.get("scale_by"), "scale_by", where))
                if width and height and width > 0 and height > 0:
                    info["width"], info["height"] = round(width * scale), round(height * scale)
                    batch = _as_int(self.scalar(node.inputs.get("batch_size"), "batch_size", where))
                    if batch is not None:
                        info["batch_size"] = batch
                elif factor is not None and factor > 0:
                    scale *= factor
                elif node.class_type not in _SIZE_KEEPING:
                    size_known = False
            if node.class_type == "LoadImage" and isinstance(node.inputs.get("image"), str):
                info.setdefault("init_image", node.inputs["image"])
            value = next(
                (node.inputs[k] for k in _LATENT_KEYS if _link_target(node.inputs.get(k)) is not None),
                None,
            )
        self.recording = True
        return info

    def effective_inputs(self, sampler: _Node) -> dict[str, object]:
        """The sampler's inputs plus those of its noise/guider/sampler/sigmas nodes."""
        inputs = dict(sampler.inputs)
        for key in _SAMPLER_AUX_INPUTS:
            target = _link_target(sampler.inputs.get(key))
            if target is None:
                continue
            node = self.node(target[0], f"sampler {sampler.id}")
            if node is not None:
                for sub_key, sub_value in node.inputs.items():
                    inputs.setdefault(sub_key, sub_value)
        if "positive" not in inputs and "conditioning" in inputs:
            inputs["positive"] = inputs["conditioning"]  # BasicGuider has one conditioning
        return inputs


# Sampler inputs consumed into normalised names (or links), not repeated under their own name.
_SAMPLER_CONSUMED: Final = frozenset(
    {
        "seed",
        "noise_seed",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "denoise",
        "model",
        "positive",
        "negative",
        "latent_image",
        "conditioning",
        *_SAMPLER_AUX_INPUTS,
    }
)


def _read_sampler(walker: _ComfyWalker, sampler: _Node) -> tuple[ImportedStep, str | None]:
    walker.seen = {sampler.id: sampler.raw}
    notes = walker.notes
    via = f"sampler {sampler.id} ({sampler.class_type})"
    inputs = walker.effective_inputs(sampler)
    params: dict[str, object] = {}

    def literal(key: str) -> object | None:
        return walker.scalar(inputs.get(key), key, via) if key in inputs else None

    seed_key = "seed" if "seed" in inputs else "noise_seed"
    for name, key, convert in (
        ("seed", seed_key, _as_int),
        ("steps", "steps", _as_int),
        ("cfg_scale", "cfg", _as_float),
        ("sampler", "sampler_name", _as_str),
        ("scheduler", "scheduler", _as_str),
        ("denoising_strength", "denoise", _as_float),
    ):
        _put(params, notes, name, literal(key), convert, f"{via} {key!r}")

    extra: dict[str, object] = {}
    positive = walker.texts(inputs.get("positive"), f"{via} positive", extra)
    negative = walker.texts(inputs.get("negative"), f"{via} negative", {})
    if "positive" not in inputs:
        notes.add(f"{via}: no positive conditioning input")
    model, loras = walker.model(inputs.get("model"), f"{via} model")
    if model is not None:
        params["model"] = model
    if loras:
        params["loras"] = loras
    params.update(extra)
    latent = walker.latent(inputs.get("latent_image"), f"{via} latent")
    upstream = latent.pop("latent_from_node", None)
    params.update(latent)
    for key, value in sampler.inputs.items():
        if key not in _SAMPLER_CONSUMED and _link_target(value) is None:
            scalar = _as_scalar(value)
            if scalar is not None:
                params.setdefault(key, scalar)

    raw: dict[str, object] = {
        "node_id": sampler.id,
        "class_type": sampler.class_type,
        "latent_from_node": upstream,
        "nodes": dict(walker.seen),
    }
    step = ImportedStep(
        tool="comfyui",
        prompt="\n".join(positive) if positive else None,
        negative_prompt="\n".join(negative) if negative else None,
        parameters=params,
        raw=raw,
    )
    return step, upstream if isinstance(upstream, str) else None


def _reaches_outputs(graph: dict[str, _Node]) -> set[str]:
    """Ids of nodes that feed a SaveImage/PreviewImage-like node (walked backwards)."""
    stack = [node.id for node in graph.values() if _is_output(node)]
    reached: set[str] = set(stack)
    while stack:
        node = graph[stack.pop()]
        for value in node.inputs.values():
            target = _link_target(value)
            if target is not None and target[0] in graph and target[0] not in reached:
                reached.add(target[0])
                stack.append(target[0])
    return reached


def _sort_key(node_id: str) -> tuple[int, int, str]:
    # isascii: "²".isdigit() is true but int("²") fails.
    numeric = node_id.isascii() and node_id.isdigit() and len(node_id) < 20
    return (0, int(node_id), "") if numeric else (1, 0, node_id)


def _steps_from_graph(graph: dict[str, _Node], notes: _Notes, workflow: object) -> list[ImportedStep]:
    samplers = sorted((n for n in graph.values() if _is_sampler(n)), key=lambda n: _sort_key(n.id))
    if not samplers:
        notes.add("no sampler node (KSampler, SamplerCustom, …) in the graph")
        return []
    if len(samplers) > _MAX_SAMPLERS:
        notes.add(f"{len(samplers)} samplers; only the first {_MAX_SAMPLERS} were read")
        samplers = samplers[:_MAX_SAMPLERS]
    feeding = _reaches_outputs(graph)
    has_outputs = any(_is_output(n) for n in graph.values())
    walker = _ComfyWalker(graph, notes)
    read: dict[str, tuple[ImportedStep, str | None]] = {}
    for sampler in samplers:
        step, upstream = _read_sampler(walker, sampler)
        step.raw["feeds_output"] = sampler.id in feeding
        if workflow is not None:
            step.raw["workflow"] = workflow
        if has_outputs and sampler.id not in feeding:
            notes.add(f"sampler {sampler.id} does not feed any output node; imported anyway")
        read[sampler.id] = (step, upstream)

    # Order so that a sampler comes after the one whose latent it refines (hires passes).
    def depth(node_id: str) -> int:
        hops, seen = 0, {node_id}
        upstream = read[node_id][1]
        while upstream is not None and upstream in read and upstream not in seen:
            seen.add(upstream)
            hops += 1
            upstream = read[upstream][1]
        return hops

    order = sorted(read, key=lambda node_id: (depth(node_id), _sort_key(node_id)))
    return [read[node_id][0] for node_id in order]


def parse_comfyui(prompt_json: str | None, workflow_json: str | None) -> ImportResult:
    """Parse ComfyUI's ``prompt`` (API graph) and/or ``workflow`` (UI graph) JSON.

    One step per sampler node (KSampler, KSamplerAdvanced, SamplerCustom,
    SamplerCustomAdvanced and look-alikes), with seed, steps, cfg, sampler,
    scheduler, denoise, prompt texts traced through conditioning nodes,
    checkpoint, LoRAs and latent size.  The workflow is kept raw in every step
    and read only when the prompt is missing or unusable.
    """
    if prompt_json is None and workflow_json is None:
        raise _fail("ComfyUI: neither a prompt nor a workflow was given")
    notes = _Notes()
    workflow: object = None
    workflow_error: ImportFormatError | None = None
    if workflow_json is not None:
        try:
            workflow = _load_json(workflow_json, "ComfyUI workflow", notes)
        except ImportFormatError as exc:
            workflow_error = exc
            notes.add(f"{exc}; ignored")

    graph: dict[str, _Node] | None = None
    source = "ComfyUI prompt"
    if prompt_json is not None:
        try:
            graph = _graph_from_prompt(_load_json(prompt_json, "ComfyUI prompt", notes), notes)
        except ImportFormatError as exc:
            if workflow is None:
                raise
            notes.add(f"{exc}; fell back to the workflow")
    if graph is None:
        if workflow is None:
            raise workflow_error or _fail("ComfyUI: no usable prompt or workflow")
        graph = _graph_from_workflow(workflow, notes)
        source = "ComfyUI workflow"
    steps = _steps_from_graph(graph, notes, workflow)
    return ImportResult(steps=tuple(steps), skipped=notes.freeze(), source=source)


# --- InvokeAI ------------------------------------------------------------------------

# Keys that keep InvokeAI's own name but are read into normalised ones.
_INVOKE_KEYS: Final[dict[str, tuple[str, _Converter]]] = {
    "seed": ("seed", _as_int),
    "steps": ("steps", _as_int),
    "cfg_scale": ("cfg_scale", _as_float),
    # InvokeAI names the diffusers scheduler, which is the sampling algorithm
    # ("euler_a", "dpmpp_2m_k"): A1111's and ComfyUI's "sampler".
    "scheduler": ("sampler", _as_str),
    "width": ("width", _as_int),
    "height": ("height", _as_int),
    "clip_skip": ("clip_skip", _as_int),
    "strength": ("denoising_strength", _as_float),
    "app_version": ("tool_version", _as_str),
}


def _invoke_model(value: object) -> dict[str, object]:
    """v4/v5 ``{name, key, hash, base}`` or v3 ``{model_name, base_model}``."""
    if isinstance(value, str):
        return {"name": value}
    if not isinstance(value, dict):
        return {}
    out: dict[str, object] = {}
    for target, keys in (
        ("name", ("name", "model_name")),
        ("hash", ("hash",)),
        ("key", ("key",)),
        ("base", ("base", "base_model")),
    ):
        for key in keys:
            if isinstance(value.get(key), str):
                out[target] = value[key]
                break
    return out


def _parse_invoke_legacy(meta: dict[str, object], notes: _Notes) -> ImportedStep:
    """InvokeAI 2.x ``sd-metadata``: ``{"model_weights", "image": {"prompt": [...], ...}}``."""
    image = meta.get("image")
    image = image if isinstance(image, dict) else {}
    params: dict[str, object] = {}
    _put(params, notes, "model", meta.get("model_weights"), _as_str, "model_weights")
    _put(params, notes, "model_hash", meta.get("model_hash"), _as_str, "model_hash")
    _put(params, notes, "tool_version", meta.get("app_version"), _as_str, "app_version")
    prompt_value = image.get("prompt")
    prompt: str | None = None
    if isinstance(prompt_value, str):
        prompt = prompt_value
    elif isinstance(prompt_value, list):
        parts = [p.get("prompt") for p in prompt_value if isinstance(p, dict)]
        prompt = "\n".join(p for p in parts if isinstance(p, str)) or None
    for key, (name, convert) in {
        "seed": ("seed", _as_int),
        "steps": ("steps", _as_int),
        "cfg_scale": ("cfg_scale", _as_float),
        "sampler": ("sampler", _as_str),
        "width": ("width", _as_int),
        "height": ("height", _as_int),
        "strength": ("denoising_strength", _as_float),
    }.items():
        _put(params, notes, name, image.get(key), convert, key)
    for key, value in image.items():
        if key not in {"prompt", "seed", "steps", "cfg_scale", "sampler", "width", "height", "strength"}:
            params.setdefault("generation_mode" if key == "type" else key, value)
    return ImportedStep("invokeai", prompt, None, params, dict(meta))


def parse_invokeai(metadata_json: str) -> ImportResult:
    """Parse InvokeAI ``invokeai_metadata`` (v3–v5) or legacy 2.x ``sd-metadata`` JSON."""
    notes = _Notes()
    meta = _load_json(metadata_json, "InvokeAI metadata", notes)
    if not isinstance(meta, dict):
        raise _fail("InvokeAI metadata: expected a JSON object")
    if isinstance(meta.get("image"), dict) and ("model_weights" in meta or "app_id" in meta):
        step = _parse_invoke_legacy(meta, notes)
        return ImportResult((step,), notes.freeze(), "InvokeAI sd-metadata")
    if not any(k in meta for k in ("positive_prompt", "seed", "model", "generation_mode")):
        raise _fail("InvokeAI metadata: none of positive_prompt, seed, model, generation_mode")

    params: dict[str, object] = {}
    prompt = meta.get("positive_prompt")
    negative = meta.get("negative_prompt")
    for key, text in (("positive_prompt", prompt), ("negative_prompt", negative)):
        if text is not None and not isinstance(text, str):
            notes.add(f"{key} is not text; skipped")
    for key, value in meta.items():
        if key in ("positive_prompt", "negative_prompt"):
            continue
        if key in _INVOKE_KEYS:
            name, convert = _INVOKE_KEYS[key]
            if not _put(params, notes, name, value, convert, key, kept=True) and value is not None:
                params[key] = value
        elif key == "model":
            model = _invoke_model(value)
            if "name" not in model:
                notes.add("model has no name; kept under 'model_info'")
                params["model_info"] = value
            for part, name in (("name", "model"), ("hash", "model_hash"), ("key", "model_key"), ("base", "model_base")):
                if part in model:
                    params[name] = model[part]
        elif key == "vae":
            vae = _invoke_model(value)
            for part, name in (("name", "vae"), ("hash", "vae_hash")):
                if part in vae:
                    params[name] = vae[part]
        elif key == "loras":
            params["loras"] = _invoke_loras(value, notes)
        else:
            params[key] = value
    return ImportResult(
        steps=(
            ImportedStep(
                tool="invokeai",
                prompt=prompt if isinstance(prompt, str) else None,
                negative_prompt=negative if isinstance(negative, str) else None,
                parameters=params,
                raw=dict(meta),
            ),
        ),
        skipped=notes.freeze(),
        source="InvokeAI metadata",
    )


def _invoke_loras(value: object, notes: _Notes) -> list[dict[str, object]]:
    loras: list[dict[str, object]] = []
    if not isinstance(value, list):
        notes.add("loras is not a list; skipped")
        return loras
    for item in value:
        if not isinstance(item, dict):
            notes.add(f"LoRA entry {_show(item)} is not an object; skipped")
            continue
        model = _invoke_model(item.get("model", item.get("lora")))  # v4+ "model", v3 "lora"
        name = model.get("name", model.get("key"))
        if not isinstance(name, str):
            notes.add(f"LoRA entry {_show(item)} has no name; skipped")
            continue
        lora: dict[str, object] = {"name": name, "weight": _as_float(item.get("weight"))}
        if "hash" in model:
            lora["hash"] = model["hash"]
        loras.append(lora)
    return loras


# --- NovelAI -------------------------------------------------------------------------

_NOVELAI_KEYS: Final[dict[str, tuple[str, _Converter]]] = {
    "seed": ("seed", _as_int),
    "steps": ("steps", _as_int),
    "scale": ("cfg_scale", _as_float),
    "sampler": ("sampler", _as_str),
    "noise_schedule": ("scheduler", _as_str),
    "width": ("width", _as_int),
    "height": ("height", _as_int),
    "strength": ("denoising_strength", _as_float),
}
_NOVELAI_MARKERS: Final = frozenset({"uc", "scale", "n_samples", "noise_schedule", "v4_prompt"})


def _nai_caption(value: object) -> tuple[str | None, list[object]]:
    """``v4_prompt`` → (base caption, character captions)."""
    caption = value.get("caption") if isinstance(value, dict) else None
    if not isinstance(caption, dict):
        return None, []
    chars = caption.get("char_captions")
    base = caption.get("base_caption")
    return (base if isinstance(base, str) else None), (chars if isinstance(chars, list) else [])


def parse_novelai(comment_json: str, description: str | None = None) -> ImportResult:
    """Parse NovelAI's PNG ``Comment`` JSON; ``Description`` holds the prompt in old files."""
    notes = _Notes()
    if description is not None:
        description = _check_text(description, "NovelAI Description")
    try:
        comment = _load_json(comment_json, "NovelAI Comment", notes)
    except ImportFormatError as exc:
        if not description:
            raise
        notes.add(f"{exc}; imported the Description prompt only")
        comment = {}
    if not isinstance(comment, dict):
        if not description:
            raise _fail("NovelAI Comment: expected a JSON object")
        notes.add("NovelAI Comment is not a JSON object; imported the Description prompt only")
        comment = {}

    base, chars = _nai_caption(comment.get("v4_prompt"))
    neg_base, neg_chars = _nai_caption(comment.get("v4_negative_prompt"))
    prompt = comment.get("prompt")
    prompt = prompt if isinstance(prompt, str) else base or description or None
    negative = comment.get("uc")
    negative = negative if isinstance(negative, str) else neg_base

    params: dict[str, object] = {}
    for key, value in comment.items():
        if key in ("prompt", "uc", "v4_prompt", "v4_negative_prompt"):
            continue
        if key in _NOVELAI_KEYS:
            name, convert = _NOVELAI_KEYS[key]
            if not _put(params, notes, name, value, convert, key, kept=True) and value is not None:
                params[key] = value
        else:
            params[key] = value
    characters: list[dict[str, object]] = []
    for index, char in enumerate(chars):
        if not isinstance(char, dict) or not isinstance(char.get("char_caption"), str):
            notes.add(f"v4 character caption {index} is malformed; skipped")
            continue
        entry: dict[str, object] = {"prompt": char["char_caption"]}
        if index < len(neg_chars) and isinstance(neg_chars[index], dict):
            neg_char = neg_chars[index]
            if isinstance(neg_char, dict) and isinstance(neg_char.get("char_caption"), str):
                entry["negative_prompt"] = neg_char["char_caption"]
        if "centers" in char:
            entry["centers"] = char["centers"]
        characters.append(entry)
    if characters:
        params["characters"] = characters
    if description and prompt != description:
        params["description"] = description
    raw: dict[str, object] = {"Comment": comment, "Description": description}
    step = ImportedStep("novelai", prompt, negative, params, raw)
    return ImportResult(steps=(step,), skipped=notes.freeze(), source="NovelAI Comment")


# --- image containers ----------------------------------------------------------------


@attrs.frozen
class _Field:
    """One metadata text found in an image, with where it was found."""

    text: str
    where: str


def _read_exact(fp: BinaryIO, size: int) -> bytes | None:
    data = fp.read(size)
    return data if len(data) == size else None


def _inflate(data: bytes, what: str, notes: _Notes) -> bytes | None:
    """zlib-decompress at most the field cap (a zTXt bomb stops here, not in memory)."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, _MAX_FIELD_BYTES + 1)
    except zlib.error as exc:
        notes.add(f"{what}: compressed text is corrupt ({exc}); skipped")
        return None
    if len(out) > _MAX_FIELD_BYTES or inflater.unconsumed_tail:
        notes.add(f"{what}: decompresses to more than {_MAX_FIELD_BYTES} bytes; skipped")
        return None
    if not inflater.eof:
        notes.add(f"{what}: compressed text is truncated; skipped")
        return None
    return out


def _decode_text(data: bytes, what: str, notes: _Notes, latin1_ok: bool) -> str:
    # tEXt is Latin-1 by the PNG spec, but some tools write UTF-8 there; valid
    # UTF-8 is almost never meant as Latin-1, so try it first.
    try:
        return _clean_str(data.decode("utf-8"))
    except UnicodeDecodeError:
        if latin1_ok:
            return data.decode("latin-1")
        notes.add(f"{what}: not valid UTF-8; undecodable bytes replaced")
        return data.decode("utf-8", "replace")


def _png_text(kind: bytes, body: bytes, notes: _Notes) -> tuple[str, str] | None:
    """(keyword, text) of a tEXt/zTXt/iTXt chunk body, or None when it is malformed."""
    keyword, sep, rest = body.partition(b"\0")
    name = keyword.decode("latin-1")
    what = f"PNG {kind.decode()} {name!r}"
    if not sep or not 1 <= len(keyword) <= 79:
        notes.add(f"PNG {kind.decode()} chunk has a malformed keyword; skipped")
        return None
    if kind == b"tEXt":
        return name, _decode_text(rest, what, notes, latin1_ok=True)
    if kind == b"zTXt":
        if rest[:1] != b"\0":
            notes.add(f"{what}: unknown compression method; skipped")
            return None
        data = _inflate(rest[1:], what, notes)
        return None if data is None else (name, _decode_text(data, what, notes, latin1_ok=True))
    # iTXt: flag, method, language\0, translated keyword\0, UTF-8 text
    if len(rest) < 2:
        notes.add(f"{what}: truncated; skipped")
        return None
    compressed, method = rest[0], rest[1]
    parts = rest[2:].split(b"\0", 2)
    if len(parts) != 3:
        notes.add(f"{what}: malformed header; skipped")
        return None
    payload: bytes | None = parts[2]
    if compressed:
        if method != 0:
            notes.add(f"{what}: unknown compression method; skipped")
            return None
        payload = _inflate(parts[2], what, notes)
    return None if payload is None else (name, _decode_text(payload, what, notes, latin1_ok=False))


def _read_png(fp: BinaryIO, notes: _Notes) -> tuple[dict[str, _Field], bytes | None]:
    """Text chunks (before or after the image data) and an eXIf chunk; IDAT is skipped unread."""
    fields: dict[str, _Field] = {}
    exif: bytes | None = None
    budget = _MAX_TOTAL_TEXT_BYTES
    text_chunks = 0
    fp.seek(len(_PNG_SIGNATURE))
    for _ in range(_MAX_PNG_CHUNKS):
        header = _read_exact(fp, 8)
        if header is None:
            notes.add("PNG ends without an IEND chunk (truncated); read what was there")
            return fields, exif
        length, kind = struct.unpack(">I4s", header)
        if length > 0x7FFFFFFF or not kind.isalpha():
            notes.add("PNG chunk structure is corrupt; stopped reading")
            return fields, exif
        if kind == b"IEND":
            return fields, exif
        if kind not in (b"tEXt", b"zTXt", b"iTXt", b"eXIf"):
            fp.seek(length + 4, io.SEEK_CUR)  # pixel data and CRC: never read
            continue
        text_chunks += 1
        if text_chunks > _MAX_TEXT_CHUNKS or length > _MAX_FIELD_BYTES or length > budget:
            notes.add(f"PNG {kind.decode()} chunk of {length} bytes is over the limits; skipped")
            fp.seek(length + 4, io.SEEK_CUR)
            continue
        body, crc = _read_exact(fp, length), _read_exact(fp, 4)
        if body is None or crc is None:
            notes.add(f"PNG {kind.decode()} chunk is truncated; skipped")
            return fields, exif
        budget -= length
        if zlib.crc32(kind + body) != struct.unpack(">I", crc)[0]:
            notes.add(f"PNG {kind.decode()} chunk fails its CRC (corrupt); skipped")
            continue
        if kind == b"eXIf":
            if exif is None:
                exif = body
            continue
        parsed = _png_text(kind, body, notes)
        if parsed is None:
            continue
        name, text = parsed
        budget -= max(0, len(text) - length)  # decompressed size counts too
        if name in fields:
            notes.add(f"PNG text {name!r} appears twice; the first was used")
            continue
        fields[name] = _Field(text, f"PNG {kind.decode()} {name!r}")
    notes.add(f"PNG has more than {_MAX_PNG_CHUNKS} chunks; stopped reading")
    return fields, exif


def _read_jpeg(fp: BinaryIO, notes: _Notes) -> bytes | None:
    """The first APP1 ``Exif`` payload; stops at the first scan, never reads entropy data."""
    fp.seek(2)
    for _ in range(_MAX_JPEG_SEGMENTS):
        prefix = _read_exact(fp, 1)
        if prefix != b"\xff":
            notes.add("JPEG segment structure is corrupt or truncated; stopped reading")
            return None
        marker = _read_exact(fp, 1)
        for _fill in range(64):  # 0xFF fill bytes may pad a marker
            if marker != b"\xff":
                break
            marker = _read_exact(fp, 1)
        if marker is None or marker == b"\xff":
            notes.add("JPEG is truncated; stopped reading")
            return None
        code = marker[0]
        if code == 0x01 or code == 0xD8 or 0xD0 <= code <= 0xD7:
            continue  # markers without a length
        if code in (0xD9, 0xDA):
            return None  # end of image or start of scan: metadata comes before
        size_bytes = _read_exact(fp, 2)
        if size_bytes is None or (size := struct.unpack(">H", size_bytes)[0]) < 2:
            notes.add("JPEG segment length is corrupt; stopped reading")
            return None
        if code == 0xE1:
            payload = _read_exact(fp, size - 2)
            if payload is None:
                notes.add("JPEG APP1 segment is truncated; stopped reading")
                return None
            if payload.startswith(b"Exif\0\0"):
                return payload[6:]
        else:
            fp.seek(size - 2, io.SEEK_CUR)
    notes.add(f"JPEG has more than {_MAX_JPEG_SEGMENTS} segments; stopped reading")
    return None


def _read_webp(fp: BinaryIO, notes: _Notes) -> bytes | None:
    """The top-level ``EXIF`` chunk of a RIFF WebP file, if any."""
    fp.seek(4)
    riff_size = struct.unpack("<I", fp.read(4))[0]
    end = 8 + riff_size
    position = 12
    fp.seek(position)
    for _ in range(_MAX_WEBP_CHUNKS):
        if position + 8 > end:
            return None
        header = _read_exact(fp, 8)
        if header is None:
            notes.add("WebP is truncated; stopped reading")
            return None
        kind, size = struct.unpack("<4sI", header)
        if kind == b"EXIF":
            if size > _MAX_FIELD_BYTES:
                notes.add(f"WebP EXIF chunk of {size} bytes is over the limit; skipped")
                return None
            data = _read_exact(fp, size)
            if data is None:
                notes.add("WebP EXIF chunk is truncated; skipped")
            return data
        position += 8 + size + (size & 1)  # chunks are padded to even length
        fp.seek(position)
    notes.add(f"WebP has more than {_MAX_WEBP_CHUNKS} chunks; stopped reading")
    return None


# TIFF field type → size of one value in bytes.
_TIFF_TYPE_SIZES: Final = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}


def _read_ifd(tiff: bytes, offset: int, order: str, wanted: frozenset[int]) -> dict[int, bytes]:
    """Value bytes of the wanted tags of the IFD at ``offset`` (bounds-checked)."""
    found: dict[int, bytes] = {}
    if offset < 8 or offset + 2 > len(tiff):
        return found
    count = min(struct.unpack_from(order + "H", tiff, offset)[0], _MAX_IFD_ENTRIES)
    for index in range(count):
        entry = offset + 2 + 12 * index
        if entry + 12 > len(tiff):
            break
        tag, kind, n = struct.unpack_from(order + "HHI", tiff, entry)
        if tag not in wanted or kind not in _TIFF_TYPE_SIZES:
            continue
        size = _TIFF_TYPE_SIZES[kind] * n
        if size <= 4:
            found[tag] = tiff[entry + 8 : entry + 8 + size]
        else:
            start = struct.unpack_from(order + "I", tiff, entry + 8)[0]
            if start + size <= len(tiff):
                found[tag] = tiff[start : start + size]
    return found


def _read_exif(data: bytes, notes: _Notes) -> dict[int, bytes]:
    """UserComment (from the Exif IFD) and IFD0 description/make/model, as raw bytes."""
    tiff = data[6:] if data.startswith(b"Exif\0\0") else data
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        notes.add("EXIF block is not TIFF-structured; skipped")
        return {}
    order = "<" if tiff[:2] == b"II" else ">"
    magic, ifd0 = struct.unpack_from(order + "HI", tiff, 2)
    if magic != 42:
        notes.add("EXIF block has a bad TIFF header; skipped")
        return {}
    wanted0 = frozenset({_TAG_EXIF_IFD, _TAG_IMAGE_DESCRIPTION, _TAG_MAKE, _TAG_MODEL})
    tags = _read_ifd(tiff, ifd0, order, wanted0)
    pointer = tags.pop(_TAG_EXIF_IFD, b"")
    if len(pointer) == 4:
        sub = struct.unpack(order + "I", pointer)[0]
        tags.update(_read_ifd(tiff, sub, order, frozenset({_TAG_USER_COMMENT})))
    return tags


def _utf16_order(body: bytes) -> str:
    """``utf-16-be`` or ``-le``: a BOM decides, else where the zero bytes of ASCII-range text sit."""
    sample = body[:4096]
    even_zeros = sample[0::2].count(0)
    odd_zeros = sample[1::2].count(0)
    # piexif (and so A1111) writes big-endian; some writers follow the TIFF byte
    # order instead.  Latin text has its zero byte first in BE, second in LE.
    return "utf-16-le" if odd_zeros > even_zeros else "utf-16-be"


def _decode_user_comment(data: bytes, what: str, notes: _Notes) -> str | None:
    """Decode an EXIF UserComment with its 8-byte character-code prefix."""
    prefix, body = data[:8], data[8:]
    if prefix == b"UNICODE\0":
        if body[:2] in (b"\xfe\xff", b"\xff\xfe"):
            codec = "utf-16-be" if body[:2] == b"\xfe\xff" else "utf-16-le"
            body = body[2:]
        else:
            codec = _utf16_order(body)
        if len(body) % 2:
            body = body[:-1]
        other = "utf-16-le" if codec == "utf-16-be" else "utf-16-be"
        for attempt in (codec, other):
            try:
                text = body.decode(attempt)
                break
            except UnicodeDecodeError:
                continue
        else:
            notes.add(f"{what}: not valid UTF-16; undecodable characters replaced")
            text = body.decode(codec, "replace")
        text = _clean_str(text)
    elif prefix == b"ASCII\0\0\0":
        text = _decode_text(body, what, notes, latin1_ok=True)
    elif prefix == b"JIS\0\0\0\0\0":
        try:
            text = body.decode("shift_jis")
        except UnicodeDecodeError:
            notes.add(f"{what}: JIS text could not be decoded; skipped")
            return None
    elif prefix == b"\0" * 8:
        text = _decode_text(body, what, notes, latin1_ok=True)  # "undefined": guess
    else:
        # No valid prefix at all: some writers put bare text here.
        text = _decode_text(data, what, notes, latin1_ok=True)
    text = text.rstrip("\0").strip()
    return text or None


def _exif_fields(data: bytes, container: str, notes: _Notes) -> dict[str, _Field]:
    """Metadata texts in EXIF: UserComment, and ComfyUI's ``prompt:``/``workflow:`` in IFD0."""
    fields: dict[str, _Field] = {}
    tags = _read_exif(data, notes)
    comment = tags.get(_TAG_USER_COMMENT)
    if comment:
        text = _decode_user_comment(comment, f"{container} EXIF UserComment", notes)
        if text:
            fields["UserComment"] = _Field(text, f"{container} EXIF UserComment")
    # ComfyUI's WebP/animated savers write "prompt:{json}" into Model and
    # "workflow:{json}" into Make (then ImageDescription for more keys).
    for tag, tag_name in ((_TAG_MODEL, "Model"), (_TAG_MAKE, "Make"), (_TAG_IMAGE_DESCRIPTION, "ImageDescription")):
        value = tags.get(tag)
        if not value:
            continue
        text = _decode_text(value.rstrip(b"\0"), f"EXIF {tag_name}", notes, latin1_ok=True)
        key, sep, rest = text.partition(":")
        if sep and key in ("prompt", "workflow") and key not in fields:
            fields[key] = _Field(rest, f"{container} EXIF {tag_name} '{key}:'")
    return fields


# --- dispatch ------------------------------------------------------------------------


def _looks_like_json_object(text: str) -> bool:
    return text.lstrip().startswith("{")


def _json_shape(text: str) -> str | None:
    """Which tool wrote a bare JSON object (for EXIF UserComment, which carries no key)."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    if obj and all(isinstance(v, dict) and "class_type" in v for v in obj.values()):
        return "comfyui"
    if "positive_prompt" in obj or "generation_mode" in obj or "sd-metadata" in obj:
        return "invokeai"
    if obj.keys() & _NOVELAI_MARKERS:
        return "novelai"
    return None


class _Collector:
    """Runs importers on what an image carries and combines their results."""

    def __init__(self, notes: _Notes) -> None:
        self.notes = notes
        self.steps: list[ImportedStep] = []
        self.sources: list[str] = []
        self.errors: list[str] = []

    def run(self, where: str, parse: Callable[[], ImportResult]) -> None:
        try:
            result = parse()
        except ImportFormatError as exc:
            self.errors.append(f"{where}: {exc}")
            self.notes.add(f"{where}: {exc}")
            return
        self.steps.extend(result.steps)
        self.sources.append(where)
        self.notes.extend(f"{where}: {note}" for note in result.skipped)


def _open(path_or_bytes: str | os.PathLike[str] | bytes) -> BinaryIO:
    if isinstance(path_or_bytes, bytes | bytearray | memoryview):
        return io.BytesIO(bytes(path_or_bytes))
    if not isinstance(path_or_bytes, str | os.PathLike):
        raise TypeError(f"expected a path or bytes, got {type(path_or_bytes).__name__}")
    try:
        # Closed by import_from_image's with-block.
        return open(path_or_bytes, "rb")
    except OSError as exc:
        raise _fail(f"cannot read {os.fspath(path_or_bytes)!r}: {exc.strerror or exc}") from exc


def import_from_image(path_or_bytes: str | os.PathLike[str] | bytes) -> ImportResult:
    """Find and parse other tools' generation metadata in a PNG, JPEG or WebP image.

    PNG text chunks ``parameters`` (A1111), ``prompt``/``workflow`` (ComfyUI),
    ``invokeai_metadata``/``sd-metadata`` (InvokeAI) and ``Comment``/
    ``Description`` (NovelAI), plus EXIF UserComment in JPEG/WebP (and PNG
    eXIf).  Only metadata is read: pixel data is skipped unread.  Raises
    :class:`~provenance.errors.ImportFormatError` when the bytes are not such
    an image, or carry no recognisable metadata (or none that parses).
    """
    notes = _Notes()
    with _open(path_or_bytes) as fp:
        try:
            head = fp.read(12)
            if head.startswith(_PNG_SIGNATURE):
                container = "PNG"
                fields, exif = _read_png(fp, notes)
                if exif is not None:
                    for key, value in _exif_fields(exif, "PNG eXIf", notes).items():
                        fields.setdefault(key, value)
            elif head.startswith(b"\xff\xd8\xff"):
                container = "JPEG"
                exif = _read_jpeg(fp, notes)
                fields = _exif_fields(exif, container, notes) if exif else {}
            elif len(head) == 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
                container = "WebP"
                exif = _read_webp(fp, notes)
                fields = _exif_fields(exif, container, notes) if exif else {}
            else:
                raise _fail("not a PNG, JPEG or WebP image")
        except OSError as exc:
            raise _fail(f"cannot read the image: {exc}") from exc

    collector = _Collector(notes)
    _dispatch(fields, collector)
    if not collector.sources:
        if collector.errors:
            raise _fail(f"{container} metadata could not be parsed: {collector.errors[0]}")
        raise _fail(f"{container} image carries no generation metadata that can be imported")
    return ImportResult(steps=tuple(collector.steps), skipped=notes.freeze(), source="; ".join(collector.sources))


def _dispatch(fields: dict[str, _Field], collector: _Collector) -> None:
    """Send each known field to its importer; note fields that look like metadata but are not."""
    parameters = fields.get("parameters")
    if parameters is not None:
        _dispatch_free_text(parameters, collector, a1111_by_default=True)

    prompt, workflow = fields.get("prompt"), fields.get("workflow")
    if prompt is not None or workflow is not None:
        where = " + ".join(f.where for f in (prompt, workflow) if f is not None)
        p_text = prompt.text if prompt is not None else None
        w_text = workflow.text if workflow is not None else None
        collector.run(where, lambda: parse_comfyui(p_text, w_text))

    invoke = fields.get("invokeai_metadata") or fields.get("sd-metadata")
    if invoke is not None:
        meta = invoke.text
        collector.run(invoke.where, lambda: parse_invokeai(meta))

    comment = fields.get("Comment")
    if comment is not None:
        software = fields.get("Software")
        is_nai = software is not None and "novelai" in software.text.casefold()
        if is_nai or _json_shape(comment.text) == "novelai":
            description = fields.get("Description")
            _run_novelai(collector, comment, description, fields.get("Source"))
        else:
            collector.notes.add(f"{comment.where}: not NovelAI metadata; skipped")

    user_comment = fields.get("UserComment")
    if user_comment is not None:
        # Cameras and editors write ordinary comments here too, so A1111 text
        # is only assumed when a parameter line is there.
        _dispatch_free_text(user_comment, collector, a1111_by_default=False)


def _run_novelai(collector: _Collector, comment: _Field, description: _Field | None, source: _Field | None) -> None:
    desc_text = description.text if description is not None else None

    def parse() -> ImportResult:
        result = parse_novelai(comment.text, desc_text)
        if source is None:
            return result
        # PNG "Source" names the model, e.g. "NovelAI Diffusion V4.5 4BDE2A90".
        steps = tuple(
            attrs.evolve(
                step,
                parameters={**step.parameters, "model": source.text},
                raw={**step.raw, "Source": source.text},
            )
            for step in result.steps
        )
        return attrs.evolve(result, steps=steps)

    collector.run(comment.where, parse)


def _dispatch_free_text(field: _Field, collector: _Collector, *, a1111_by_default: bool) -> None:
    """A field that may hold A1111 text or (Fooocus, Civitai, custom nodes) some JSON."""
    text = field.text
    shape = _json_shape(text) if _looks_like_json_object(text) else None
    if shape == "comfyui":
        collector.run(field.where, lambda: parse_comfyui(text, None))
    elif shape == "invokeai":
        collector.run(field.where, lambda: parse_invokeai(text))
    elif shape == "novelai":
        collector.run(field.where, lambda: parse_novelai(text))
    elif _looks_like_json_object(text) and _json_shape_is_object(text):
        collector.notes.add(f"{field.where}: JSON of an unknown tool (Fooocus?); skipped")
    elif a1111_by_default or _looks_like_a1111(text):
        collector.run(field.where, lambda: parse_a1111_parameters(text))
    else:
        collector.notes.add(f"{field.where}: does not look like generation parameters; skipped")


def _json_shape_is_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return False


def _looks_like_a1111(text: str) -> bool:
    if len(text) > _MAX_FIELD_CHARS:
        return True  # let the parser report the size
    return any(_is_param_line(_scan_param_line(line)) for line in reversed(text.split("\n")))
