"""Smooth random fields, cheap enough to evaluate at 512 × 512 per slice.

Two kinds, both deterministic for a given ``numpy.random.Generator``:

- ``LatticeField``: white noise on a coarse 3D lattice, each lattice point a Gaussian bump. The sum
  is a smooth, stationary, unit-variance Gaussian field; because the kernel is separable, a box of
  voxels is evaluated by three small matrix products (BLAS) instead of a full-resolution filter.
  Used where 3D continuity matters: head-shape deformation, bone thickness, sulci.
- Slice pools: a few pre-filtered 2D noise planes per process (fixed seed), from which each slice
  takes a random crop and flip. Used for quantum noise and grey/white mottling, which carry no
  anatomy, so sharing planes between scans is harmless and avoids drawing 8 M normals per scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage as ndi

_POOL_SEED = 0x55_4753  # "UGS": fixed, so the pools (and therefore every scan) are reproducible
_POOL_PLANES = 12
_POOL_MARGIN = 48


def _kernel_rows(idx: np.ndarray, origin: float, step: float, n_lat: int, sigma: float):
    """Gaussian weights of the lattice points that reach the voxel indices ``idx``.

    Returns (first lattice index, weights ``(len(idx), m)``), rows scaled to unit sum of squares
    so every voxel of the field has variance 1 along this axis.
    """
    pos = (idx.astype(np.float64) - origin) / step
    reach = 4.0 * sigma / step
    lo = max(int(np.floor(pos.min() - reach)), 0)
    hi = min(int(np.ceil(pos.max() + reach)) + 1, n_lat)
    lat = np.arange(lo, hi, dtype=np.float64)
    w = np.exp(-0.5 * ((pos[:, None] - lat[None, :]) * (step / sigma)) ** 2)
    w /= np.sqrt(np.sum(w * w, axis=1, keepdims=True))
    return lo, w.astype(np.float32)


@dataclass(frozen=True, eq=False)
class LatticeField:
    """``channels`` independent smooth fields over a voxel grid, in voxel-index units."""

    coeffs: np.ndarray  # (C, Lz, Ly, Lx) float32 white noise
    origin: tuple[float, float, float]  # voxel index of lattice point 0, per axis (z, y, x)
    step: tuple[float, float, float]  # lattice spacing in voxels
    sigma: tuple[float, float, float]  # kernel sigma in voxels

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        shape_zyx: tuple[int, int, int],
        spacing_zyx: tuple[float, float, float],
        sigma_mm: float,
        channels: int = 1,
    ) -> LatticeField:
        """A field with Gaussian kernel ``sigma_mm`` (correlation length ≈ 1.4 σ) over the grid."""
        origin, step, sigma, counts = [], [], [], []
        for n, sp in zip(shape_zyx, spacing_zyx, strict=True):
            sig = sigma_mm / sp
            st = 0.9 * sig
            o = -3.0 * sig
            origin.append(o)
            step.append(st)
            sigma.append(sig)
            counts.append(int(np.ceil((n - 1 - 2 * o) / st)) + 1)
        coeffs = rng.standard_normal((channels, *counts), dtype=np.float32)
        return cls(coeffs, tuple(origin), tuple(step), tuple(sigma))  # type: ignore[arg-type]

    def sample(self, zs: np.ndarray, ys: np.ndarray, xs: np.ndarray, coarse: int = 1) -> np.ndarray:
        """Field values on the voxel box ``zs × ys × xs`` (index arrays): ``(C, nz, ny, nx)``.

        ``coarse`` > 1 evaluates every ``coarse``-th row and column and interpolates linearly:
        exact enough when the kernel spans many pixels, and far cheaper.
        """
        if coarse > 1:
            yc = ys[0] + coarse * np.arange(-(-(len(ys) - 1) // coarse) + 1)
            xc = xs[0] + coarse * np.arange(-(-(len(xs) - 1) // coarse) + 1)
            low = self.sample(zs, yc, xc)
            return upsample_linear(upsample_linear(low, coarse, 2, len(ys)), coarse, 3, len(xs))
        c = self.coeffs
        (z0, wz), (y0, wy), (x0, wx) = (
            _kernel_rows(ix, o, s, n, g)
            for ix, o, s, n, g in zip(
                (zs, ys, xs), self.origin, self.step, c.shape[1:], self.sigma, strict=True
            )
        )
        sub = c[:, z0 : z0 + wz.shape[1], y0 : y0 + wy.shape[1], x0 : x0 + wx.shape[1]]
        # contract the cheap axes first: z, then x, then y (the full-size product)
        t = np.tensordot(wz, sub, axes=([1], [1]))  # (nz, C, Ly, Lx)
        t = np.matmul(t, wx.T)  # (nz, C, Ly, nx)
        t = np.matmul(wy, t)  # (nz, C, ny, nx)
        return np.ascontiguousarray(t.transpose(1, 0, 2, 3))

    def at_points(self, zyx: np.ndarray) -> np.ndarray:
        """Field values at a few fractional voxel positions ``(N, 3)``: ``(C, N)`` (slow path)."""
        out = np.empty((self.coeffs.shape[0], len(zyx)), dtype=np.float32)
        for p, (z, y, x) in enumerate(zyx):
            out[:, p] = self.sample(np.array([z]), np.array([y]), np.array([x]))[:, 0, 0, 0]
        return out


@lru_cache(maxsize=8)
def _pool(side: int, sigma_px: float) -> np.ndarray:
    """Unit-variance square 2D Gaussian noise planes, low-pass filtered by ``sigma_px``."""
    rng = np.random.default_rng([_POOL_SEED, side, round(sigma_px * 100)])
    shape = (_POOL_PLANES, side + 2 * _POOL_MARGIN, side + 2 * _POOL_MARGIN)
    planes = rng.standard_normal(shape, dtype=np.float32)
    if sigma_px > 0:
        planes = ndi.gaussian_filter(planes, (0, sigma_px, sigma_px), mode="wrap", truncate=3.0)
        planes /= planes.std(axis=(1, 2), keepdims=True)
    planes.flags.writeable = False
    return planes


def pool_planes(rng: np.random.Generator, n_slices: int, height: int, width: int, sigma_px: float):
    """Yield ``n_slices`` unit-variance noise planes ``(height, width)``: views of the pool,
    each a fresh random crop, possibly flipped (read-only; combine, don't modify)."""
    side = -(-max(height, width) // 128) * 128  # few pool sizes, shared by nearby matrices
    pool = _pool(side, round(float(sigma_px) * 4) / 4)
    span = pool.shape[1] - np.array([height, width]) + 1
    picks = rng.integers(0, _POOL_PLANES, n_slices)
    oy = rng.integers(0, span[0], n_slices)
    ox = rng.integers(0, span[1], n_slices)
    flips = rng.integers(0, 2, n_slices)
    for k in range(n_slices):
        plane = pool[picks[k], oy[k] : oy[k] + height, ox[k] : ox[k] + width]
        yield plane[::-1] if flips[k] else plane  # row flips only: cheap strides


@dataclass(frozen=True, eq=False)
class DirectionalField:
    """Random waves over directions: ``g(n) = √(2/K) Σ cos(κ_k · n + φ_k)``, unit variance.

    A function of direction only is constant along rays from the head centre, so its zero set is
    a family of radial walls: sulci run perpendicular to the brain surface, appear as lines in
    mid-level axial slices and as meanders where a slice grazes the convexity, as on real CT.
    """

    kappa: np.ndarray  # (K, 3) wave vectors in radians per unit direction
    phase: np.ndarray  # (K,)

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        radius_mm: float,
        wavelength_mm: tuple[float, float] = (16.0, 28.0),
        waves: int = 20,
    ) -> DirectionalField:
        """Waves whose wavelength at ``radius_mm`` from the centre is in ``wavelength_mm``."""
        dirs = rng.standard_normal((waves, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        lam = rng.uniform(*wavelength_mm, size=waves)
        kappa = dirs * (2.0 * np.pi * radius_mm / lam)[:, None]
        return cls(kappa.astype(np.float32), rng.uniform(0, 2 * np.pi, waves).astype(np.float32))

    @property
    def mean_gradient(self) -> float:
        """Mean |∇g| on the unit sphere (per radian): 0.886 · √(⅔ · mean |κ|²)."""
        return float(0.886 * np.sqrt(2.0 / 3.0 * np.mean(np.sum(self.kappa**2, axis=1))))

    def __call__(self, nu: np.ndarray, nv: np.ndarray, nw: np.ndarray) -> np.ndarray:
        out = np.zeros(np.broadcast(nu, nv, nw).shape, dtype=np.float32)
        for (kx, ky, kz), ph in zip(self.kappa, self.phase, strict=True):
            out += np.cos(nu * kx + nv * ky + nw * kz + ph)
        out *= np.float32(np.sqrt(2.0 / len(self.phase)))
        return out


def upsample_linear(coarse: np.ndarray, factor: int, axis: int, n_out: int) -> np.ndarray:
    """Linear interpolation by an integer ``factor`` along ``axis``, cropped to ``n_out``."""
    if factor == 1:
        return np.take(coarse, np.arange(n_out), axis=axis)
    m = coarse.shape[axis]
    lo = np.take(coarse, np.arange(m - 1), axis=axis)
    diff = np.take(coarse, np.arange(1, m), axis=axis) - lo
    shape = list(coarse.shape)
    shape[axis] = (m - 1) * factor + 1
    out = np.empty(shape, dtype=np.float32)
    index: list[slice | int] = [slice(None)] * coarse.ndim
    for r in range(factor):
        index[axis] = slice(r, (m - 1) * factor, factor)
        out[tuple(index)] = lo + np.float32(r / factor) * diff if r else lo
    index[axis] = -1
    out[tuple(index)] = np.take(coarse, m - 1, axis=axis)
    index[axis] = slice(0, n_out)
    return out[tuple(index)]
