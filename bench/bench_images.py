"""Preview-tier benchmark: our pipeline vs baselines measured in the same run (perf-anchors 7).

Source: 3000x2000 RGB (gradients + shapes + sigma=6 noise) as PNG (compress_level 6) and JPEG q92.
Tiers are the reference's: base <= 2 MP, high/medium/low = 1.0/0.66/0.33, WebP q80/60/45.
  * ours  = services.images.process_image (JPEG draft, LANCZOS cascade, method 4, no copies)
  * naive = the reference's approach: LANCZOS from the full image for each tier, method 6
  * fast  = perf-anchors' "fast, method 4": thumbnail() defaults (BICUBIC, reducing_gap 2),
            cascading, method 4 -- the pipeline the <= 1.2x target is stated against
Single thread, CPU time of the thread; rounds interleaved, medians reported.
Run: python bench/bench_images.py [rounds]
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hikaze_manager.services.image_processing import (  # noqa: E402
    TIER_QUALITY,
    TIERS,
    base_size,
    process_image,
    tier_size,
)


def make_source(size=(3000, 2000)) -> Image.Image:
    w, h = size
    x = Image.linear_gradient("L").resize((w, h))
    y = x.transpose(Image.Transpose.ROTATE_90).resize((w, h))
    im = Image.merge("RGB", (x, y, Image.new("L", (w, h), 96)))
    draw = ImageDraw.Draw(im)
    for i in range(40):
        box = (i * 71 % w, i * 53 % h, i * 71 % w + 300, i * 53 % h + 200)
        draw.ellipse(box, fill=(i * 37 % 256, i * 91 % 256, i * 13 % 256))
    noise = Image.effect_noise((w, h), 6)  # mean 128, sigma 6
    return Image.merge("RGB", [ImageChops.add(c, noise, offset=-128) for c in im.split()])


def encode(im: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **params)
    return buffer.getvalue()


def webp(im: Image.Image, quality: int, method: int) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, "WEBP", quality=quality, method=method)
    return buffer.getvalue()


def naive(data: bytes) -> dict[str, bytes]:
    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
    base = base_size(*im.size)
    return {t: webp(im.resize(tier_size(base, t), Image.Resampling.LANCZOS), TIER_QUALITY[t], 6)
            for t in TIERS}


def fast(data: bytes) -> dict[str, bytes]:
    im = Image.open(io.BytesIO(data))
    base = base_size(*im.size)
    out = {}
    for tier in TIERS:  # thumbnail() drafts JPEGs and cascades in place
        im.thumbnail(tier_size(base, tier))
        out[tier] = webp(im, TIER_QUALITY[tier], 4)
    return out


def timed(fn, data) -> tuple[float, int]:
    """CPU seconds of this thread (robust to other load on a shared box) and bytes out."""
    start = time.thread_time()
    out = fn(data)
    return time.thread_time() - start, sum(len(v) for v in out.values())


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    source = make_source()
    sources = {"PNG": encode(source, "PNG", compress_level=6),
               "JPEG": encode(source, "JPEG", quality=92)}
    pipelines = {"ours": process_image, "naive": naive, "fast": fast}
    print(f"source 3000x2000; PNG {len(sources['PNG']) / 1e6:.1f} MB, "
          f"JPEG {len(sources['JPEG']) / 1e6:.1f} MB; {rounds} rounds, median CPU ms")
    for fmt, data in sources.items():
        times: dict[str, list[float]] = {name: [] for name in pipelines}
        sizes: dict[str, int] = {}
        ratio_naive, ratio_fast = [], []
        for fn in pipelines.values():  # warm-up
            fn(data)
        for r in range(rounds):
            order = list(pipelines.items())
            order = order[r % len(order):] + order[: r % len(order)]
            this = {}
            for name, fn in order:
                this[name], sizes[name] = timed(fn, data)
                times[name].append(this[name])
            ratio_naive.append(this["ours"] / this["naive"])
            ratio_fast.append(this["ours"] / this["fast"])
        for name in pipelines:
            print(f"{fmt:4} {name:5} {statistics.median(times[name]) * 1000:7.1f} ms  "
                  f"(min {min(times[name]) * 1000:.1f})  out {sizes[name] / 1024:.0f} KiB")
        print(f"{fmt:4} ours/naive = {statistics.median(ratio_naive):.2f}   "
              f"ours/fast(m4) = {statistics.median(ratio_fast):.2f}  (target <= 1.2)")


if __name__ == "__main__":
    main()
