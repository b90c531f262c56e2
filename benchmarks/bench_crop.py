"""Would cropping the model input to the head pay? Model time and output change, per margin.

    python benchmarks/bench_crop.py                 # bundled model, 3 synthetic 512² head CTs
    python benchmarks/bench_crop.py --tiny          # CI smoke: 1 small scan, 1 repeat

For each scan the model runs on the full 160² plane (the baseline, what ``ugss-infer`` does) and
on the head's bounding box on the model grid, widened by a margin and aligned to the network's
stride of 16 (so the pooling grid is the full plane's). Printed per margin: the crop's share of
the plane, model time as a ratio to the full plane in the same run, the largest change of the
probability inside the crop and the model pixels whose mask flips.
"""

from __future__ import annotations

import argparse

import numpy as np
from timing import median_s  # benchmarks/timing.py, beside this script

STRIDE = 16
HEAD_WINDOW_LOW = 0.0  # a windowed channel above 0: something denser than the window's floor


def crop_box(x: np.ndarray, margin: int) -> tuple[slice, slice]:
    """The head's box on the model grid (any slice, any window above its floor), widened."""
    head = (x > HEAD_WINDOW_LOW).any(axis=(0, 1))
    rows, cols = np.flatnonzero(head.any(axis=1)), np.flatnonzero(head.any(axis=0))
    size = x.shape[-1]

    def aligned(first: int, last: int) -> slice:
        lo = max(0, (first - margin) // STRIDE * STRIDE)
        hi = min(size, -(-(last + 1 + margin) // STRIDE) * STRIDE)
        return slice(lo, hi)

    return aligned(int(rows[0]), int(rows[-1])), aligned(int(cols[0]), int(cols[-1]))


def model_prob(engine, x: np.ndarray, slab: int) -> np.ndarray:
    parts = []
    engine.reseed(0)
    for start in range(0, x.shape[0], slab):
        parts.append(engine.run(np.ascontiguousarray(x[start : start + slab])).prob)
    return np.concatenate(parts)


def main() -> None:
    from ugss.runtime.engines import OnnxEngine, bundled_model_path
    from ugss.runtime.preprocess import preprocess_slices
    from ugss.runtime.segment import DEFAULT_SLAB
    from ugss.synth.scan import make_scan

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--margins", default="8,16,24", help="model pixels around the head")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="CI smoke: one 128² scan, 1 repeat")
    args = parser.parse_args()
    margins = [int(m) for m in args.margins.split(",")]
    cases = [(3, "subdural"), (5, "epidural"), (7, "intraparenchymal")]
    matrix, repeats = 512, args.repeats
    if args.tiny:
        cases, matrix, repeats = cases[:1], 128, 1
    engine = OnnxEngine(bundled_model_path())
    size = engine.info.input_size
    print(f"crop to the head: bundled model, {matrix}² scans, medians of {repeats}")
    print(
        f"{'scan':18s} {'margin':>6s} {'crop':>9s} {'area':>5s} {'time s':>7s} "
        f"{'vs full':>7s} {'max |dp|':>8s} {'flips':>9s}"
    )
    for seed, kind in cases:
        volume, _, _ = make_scan(seed, matrix=matrix, hemorrhage=kind, thin=False)
        x = preprocess_slices(volume.hu, size, engine.info.windows)
        full = model_prob(engine, x, DEFAULT_SLAB)
        base = median_s(lambda x=x: model_prob(engine, x, DEFAULT_SLAB), repeats, warmup=0)
        lesion = int(np.count_nonzero(full >= engine.info.threshold))
        print(
            f"{kind:18s} {'full':>6s} {f'{size}x{size}':>9s} {1.0:5.2f} {base:7.3f} "
            f"{1.0:6.2f}x {0.0:8.4f} {f'0/{lesion}':>9s}"
        )
        for margin in margins:
            rows, cols = crop_box(x, margin)
            xc = np.ascontiguousarray(x[:, :, rows, cols])
            crop = model_prob(engine, xc, DEFAULT_SLAB)
            t = median_s(lambda xc=xc: model_prob(engine, xc, DEFAULT_SLAB), repeats, warmup=0)
            inside = full[:, rows, cols]
            thr = engine.info.threshold
            flips = int(np.count_nonzero((inside >= thr) != (crop >= thr)))
            shape = f"{rows.stop - rows.start}x{cols.stop - cols.start}"
            area = (rows.stop - rows.start) * (cols.stop - cols.start) / size**2
            print(
                f"{'':18s} {margin:6d} {shape:>9s} {area:5.2f} {t:7.3f} {t / base:6.2f}x "
                f"{float(np.abs(inside - crop).max()):8.4f} {f'{flips}/{lesion}':>9s}"
            )


if __name__ == "__main__":
    main()
