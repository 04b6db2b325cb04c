"""Benchmark: does `provenance.phash` match altered copies, and only those?

Builds a deterministic set of procedural, photo-like images (several scene
families, many scenes of one style each, so that unrelated images are often
close in layout and palette), applies the alterations a copy found online
typically went through, and measures:

* the true-match rate: the share of (image, alteration) pairs whose suspect
  hash is within `THRESHOLD` of the image's own reference hash;
* the false-match rate: the share of (altered image, *other* image's
  reference) pairs within `THRESHOLD`, over **all** such pairs;
* the time of `reference_hash` and `suspect_hash` next to Pillow's plain
  decode of the same PNG in the same run.

Run it as ``python benchmarks/bench_matching.py [--images N] [--size PX]``.
The last line printed is one JSON object with the headline numbers.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps

try:
    import provenance.phash as phash
except ImportError:  # not installed: use the source tree next to this file
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import provenance.phash as phash

__all__ = ["FAMILIES", "TRANSFORMS", "main", "make_image", "make_images"]

RGB = tuple[int, int, int]
Scene = Callable[[random.Random, int], Image.Image]


# --- procedural images ----------------------------------------------------------------
#
# Everything draws from a `random.Random` seeded with a string (str seeds are
# hashed with SHA-512, so the set is the same on every platform and run).
# Pillow's own `effect_noise` is avoided because it uses the C library's rand().


def _jitter(rng: random.Random, color: RGB, amount: int) -> RGB:
    """`color` with each channel moved by up to `amount`, clamped."""
    r, g, b = (max(0, min(255, c + rng.randint(-amount, amount))) for c in color)
    return (r, g, b)


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    """Linear blend of two colours, t in [0, 1]."""
    r, g, bb = (round(x + (y - x) * t) for x, y in zip(a, b, strict=True))
    return (r, g, bb)


def _vertical_gradient(size: int, stops: Sequence[tuple[float, RGB]]) -> Image.Image:
    """A size x size RGB image whose rows blend through colour `stops` (y in 0..1)."""
    column = Image.new("RGB", (1, size))
    px = column.load()
    assert px is not None
    for y in range(size):
        t = y / max(1, size - 1)
        for (t0, c0), (t1, c1) in pairwise(stops):
            if t0 <= t <= t1:
                px[0, y] = _mix(c0, c1, (t - t0) / max(1e-9, t1 - t0))
                break
        else:
            px[0, y] = stops[-1][1] if t > stops[-1][0] else stops[0][1]
    return column.resize((size, size), Image.Resampling.NEAREST)


def _smooth_noise(rng: random.Random, size: int, cells: int, octaves: int = 3) -> Image.Image:
    """Fractal value noise ("clouds") as an L image, from seeded random bytes."""
    out: Image.Image | None = None
    weight = 1.0
    total = 0.0
    for octave in range(octaves):
        n = cells * 2**octave
        small = Image.frombytes("L", (n, n), rng.randbytes(n * n))
        layer = small.resize((size, size), Image.Resampling.BICUBIC)
        total += weight
        out = layer if out is None else Image.blend(out, layer, weight / total)
        weight *= 0.5
    assert out is not None
    return ImageOps.autocontrast(out, cutoff=1)


def _grain(rng: random.Random, image: Image.Image, strength: float) -> Image.Image:
    """Add fine sensor-like grain (blend with uniform noise)."""
    w, h = image.size
    noise = Image.frombytes("L", (w, h), rng.randbytes(w * h)).convert("RGB")
    return Image.blend(image, noise, strength)


def _ridge(rng: random.Random, size: int, base: float, rough: float) -> list[tuple[float, float]]:
    """A random-walk skyline polygon (closed along the bottom edge)."""
    pts = [(0.0, float(size))]
    y = base * size
    steps = rng.randint(12, 40)
    for i in range(steps + 1):
        x = size * i / steps
        y += rng.uniform(-rough, rough) * size
        y = min(max(y, 0.15 * size), 0.95 * size)
        pts.append((x, y))
    pts.append((float(size), float(size)))
    return pts


def _shaded_blob(
    image: Image.Image, box: tuple[int, int, int, int], color: RGB, light: float
) -> None:
    """Paste an ellipse lit from the upper left (a radial gradient as shading)."""
    x0, y0, x1, y1 = box
    w, h = max(2, x1 - x0), max(2, y1 - y0)
    shade = Image.radial_gradient("L").resize((w, h), Image.Resampling.BILINEAR)
    shade = shade.transform(
        (w, h), Image.Transform.AFFINE, (1, 0, w * light * 0.3, 0, 1, h * light * 0.3)
    )
    dark = tuple(c // 3 for c in color)
    body = ImageOps.colorize(shade, black=color, white=dark)  # type: ignore[arg-type]
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).ellipse((0, 0, w - 1, h - 1), fill=255)
    image.paste(body, (x0, y0), mask)


_SKIES: list[list[RGB]] = [
    [(40, 90, 170), (120, 170, 220), (230, 220, 200)],  # clear day
    [(20, 20, 60), (150, 60, 90), (250, 160, 80)],  # sunset
    [(110, 120, 130), (160, 165, 170), (200, 200, 200)],  # overcast
    [(5, 10, 30), (20, 30, 70), (60, 60, 100)],  # night
]


def landscape(rng: random.Random, size: int) -> Image.Image:
    """Sky gradient, sun, layered mountain ridges, grain."""
    sky = [_jitter(rng, c, 25) for c in rng.choice(_SKIES)]
    horizon = rng.uniform(0.35, 0.7)
    img = _vertical_gradient(size, [(0, sky[0]), (horizon * 0.8, sky[1]), (horizon, sky[2])])
    d = ImageDraw.Draw(img)
    sx, sy, r = rng.uniform(0.1, 0.9) * size, rng.uniform(0.05, horizon) * size, rng.uniform(
        0.03, 0.1
    ) * size
    d.ellipse((sx - r, sy - r, sx + r, sy + r), fill=_jitter(rng, (250, 230, 180), 10))
    ground = _jitter(rng, rng.choice([(40, 70, 40), (90, 80, 60), (60, 60, 80)]), 20)
    layers = rng.randint(2, 4)
    for i in range(layers):
        t = (i + 1) / layers
        base = horizon - 0.25 * (1 - t) + rng.uniform(-0.05, 0.05)
        d.polygon(_ridge(rng, size, base, rng.uniform(0.01, 0.04)), fill=_mix(sky[2], ground, t))
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2)))
    return _grain(rng, img, 0.06)


def seascape(rng: random.Random, size: int) -> Image.Image:
    """Sky, sea with wave lines and a sun glitter path, islands and a boat."""
    sky = [_jitter(rng, c, 25) for c in rng.choice(_SKIES)]
    hz = rng.uniform(0.3, 0.65)
    sea_top = _jitter(rng, (30, 80, 120), 25)
    sea_bot = _jitter(rng, (10, 40, 70), 20)
    img = _vertical_gradient(
        size, [(0, sky[0]), (hz - 0.001, sky[2]), (hz, sea_top), (1, sea_bot)]
    )
    d = ImageDraw.Draw(img)
    sx = rng.uniform(0.1, 0.9) * size
    for _ in range(rng.randint(80, 200)):
        y = rng.uniform(hz, 1) * size
        x = rng.uniform(0, 1) * size
        near = (y / size - hz) / (1 - hz)
        w = rng.uniform(5, 40) * (0.3 + near)
        glow = abs(x - sx) < 0.1 * size * (0.5 + near)
        color = _jitter(rng, (230, 210, 160) if glow else (120, 160, 190), 20)
        d.line((x - w, y, x + w, y), fill=color, width=max(1, round(near * 3)))
    for _ in range(rng.randint(0, 3)):
        ix, iw = rng.uniform(0, 1) * size, rng.uniform(0.05, 0.3) * size
        ih = rng.uniform(0.02, 0.08) * size
        d.ellipse((ix - iw, hz * size - ih, ix + iw, hz * size + ih * 0.2), fill=(30, 40, 35))
    bx, by = rng.uniform(0.1, 0.8) * size, rng.uniform(hz + 0.05, 0.9) * size
    bs = rng.uniform(0.03, 0.1) * size
    hull = [(bx, by), (bx + 2 * bs, by), (bx + 1.6 * bs, by + 0.4 * bs), (bx + 0.3 * bs, by + 0.4 * bs)]
    d.polygon(hull, fill=(60, 30, 20))
    d.polygon([(bx + bs, by), (bx + bs, by - 1.5 * bs), (bx + 1.8 * bs, by - 0.1 * bs)], fill=(235, 230, 220))
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.2)))
    return _grain(rng, img, 0.05)


def city(rng: random.Random, size: int) -> Image.Image:
    """Skyline of buildings with lit window grids over a sky gradient."""
    sky = [_jitter(rng, c, 20) for c in rng.choice(_SKIES)]
    img = _vertical_gradient(size, [(0, sky[0]), (0.6, sky[1]), (1, sky[2])])
    d = ImageDraw.Draw(img)
    night = sum(sky[0]) < 200
    x = -rng.uniform(0, 0.05) * size
    while x < size:
        w = rng.uniform(0.05, 0.18) * size
        top = rng.uniform(0.15, 0.7) * size
        body = _jitter(rng, (70, 70, 80) if not night else (25, 25, 35), 25)
        d.rectangle((x, top, x + w, size), fill=body)
        ww, wh = max(2.0, w / rng.randint(4, 8)), rng.uniform(0.015, 0.03) * size
        lit_p = rng.uniform(0.2, 0.8)
        wy = top + wh
        while wy < size - wh:
            wx = x + ww * 0.5
            while wx < x + w - ww:
                if rng.random() < lit_p:
                    lit = (240, 210, 120) if night else (170, 190, 210)
                    d.rectangle((wx, wy, wx + ww * 0.6, wy + wh * 0.6), fill=_jitter(rng, lit, 15))
                wx += ww
            wy += wh * 1.5
        x += w + rng.uniform(-0.02, 0.03) * size
    d.rectangle((0, size * 0.92, size, size), fill=(40, 40, 45))
    return _grain(rng, img.filter(ImageFilter.GaussianBlur(0.7)), 0.05)


def portrait(rng: random.Random, size: int) -> Image.Image:
    """Blurred background, shoulders, head with hair, eyes and mouth."""
    bg = ImageOps.colorize(
        _smooth_noise(rng, size, rng.randint(2, 4)),
        black=_jitter(rng, (40, 50, 60), 30),  # type: ignore[arg-type]
        white=_jitter(rng, (180, 170, 150), 40),  # type: ignore[arg-type]
    ).filter(ImageFilter.GaussianBlur(6))
    d = ImageDraw.Draw(bg)
    cx, cy = rng.uniform(0.3, 0.7) * size, rng.uniform(0.3, 0.55) * size
    hw, hh = rng.uniform(0.1, 0.18) * size, rng.uniform(0.14, 0.24) * size
    cloth = _jitter(rng, rng.choice([(30, 40, 90), (120, 30, 30), (40, 40, 40), (200, 200, 190)]), 30)
    d.ellipse((cx - 3 * hw, cy + hh * 1.2, cx + 3 * hw, cy + hh * 5), fill=cloth)
    skin = _jitter(rng, rng.choice([(230, 190, 160), (180, 130, 100), (110, 75, 55)]), 15)
    d.rectangle((cx - hw * 0.35, cy + hh * 0.6, cx + hw * 0.35, cy + hh * 1.4), fill=skin)
    hair = _jitter(rng, rng.choice([(30, 20, 15), (90, 60, 30), (200, 170, 100), (120, 120, 120)]), 15)
    d.ellipse((cx - hw * 1.15, cy - hh * 1.15, cx + hw * 1.15, cy + hh * rng.uniform(0.2, 1.2)), fill=hair)
    d.ellipse((cx - hw, cy - hh, cx + hw, cy + hh), fill=skin)
    d.chord((cx - hw * 1.05, cy - hh * 1.1, cx + hw * 1.05, cy + hh * 0.3), 180, 360, fill=hair)
    for ex in (-0.4, 0.4):
        ox = cx + ex * hw
        d.ellipse((ox - hw * 0.15, cy - hh * 0.05, ox + hw * 0.15, cy + hh * 0.1), fill=(250, 250, 250))
        d.ellipse((ox - hw * 0.07, cy - hh * 0.02, ox + hw * 0.07, cy + hh * 0.08), fill=(40, 30, 20))
    d.chord((cx - hw * 0.35, cy + hh * 0.35, cx + hw * 0.35, cy + hh * 0.6), 0, 180, fill=(150, 60, 60))
    return _grain(rng, bg.filter(ImageFilter.GaussianBlur(1.2)), 0.04)


def still_life(rng: random.Random, size: int) -> Image.Image:
    """A table edge, a textured wall and shaded fruit and bottles."""
    wall = ImageOps.colorize(
        _smooth_noise(rng, size, 8, 2),
        black=_jitter(rng, (90, 70, 50), 30),  # type: ignore[arg-type]
        white=_jitter(rng, (160, 140, 110), 30),  # type: ignore[arg-type]
    )
    table_y = rng.uniform(0.5, 0.75) * size
    d = ImageDraw.Draw(wall)
    d.rectangle((0, table_y, size, size), fill=_jitter(rng, (110, 70, 40), 30))
    for _ in range(rng.randint(3, 7)):
        if rng.random() < 0.3:
            bw, bh = rng.uniform(0.05, 0.1) * size, rng.uniform(0.2, 0.45) * size
            bx = rng.uniform(0, 1) * size
            color = _jitter(rng, (40, 90, 60), 40)
            d.rectangle((bx - bw / 2, table_y - bh, bx + bw / 2, table_y), fill=color)
            d.rectangle((bx - bw / 5, table_y - bh * 1.3, bx + bw / 5, table_y - bh), fill=color)
        else:
            r = rng.uniform(0.05, 0.14) * size
            fx = rng.uniform(0, 1) * size
            fy = table_y + rng.uniform(-0.3, 0.8) * r
            d.ellipse((fx - r, fy - r * 0.25, fx + r * 1.4, fy + r * 0.3), fill=(50, 35, 25))
            color = rng.choice([(200, 40, 30), (240, 180, 30), (120, 170, 40), (130, 40, 120)])
            box = (int(fx - r), int(fy - 2 * r), int(fx + r), int(fy))
            _shaded_blob(wall, box, _jitter(rng, color, 20), rng.uniform(-1, 1))
    return _grain(rng, wall.filter(ImageFilter.GaussianBlur(1.5)), 0.05)


def abstract(rng: random.Random, size: int) -> Image.Image:
    """Translucent random shapes over a diagonal gradient."""
    a, b = _jitter(rng, (128, 128, 128), 120), _jitter(rng, (128, 128, 128), 120)
    base = _vertical_gradient(size, [(0, a), (1, b)])
    base = base.rotate(rng.uniform(0, 360), resample=Image.Resampling.BILINEAR, fillcolor=b)
    base = base.convert("RGBA")
    for _ in range(rng.randint(8, 30)):
        layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        d = ImageDraw.Draw(layer)
        c = (*_jitter(rng, (128, 128, 128), 127), rng.randint(80, 220))
        x0, y0 = rng.uniform(-0.2, 1) * size, rng.uniform(-0.2, 1) * size
        x1, y1 = x0 + rng.uniform(0.05, 0.5) * size, y0 + rng.uniform(0.05, 0.5) * size
        kind = rng.randrange(3)
        if kind == 0:
            d.ellipse((x0, y0, x1, y1), fill=c)
        elif kind == 1:
            d.rectangle((x0, y0, x1, y1), fill=c)
        else:
            d.polygon([(x0, y1), ((x0 + x1) / 2, y0), (x1, y1)], fill=c)
        base = Image.alpha_composite(base, layer)
    return _grain(rng, base.convert("RGB").filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 3))), 0.04)


_CLOUD_PALETTES: list[tuple[RGB, RGB, RGB]] = [
    ((60, 110, 190), (170, 200, 235), (255, 255, 255)),
    ((30, 20, 40), (180, 80, 60), (255, 210, 150)),
    ((20, 50, 20), (90, 140, 60), (220, 230, 160)),
]


def clouds(rng: random.Random, size: int) -> Image.Image:
    """Colourised fractal noise: clouds, moss, marble -- texture without objects."""
    low, mid, high = (_jitter(rng, c, 25) for c in rng.choice(_CLOUD_PALETTES))
    n = _smooth_noise(rng, size, rng.randint(2, 6), rng.randint(3, 5))
    return _grain(rng, ImageOps.colorize(n, black=low, white=high, mid=mid), 0.05)  # type: ignore[arg-type]


def forest(rng: random.Random, size: int) -> Image.Image:
    """Tree trunks and foliage blobs in front of a misty gradient."""
    sky = _jitter(rng, (190, 200, 190), 30)
    img = _vertical_gradient(size, [(0, sky), (0.7, _jitter(rng, (90, 110, 80), 20)), (1, (40, 50, 30))])
    d = ImageDraw.Draw(img)
    for depth in range(3):
        shade = 0.4 + 0.25 * depth
        for _ in range(rng.randint(6, 18)):
            x = rng.uniform(0, 1) * size
            w = rng.uniform(0.01, 0.04) * size * (1 + depth)
            trunk = _mix(sky, _jitter(rng, (50, 35, 25), 15), shade)
            d.rectangle((x - w / 2, rng.uniform(0, 0.3) * size, x + w / 2, size), fill=trunk)
            for _ in range(rng.randint(1, 4)):
                r = rng.uniform(0.04, 0.12) * size
                fy = rng.uniform(0.05, 0.5) * size
                fx = x + rng.uniform(-2, 2) * r
                leaf = _mix(sky, _jitter(rng, (40, 90, 40), 30), shade)
                d.ellipse((fx - r, fy - r, fx + r, fy + r), fill=leaf)
    return _grain(rng, img.filter(ImageFilter.GaussianBlur(1.0)), 0.06)


def fractal(rng: random.Random, size: int) -> Image.Image:
    """A colourised zoom into the Mandelbrot set boundary (deterministic maths)."""
    spots = [(-0.7453, 0.1127), (-1.2561, 0.3821), (-0.1011, 0.9563), (-1.7497, 0.0),
             (-0.7269, 0.1889), (0.3015, 0.0200), (0.2549, 0.0005)]
    cx, cy = rng.choice(spots)
    half = 10 ** rng.uniform(-2.5, -1.2)
    cx += rng.uniform(-0.5, 0.5) * half  # stay near the boundary, but not on one spot
    cy += rng.uniform(-0.5, 0.5) * half
    small = Image.effect_mandelbrot(
        (size // 2, size // 2), (cx - half, cy - half, cx + half, cy + half), 100
    )
    # A random turn, so that two zooms into one spot are not one composition.
    small = ImageOps.equalize(small).rotate(rng.uniform(0, 360), Image.Resampling.BICUBIC)
    small = small.resize((size, size), Image.Resampling.BICUBIC)
    low, mid, high = (_jitter(rng, c, 40) for c in rng.choice(_CLOUD_PALETTES))
    img = ImageOps.colorize(small, black=low, white=high, mid=mid)  # type: ignore[arg-type]
    return _grain(rng, img, 0.03)


def interior(rng: random.Random, size: int) -> Image.Image:
    """A one-point-perspective room: floor, walls, a bright window, furniture."""
    wall = _jitter(rng, (200, 190, 170), 40)
    img = Image.new("RGB", (size, size), wall)
    d = ImageDraw.Draw(img)
    vx, vy = rng.uniform(0.3, 0.7) * size, rng.uniform(0.35, 0.6) * size
    bw, bh = rng.uniform(0.25, 0.45) * size, rng.uniform(0.25, 0.4) * size
    bx0, by0, bx1, by1 = vx - bw / 2, vy - bh / 2, vx + bw / 2, vy + bh / 2
    d.polygon([(0, size), (size, size), (bx1, by1), (bx0, by1)], fill=_jitter(rng, (120, 85, 55), 30))
    d.polygon([(0, 0), (bx0, by0), (bx0, by1), (0, size)], fill=_mix(wall, (0, 0, 0), 0.25))
    d.polygon([(size, 0), (bx1, by0), (bx1, by1), (size, size)], fill=_mix(wall, (0, 0, 0), 0.15))
    d.polygon([(0, 0), (size, 0), (bx1, by0), (bx0, by0)], fill=_mix(wall, (255, 255, 255), 0.2))
    wx = rng.uniform(bx0, bx1 - bw * 0.3)
    d.rectangle((wx, by0 + bh * 0.15, wx + bw * 0.3, by0 + bh * 0.6), fill=(245, 245, 235))
    for _ in range(rng.randint(1, 4)):
        fx, fw = rng.uniform(0, 0.8) * size, rng.uniform(0.1, 0.3) * size
        fy, fh = rng.uniform(0.6, 0.85) * size, rng.uniform(0.1, 0.25) * size
        d.rectangle((fx, fy - fh, fx + fw, fy), fill=_jitter(rng, (80, 60, 90), 50))
    return _grain(rng, img.filter(ImageFilter.GaussianBlur(1.5)), 0.05)


def bokeh(rng: random.Random, size: int) -> Image.Image:
    """Out-of-focus light discs on a dark background, a sharp subject in front."""
    img = _vertical_gradient(size, [(0, _jitter(rng, (20, 20, 40), 15)), (1, _jitter(rng, (50, 30, 30), 15))])
    lights = Image.new("RGB", (size, size), (0, 0, 0))
    d = ImageDraw.Draw(lights)
    hue = rng.choice([(255, 180, 80), (120, 180, 255), (255, 120, 160)])
    for _ in range(rng.randint(15, 50)):
        r = rng.uniform(0.02, 0.09) * size
        x, y = rng.uniform(0, 1) * size, rng.uniform(0, 1) * size
        c = _mix((0, 0, 0), _jitter(rng, hue, 40), rng.uniform(0.3, 1))
        d.ellipse((x - r, y - r, x + r, y + r), fill=c)
    img = ImageChops.add(img, lights.filter(ImageFilter.GaussianBlur(size / 100)))
    d = ImageDraw.Draw(img)
    sx, sy = rng.uniform(0.2, 0.8) * size, rng.uniform(0.4, 0.8) * size
    sw = rng.uniform(0.05, 0.15) * size
    d.rectangle((sx - sw, sy, sx + sw, size), fill=_jitter(rng, (30, 25, 20), 10))
    d.ellipse((sx - sw * 1.5, sy - sw * 2, sx + sw * 1.5, sy + sw * 0.5), fill=_jitter(rng, (60, 40, 30), 20))
    return _grain(rng, img, 0.04)


def fields(rng: random.Random, size: int) -> Image.Image:
    """Aerial patchwork of fields split by roads, each field with its own texture."""
    img = Image.new("RGB", (size, size), (100, 120, 60))
    d = ImageDraw.Draw(img)
    xs = sorted(rng.uniform(0, 1) * size for _ in range(rng.randint(2, 5)))
    ys = sorted(rng.uniform(0, 1) * size for _ in range(rng.randint(2, 5)))
    tilt = rng.uniform(-0.2, 0.2) * size
    xs = [0.0, *xs, float(size)]
    ys = [0.0, *ys, float(size)]
    crops = [(150, 170, 60), (90, 130, 50), (190, 160, 90), (120, 90, 60), (70, 110, 70)]
    for i in range(len(xs) - 1):
        for j in range(len(ys) - 1):
            c = _jitter(rng, rng.choice(crops), 20)
            poly = [
                (xs[i] + tilt * ys[j] / size, ys[j]),
                (xs[i + 1] + tilt * ys[j] / size, ys[j]),
                (xs[i + 1] + tilt * ys[j + 1] / size, ys[j + 1]),
                (xs[i] + tilt * ys[j + 1] / size, ys[j + 1]),
            ]
            d.polygon(poly, fill=c)
            if rng.random() < 0.5:  # plough furrows
                step = rng.uniform(4, 12)
                y = ys[j]
                while y < ys[j + 1]:
                    d.line((xs[i] + tilt * y / size, y, xs[i + 1] + tilt * y / size, y), fill=_mix(c, (0, 0, 0), 0.2))
                    y += step
    for x in xs[1:-1]:
        d.line((x, 0, x + tilt, size), fill=(200, 195, 180), width=rng.randint(2, 6))
    return _grain(rng, img.filter(ImageFilter.GaussianBlur(0.8)), 0.06)


def night_sky(rng: random.Random, size: int) -> Image.Image:
    """Dark gradient, stars, moon, a glow band or clouds, black skyline (low contrast)."""
    top = _jitter(rng, (5, 8, 25), 5)
    low = _jitter(rng, rng.choice([(40, 50, 90), (70, 40, 80), (30, 60, 70)]), 20)
    img = _vertical_gradient(size, [(0, top), (rng.uniform(0.6, 1), low), (1, low)])
    if rng.random() < 0.6:  # milky way / aurora: a soft band of light at a random angle
        band = Image.new("L", (size, size), 0)
        w = rng.uniform(0.08, 0.25) * size
        y0, y1 = rng.uniform(-0.2, 0.8) * size, rng.uniform(-0.2, 0.8) * size
        ImageDraw.Draw(band).polygon([(0, y0 - w), (size, y1 - w), (size, y1 + w), (0, y0 + w)], fill=255)
        band = ImageChops.multiply(band.filter(ImageFilter.GaussianBlur(w / 2)), _smooth_noise(rng, size, 6, 3))
        glow = _jitter(rng, rng.choice([(120, 120, 150), (60, 160, 110), (150, 90, 160)]), 30)
        img = Image.composite(Image.new("RGB", (size, size), glow), img, band.point(lambda v: v // 2))
    if rng.random() < 0.5:  # dark clouds drifting across
        clouds = _smooth_noise(rng, size, rng.randint(2, 5), 3).point(lambda v: max(0, v - 140) * 2)
        img = Image.composite(Image.new("RGB", (size, size), _jitter(rng, (20, 20, 30), 8)), img, clouds)
    d = ImageDraw.Draw(img)
    for _ in range(rng.randint(100, 400)):
        x, y = rng.uniform(0, 1) * size, rng.uniform(0, 0.8) * size
        v = rng.randint(120, 255)
        d.point((x, y), fill=(v, v, v))
    if rng.random() < 0.8:
        mx, my = rng.uniform(0.1, 0.9) * size, rng.uniform(0.1, 0.5) * size
        mr = rng.uniform(0.02, 0.1) * size
        d.ellipse((mx - mr, my - mr, mx + mr, my + mr), fill=(235, 235, 215))
    d.polygon(_ridge(rng, size, rng.uniform(0.55, 0.85), rng.uniform(0.005, 0.04)), fill=(3, 3, 6))
    for _ in range(rng.randint(0, 6)):  # a few tree silhouettes on the skyline
        tx, th = rng.uniform(0, 1) * size, rng.uniform(0.1, 0.3) * size
        ty = rng.uniform(0.6, 0.9) * size
        d.polygon([(tx, ty - th), (tx - th / 4, ty), (tx + th / 4, ty)], fill=(3, 3, 6))
    for _ in range(rng.randint(0, 12) if rng.random() < 0.4 else 0):  # lit windows of a village
        wx, wy = rng.uniform(0, 1) * size, rng.uniform(0.8, 0.97) * size
        d.rectangle((wx, wy, wx + 0.008 * size, wy + 0.008 * size), fill=(250, 200, 110))
    return _grain(rng, img, 0.03)


def symmetric(rng: random.Random, size: int) -> Image.Image:
    """A mirror-symmetric composition (facade, centred object, kaleidoscope).

    Centred subjects are common in generated images, and symmetry is a hard
    case for sign-of-DCT hashes: half the coefficients are near zero and any
    crop that shifts the picture flips them.  The grain added afterwards keeps
    the symmetry from being exact, as it would not be in a real picture.
    """
    base = rng.choice([city, still_life, abstract, interior, forest, portrait])(rng, size)
    half = base.crop((0, 0, size // 2, size))
    base.paste(ImageOps.mirror(half), (size - size // 2, 0))
    return _grain(rng, base, 0.04)


FAMILIES: dict[str, Scene] = {
    "landscape": landscape,
    "seascape": seascape,
    "city": city,
    "portrait": portrait,
    "still_life": still_life,
    "abstract": abstract,
    "clouds": clouds,
    "forest": forest,
    "fractal": fractal,
    "interior": interior,
    "bokeh": bokeh,
    "fields": fields,
    "night_sky": night_sky,
    "symmetric": symmetric,
}


def make_image(index: int, size: int = 512) -> tuple[str, Image.Image]:
    """Image number `index` of the set: families in turn, each scene its own seed."""
    names = sorted(FAMILIES)
    family = names[index % len(names)]
    rng = random.Random(f"provenance-phash-bench/{family}/{index}")
    return family, FAMILIES[family](rng, size).convert("RGB")


def make_images(count: int, size: int = 512) -> list[tuple[str, Image.Image]]:
    """The first `count` images of the set."""
    return [make_image(i, size) for i in range(count)]


# --- alterations ----------------------------------------------------------------------


def _reencode(image: Image.Image, fmt: str, **options: int) -> Image.Image:
    """Encode and decode again, as an upload to a web service does."""
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    buf.seek(0)
    out = Image.open(buf)
    out.load()
    return out


def _trim(image: Image.Image, left: float, top: float, right: float, bottom: float) -> Image.Image:
    """Crop the given fractions off each side."""
    w, h = image.size
    return image.crop((round(left * w), round(top * h), w - round(right * w), h - round(bottom * h)))


def _scale(image: Image.Image, factor: float) -> Image.Image:
    w, h = image.size
    return image.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.Resampling.LANCZOS)


def _one_side(index: int) -> tuple[float, float, float, float]:
    """5 % off one side, the side taken in turn over the images."""
    sides = [0.0, 0.0, 0.0, 0.0]
    sides[index % 4] = 0.05
    return (sides[0], sides[1], sides[2], sides[3])


def _random_trim(index: int, salt: str) -> tuple[float, float, float, float]:
    """An independent random trim of 0..5 % on each side, seeded by image and salt."""
    rng = random.Random(f"provenance-phash-bench/trim/{salt}/{index}")
    return (rng.uniform(0, 0.05), rng.uniform(0, 0.05), rng.uniform(0, 0.05), rng.uniform(0, 0.05))


Transform = Callable[[int, Image.Image], Image.Image]

TRANSFORMS: dict[str, Transform] = {
    "jpeg q50": lambda i, im: _reencode(im, "JPEG", quality=50),
    "jpeg q75": lambda i, im: _reencode(im, "JPEG", quality=75),
    "resize 25%": lambda i, im: _scale(im, 0.25),
    "resize 50%": lambda i, im: _scale(im, 0.5),
    "webp default": lambda i, im: _reencode(im, "WEBP"),
    "crop 5% each side": lambda i, im: _trim(im, 0.05, 0.05, 0.05, 0.05),
    "crop 5% one side": lambda i, im: _trim(im, *_one_side(i)),
    "crop 2.5% each side": lambda i, im: _trim(im, 0.025, 0.025, 0.025, 0.025),
    "crop 5% + jpeg q50": lambda i, im: _reencode(_trim(im, 0.05, 0.05, 0.05, 0.05), "JPEG", quality=50),
    # Beyond the list: trims that fall between the stored regions, and chains.
    "crop random 0-5%": lambda i, im: _trim(im, *_random_trim(i, "a")),
    "crop random + webp": lambda i, im: _reencode(_trim(im, *_random_trim(i, "b")), "WEBP"),
    "crop rnd+25%+jpeg q50": lambda i, im: _reencode(
        _scale(_trim(im, *_random_trim(i, "c")), 0.25), "JPEG", quality=50
    ),
}


# --- measurement ----------------------------------------------------------------------


_EXACT = 16
"""Distances up to this are exact (`phash.distance`); above it they are the luma-only lower bound."""


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _median(values: Sequence[float]) -> float:
    s = sorted(values)
    return s[len(s) // 2]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table and, last, one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=280, help="distinct images (default 280)")
    parser.add_argument("--size", type=int, default=512, help="side of each image (default 512)")
    args = parser.parse_args(argv)
    if args.images < 2 or args.size < 16:
        parser.error("need at least 2 images of at least 16 px")
    started = time.perf_counter()
    threshold = phash.THRESHOLD

    # Build the set; hash each reference from a decoded PNG, timing the decode too.
    refs: list[phash.PerceptualHash] = []
    families: list[str] = []
    originals: list[Image.Image] = []
    decode_s: list[float] = []
    ref_s: list[float] = []
    for i in range(args.images):
        family, image = make_image(i, args.size)
        buf = io.BytesIO()
        image.save(buf, "PNG")
        t0 = time.perf_counter()
        decoded = Image.open(io.BytesIO(buf.getvalue()))
        decoded.load()
        t1 = time.perf_counter()
        refs.append(phash.reference_hash(decoded))
        t2 = time.perf_counter()
        decode_s.append(t1 - t0)
        ref_s.append(t2 - t1)
        families.append(family)
        originals.append(decoded)
    built = time.perf_counter()

    # Index: key -> references holding it, to check the pigeonhole guarantee.
    index: dict[int, set[int]] = {}
    for j, ref in enumerate(refs):
        for key in phash.index_keys(ref):
            index.setdefault(key, set()).add(j)
    flat = [h for ref in refs for h in ref.hashes]
    per = len(refs[0].hashes)

    n = len(refs)
    sus_s: list[float] = []
    rows: list[tuple[str, float, int, int, int, int]] = []
    true_all: list[int] = []
    unrelated_hist: dict[int, int] = {}
    false_matches = 0
    pairs = 0
    missed_by_index = 0
    candidates = 0
    probes = 0
    closest: tuple[int, str, str, str] | None = None
    for name, transform in TRANSFORMS.items():
        true_d: list[int] = []
        closest_here = phash.HASH_BITS
        false_here = 0
        for i, image in enumerate(originals):
            altered = transform(i, image)
            t0 = time.perf_counter()
            s = phash.suspect_hash(altered)
            sus_s.append(time.perf_counter() - t0)
            # The luma distance first (fast, a lower bound of `distance`), then the
            # full distance, colour included, wherever it could be within _EXACT.
            bits = [((s.bits ^ h) & s.mask).bit_count() for h in flat]
            dists = [min(bits[k : k + per]) for k in range(0, len(bits), per)]
            dists = [phash.distance(s, refs[j]) if d <= _EXACT else d for j, d in enumerate(dists)]
            true_d.append(dists[i])
            found: set[int] = set()
            keys = phash.probe_keys(s, threshold)
            probes += len(keys)
            for key in keys:
                found |= index.get(key, set())
            candidates += len(found)
            missed_by_index += sum(1 for j, d in enumerate(dists) if d <= threshold and j not in found)
            for j, d in enumerate(dists):
                if j == i:
                    continue
                unrelated_hist[d] = unrelated_hist.get(d, 0) + 1
                if d <= threshold:
                    false_here += 1
                if d < closest_here:
                    closest_here = d
                if closest is None or d < closest[0]:
                    closest = (d, name, f"#{i} {families[i]}", f"#{j} {families[j]}")
            pairs += n - 1
        false_matches += false_here
        true_all += true_d
        ok = sum(1 for d in true_d if d <= threshold)
        rows.append((name, ok / n, max(true_d), sorted(true_d)[int(0.99 * (n - 1))], closest_here, false_here))

    # The table.
    print(f"provenance.phash benchmark: {n} images of {args.size}x{args.size}, "
          f"{len(TRANSFORMS)} alterations, THRESHOLD={threshold}, {per} stored hashes per image")
    print(f"false matches counted over all {pairs} (altered image, other image's reference) pairs")
    print()
    head = f"{'alteration':<24}{'true-match':>11}{'worst':>7}{'p99':>5}{'closest unrelated':>19}{'false':>7}"
    print(head)
    print("-" * len(head))
    for name, rate, worst, p99, near, false in rows:
        print(f"{name:<24}{rate:>10.2%}{worst:>7}{p99:>5}{near:>19}{false:>7}")
    print()
    true_rate = sum(1 for d in true_all if d <= threshold) / len(true_all)
    print("distance  own reference (all alterations)  other references (all pairs)")
    for d in range(0, _EXACT + 1):
        own = sum(1 for x in true_all if x == d)
        print(f"{d:>8}  {own:>31}  {unrelated_hist.get(d, 0):>28}")
    print()
    print("threshold  true-match  false matches")
    for t in range(0, 13):
        tm = sum(1 for d in true_all if d <= t) / len(true_all)
        fm = sum(c for d, c in unrelated_hist.items() if d <= t)
        mark = "  <- THRESHOLD" if t == threshold else ""
        print(f"{t:>9}  {tm:>10.2%}  {fm:>13}{mark}")
    print()
    if closest is not None:
        print(f"closest unrelated pair: distance {closest[0]}, {closest[2]} ({closest[1]}) "
              f"vs reference of {closest[3]}")
    keys_per_image = sum(len(phash.index_keys(ref)) for ref in refs) / n
    print(f"index: {keys_per_image:.1f} keys per image; "
          f"{probes / len(true_all):.0f} probe keys per suspect on average; "
          f"{candidates / (len(true_all)):.1f} candidates per suspect on average "
          f"({candidates / (len(true_all) * n):.1%} of the set); "
          f"matches missed by the index: {missed_by_index}")

    # Timing at 1024 x 1024 as well (the size the target is set for).
    big_s: list[float] = []
    for i in range(5):
        _, big = make_image(i, 1024)
        for _ in range(3):
            t0 = time.perf_counter()
            phash.reference_hash(big)
            big_s.append(time.perf_counter() - t0)
    ref_ms, sus_ms, dec_ms = _ms(_median(ref_s)), _ms(_median(sus_s)), _ms(_median(decode_s))
    big_ms = _ms(_median(big_s))
    print(f"time (median): reference_hash {ref_ms} ms, suspect_hash {sus_ms} ms, "
          f"Pillow PNG decode {dec_ms} ms per {args.size}x{args.size} image; "
          f"reference_hash {big_ms} ms per 1024x1024 image")
    total = time.perf_counter() - started
    print(f"built the set in {built - started:.1f} s; whole run {total:.1f} s")
    print(json.dumps({
        "true_match_rate": round(true_rate, 5),
        "false_match_rate": false_matches / pairs,
        "false_matches": false_matches,
        "pairs": pairs,
        "threshold": threshold,
        "images": n,
        "size": args.size,
        "alterations": len(TRANSFORMS),
        "worst_true_distance": max(true_all),
        "closest_unrelated_distance": closest[0] if closest else None,
        "reference_hash_ms": ref_ms,
        "suspect_hash_ms": sus_ms,
        "png_decode_ms": dec_ms,
        "reference_hash_1024_ms": big_ms,
        "index_missed": missed_by_index,
        "seconds": round(total, 1),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
