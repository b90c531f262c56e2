"""Pictures people look at: a slice montage with outline and uncertainty, a 3D view, a mesh file.

matplotlib (Agg, no pyplot, no display) and scikit-image are imported when a picture is drawn,
so ``--no-pictures`` runs and the DICOM node pay nothing for them.

Slices are shown in the radiological convention the canonical grid already has: patient left on
the image's right, anterior at the top. The 3D view draws the hemorrhage surface (marching cubes
on the mask) inside a translucent head surface (marching cubes at the skin's HU on a downsampled
volume) in millimetres. The mesh file is the hemorrhage surface as binary PLY in world LPS
millimetres with a ``SPACE=LPS`` comment, the convention 3D Slicer reads models in, so it lands on
the scan when both are loaded.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ugss.runtime.postprocess import HEAD_HU, bounding_box
from ugss.runtime.preprocess import BRAIN_WINDOW
from ugss.runtime.segment import Segmentation
from ugss.runtime.unit_map import dequantized
from ugss.runtime.volume import Volume

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

INTRACRANIAL_COLOUR = "#7cfc00"  # thin outline of the space searched for hemorrhage
MASK_COLOURS = ("red", "#00e5ff")  # the mask outline on the CT row, on the uncertainty row
MAX_MONTAGE_SLICES = 12
MONTAGE_COLUMNS = 6
HEAD_GRID = 80  # in-plane size the head is downsampled to for its surface
# Voxels of the mask's bounding box handed to marching cubes; larger boxes are strided in-plane.
# Bounds time and memory for huge masks (an untrained model may mark the whole head).
MESH_VOXELS = 4_000_000  # the PLY file
VIEW_VOXELS = 400_000  # the matplotlib picture (its polygons are drawn one by one)
VIEW_AZIM = -90  # with elev -90: patient left on the right, anterior up


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def montage_slices(seg: Segmentation, n_slices: int, limit: int = MAX_MONTAGE_SLICES) -> list[int]:
    """The involved slices (evenly thinned to ``limit``); without hemorrhage, the central ones."""
    involved = list(seg.slices_involved)
    pool = involved or list(range(n_slices // 5, n_slices - n_slices // 5)) or list(range(n_slices))
    count = min(len(pool), limit if involved else min(limit, 6))
    picks = np.linspace(0, len(pool) - 1, count).round().astype(int)
    return [pool[i] for i in sorted(set(picks.tolist()))]


def _finding(seg: Segmentation) -> str:
    if not seg.assessed:
        return "not assessed (not a head CT)"
    return f"{seg.volume_ml:.2f} mL" if seg.hemorrhage_present else "no hemorrhage"


def render_montage(volume: Volume, seg: Segmentation, path: str | Path) -> Path:
    """Pairs of rows: brain window with the mask outlined, then uncertainty (or probability)."""
    path = Path(path)
    slices = montage_slices(seg, volume.shape[0])
    level, width = BRAIN_WINDOW.level, BRAIN_WINDOW.width
    lo, hi = level - width / 2, level + width / 2
    cols = min(len(slices), MONTAGE_COLUMNS)
    blocks = -(-len(slices) // cols)
    fig = _figure(1.8 * cols + 0.9, 3.6 * blocks + 0.4)
    second = seg.entropy_q if seg.entropy_q is not None else seg.prob_q
    second_label = "uncertainty (bits)" if seg.entropy_q is not None else "probability"
    step = max(1, max(volume.shape[1:]) // 256)  # a panel is ~180 px wide: no need for more
    sy, sx = volume.spacing[1] * step, volume.spacing[2] * step
    image = None
    space = seg.intracranial
    for n, z in enumerate(slices):
        gray = volume.hu[z, ::step, ::step]
        outline = seg.mask[z, ::step, ::step]
        searched = None if space is None else space.plane(z)[::step, ::step]
        h, w = gray.shape
        extent = (0.0, w * sx, h * sy, 0.0)
        xc, yc = (np.arange(w) + 0.5) * sx, (np.arange(h) + 0.5) * sy
        block, col = divmod(n, cols)
        for row in range(2):
            ax = fig.add_subplot(2 * blocks, cols, (2 * block + row) * cols + col + 1)
            ax.imshow(gray, cmap="gray", vmin=lo, vmax=hi, extent=extent, interpolation="nearest")
            if row == 1:
                over = np.ma.masked_less(dequantized(second[z, ::step, ::step]), 0.02)
                image = ax.imshow(
                    over,
                    cmap="inferno",
                    vmin=0,
                    vmax=1,
                    alpha=0.8,
                    extent=extent,
                    interpolation="nearest",
                )
            if searched is not None and searched.any():
                ax.contour(
                    xc,
                    yc,
                    searched.astype(np.float32),
                    levels=[0.5],
                    colors=INTRACRANIAL_COLOUR,
                    linewidths=0.4,
                )
            if outline.any():
                ax.contour(
                    xc,
                    yc,
                    outline.astype(np.float32),
                    levels=[0.5],
                    colors=MASK_COLOURS[row],
                    linewidths=0.7,
                )
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"slice {z}", fontsize=8)
                ax.text(
                    0.02, 0.98, "R", color="yellow", fontsize=7, va="top", transform=ax.transAxes
                )
                ax.text(
                    0.98,
                    0.98,
                    "L",
                    color="yellow",
                    fontsize=7,
                    va="top",
                    ha="right",
                    transform=ax.transAxes,
                )
    fig.subplots_adjust(left=0.01, right=0.9, bottom=0.01, top=0.93, wspace=0.03, hspace=0.12)
    if image is not None:
        cax = fig.add_axes((0.92, 0.1, 0.015, 0.75))
        cbar = fig.colorbar(image, cax=cax)
        cbar.set_label(second_label, fontsize=8)
    name = Path(volume.source.path).name
    title = f"{name}: {_finding(seg)}"
    searched = "" if space is None else "; green: intracranial space searched"
    fig.suptitle(
        f"{title} (red: mask{searched}; lower rows: {second_label}; research use only)",
        fontsize=9,
    )
    fig.savefig(path, dpi=100)
    return path


def _surface(data: np.ndarray, level: float, spacing: tuple[float, ...], step: int = 1):
    from skimage.measure import marching_cubes

    # pad below the level: surfaces close at the border, even where data fills the whole grid
    outside = min(float(data.min()), level - 1.0)
    padded = np.pad(data, 1, mode="constant", constant_values=outside)
    verts, faces, _, _ = marching_cubes(padded, level=level, spacing=spacing, step_size=step)
    return verts - np.asarray(spacing), faces  # undo the one-voxel pad


def hemorrhage_surface(volume: Volume, mask: np.ndarray, max_voxels: int = MESH_VOXELS):
    """Marching cubes on the mask: ``(verts (z, y, x) voxel indices, faces)``, or None if empty."""
    box = bounding_box(mask)
    if box is None:
        return None
    sub = mask[box]
    stride = max(1, int(np.ceil(np.sqrt(sub.size / max_voxels))))
    small = sub[:, ::stride, ::stride].astype(np.float32)
    verts, faces = _surface(small, 0.5, (1.0, float(stride), float(stride)))
    return verts + np.array([b.start for b in box], dtype=verts.dtype), faces


def head_surface(volume: Volume, grid: int = HEAD_GRID):
    """Skin surface in voxel-index units of the full grid, from a downsampled copy."""
    factor = max(1, int(np.ceil(max(volume.shape[1:]) / grid)))
    small = volume.hu[:, ::factor, ::factor]
    if not (small > HEAD_HU).any():
        return None
    return _surface(small, HEAD_HU, (1.0, float(factor), float(factor)))


def _mm(verts_zyx: np.ndarray, volume: Volume) -> np.ndarray:
    """Index (z, y, x) → display mm along patient left, posterior, superior (LPS: right-handed,
    so matplotlib draws the head unmirrored)."""
    sz, sy, sx = volume.spacing
    return np.stack([verts_zyx[:, 2] * sx, verts_zyx[:, 1] * sy, verts_zyx[:, 0] * sz], axis=1)


def render_3d(volume: Volume, seg: Segmentation, path: str | Path) -> Path:
    """Hemorrhage inside a translucent head, from the front-left and from above, in one PNG."""
    from matplotlib.colors import LightSource
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    path = Path(path)
    head = head_surface(volume)
    bleed = hemorrhage_surface(volume, seg.mask, VIEW_VOXELS)
    fig = _figure(9.0, 4.6)
    light = LightSource(azdeg=225, altdeg=45)
    # the second view looks up from the feet with the nose up, as the axial slices are shown
    views = (("anterior-left oblique", 20, -60), ("from below, as the slices", -90, VIEW_AZIM))
    if head is not None:
        pts = _mm(head[0], volume)
    elif bleed is not None:
        pts = _mm(bleed[0], volume)
    else:
        pts = np.zeros((1, 3))
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    for i, (label, elev, azim) in enumerate(views):
        ax = fig.add_subplot(1, 2, i + 1, projection="3d")
        if head is not None:
            ax.add_collection3d(
                Poly3DCollection(
                    _mm(head[0], volume)[head[1]],
                    facecolor=(0.8, 0.8, 0.8, 0.06),
                    edgecolor="none",
                )
            )
        if bleed is not None:
            ax.add_collection3d(
                Poly3DCollection(
                    _mm(bleed[0], volume)[bleed[1]],
                    facecolors="red",
                    edgecolor="none",
                    shade=True,
                    lightsource=light,
                )
            )
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_zlim(lo[2], hi[2])
        ax.set_box_aspect(np.maximum(hi - lo, 1.0))
        ax.view_init(elev=elev, azim=azim)
        ax.set_xlabel("→ patient left (mm)", fontsize=7)
        ax.set_ylabel("→ posterior (mm)", fontsize=7)
        if abs(elev) < 80:
            ax.set_zlabel("→ superior (mm)", fontsize=7)
        else:
            ax.set_zticks([])
        ax.tick_params(labelsize=6)
        ax.set_title(label, fontsize=9)
    fig.suptitle(
        f"{Path(volume.source.path).name}: {_finding(seg)} (research use only)", fontsize=9
    )
    fig.savefig(path, dpi=100)
    return path


def surface_to_lps(verts_zyx: np.ndarray, volume: Volume) -> np.ndarray:
    """Voxel-index vertices → world LPS mm (RAS from the affine, x and y negated)."""
    ijk = np.column_stack(
        [verts_zyx[:, 2], verts_zyx[:, 1], verts_zyx[:, 0], np.ones(len(verts_zyx))]
    )
    ras = (ijk @ volume.affine.T)[:, :3]
    return ras * np.array([-1.0, -1.0, 1.0])


def write_ply(path: str | Path, verts: np.ndarray, faces: np.ndarray, comments=()) -> Path:
    """Binary little-endian PLY: float32 vertices, triangles as uchar-counted int32 lists."""
    path = Path(path)
    verts = np.ascontiguousarray(verts, dtype="<f4")
    tri = np.empty(len(faces), dtype=[("n", "u1"), ("v", "<i4", (3,))])
    tri["n"] = 3
    tri["v"] = faces
    header = ["ply", "format binary_little_endian 1.0"]
    header += [f"comment {c}" for c in comments]
    header += [
        f"element vertex {len(verts)}",
        "property float x",
        "property float y",
        "property float z",
        f"element face {len(tri)}",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    with open(path, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(verts.tobytes())
        fh.write(tri.tobytes())
    return path


def write_hemorrhage_mesh(volume: Volume, seg: Segmentation, path: str | Path) -> Path | None:
    """The hemorrhage surface as PLY in world LPS mm (None when there is no hemorrhage)."""
    surface = hemorrhage_surface(volume, seg.mask)
    if surface is None:
        return None
    verts, faces = surface
    lps = surface_to_lps(verts, volume)
    # mapped through a handedness-preserving index → LPS map, skimage's triangles face inward:
    # flip them then (the sign of the enclosed volume in the tests checks this)
    index_to_lps = np.diag([-1.0, -1.0, 1.0]) @ volume.affine[:3, :3] @ np.eye(3)[::-1]
    if np.linalg.det(index_to_lps) > 0:
        faces = faces[:, ::-1]
    return write_ply(
        path, lps, faces, comments=("SPACE=LPS", f"ugss hemorrhage surface, {seg.volume_ml:.3f} mL")
    )


def render_all(
    volume: Volume, seg: Segmentation, out_dir: str | Path, name: str
) -> dict[str, Path]:
    """Montage PNG, 3D PNG and (with hemorrhage) the PLY mesh; returns what was written."""
    out_dir = Path(out_dir)
    written = {
        "montage": render_montage(volume, seg, out_dir / f"{name}_montage.png"),
        "view3d": render_3d(volume, seg, out_dir / f"{name}_3d.png"),
    }
    mesh = write_hemorrhage_mesh(volume, seg, out_dir / f"{name}_hemorrhage.ply")
    if mesh is not None:
        written["mesh"] = mesh
    return written
