"""Pictures people look at: a slice montage with outline and uncertainty, a 3D view, a mesh file.

matplotlib (Agg, no pyplot, no display) and scikit-image are imported when a picture is drawn,
so ``--no-pictures`` runs and the DICOM node pay nothing for them.

Slices are shown in the radiological convention the canonical grid already has: patient left on
the image's right, anterior at the top. The 3D view draws the hemorrhage surface (marching cubes
on the mask) inside lit, translucent skin and skull (marching cubes at ``HEAD_HU`` and
``BONE_HU`` on a downsampled copy of the head), in millimetres, from the hemorrhage's side and
from below, with L/R/A/P/S/I marks. Its triangles are shaded here (ambient plus diffuse),
back faces culled per view, and drawn as one depth-sorted matplotlib collection, so the
translucent layers blend in order.

The mesh file is the hemorrhage surface as binary PLY in world LPS millimetres with a
``SPACE=LPS`` comment, the convention 3D Slicer reads models in, so it lands on the scan when
both are loaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ugss.runtime.intracranial import BONE_HU
from ugss.runtime.postprocess import HEAD_HU, bounding_box
from ugss.runtime.preprocess import AIR_HU, BRAIN_WINDOW
from ugss.runtime.segment import Segmentation
from ugss.runtime.unit_map import dequantized
from ugss.runtime.volume import Volume

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

INTRACRANIAL_COLOUR = "#7cfc00"  # thin outline of the space searched for hemorrhage
MASK_COLOURS = ("red", "#00e5ff")  # the mask outline on the CT row, on the uncertainty row
MAX_MONTAGE_SLICES = 12
MONTAGE_COLUMNS = 6
# montage layout, inches
PANEL_IN = 1.75  # width of one slice panel
GAP_IN = 0.06  # between panels, and between the two rows of a pair
SLICE_TITLE_IN = 0.2  # above each brain-window row, for "slice z"
HEADER_IN = 0.5  # the title's two lines
MARGIN_IN = 0.1
COLORBAR_IN = 0.9  # the colour bar and its label, right of the panels
MIN_MONTAGE_WIDTH_IN = 7.6  # the title's legend line fits above a one-slice montage
HEAD_GRID = 80  # in-plane size the head is downsampled to for its surface
# Voxels of the mask's bounding box handed to marching cubes; larger boxes are strided in-plane.
# Bounds time and memory for huge masks (an untrained model may mark the whole head).
MESH_VOXELS = 4_000_000  # the PLY file
VIEW_VOXELS = 400_000  # the matplotlib picture (its polygons are drawn one by one)
VIEW_AZIM = -90  # with elev -90: patient left on the right, anterior up
# 3D view: (RGB, alpha) per surface; light = ambient + diffuse
SURFACE_STYLES = {
    "skin": ((0.95, 0.72, 0.58), 0.14),
    "skull": ((0.97, 0.95, 0.86), 0.2),
    "hemorrhage": ((0.9, 0.0, 0.0), 1.0),
}
AMBIENT = 0.25
LIGHT_OFFSET = (-0.3, -0.3, 0.6)  # added to the line of sight: light from above, right, front
# display axes: +x patient left, +y posterior, +z superior
ORIENTATION = {"L": (1, 0, 0), "R": (-1, 0, 0), "P": (0, 1, 0), "A": (0, -1, 0)}
ORIENTATION |= {"S": (0, 0, 1), "I": (0, 0, -1)}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def montage_slices(seg: Segmentation, n_slices: int, limit: int = MAX_MONTAGE_SLICES) -> list[int]:
    """The involved slices (evenly thinned to ``limit``); without hemorrhage, the central ones."""
    involved = list(seg.slices_involved)
    pool = involved or list(range(n_slices // 5, n_slices - n_slices // 5)) or list(range(n_slices))
    count = min(len(pool), limit if involved else min(limit, 6))
    picks = np.linspace(0, len(pool) - 1, count).round().astype(int)
    return [pool[i] for i in sorted(set(picks.tolist()))]


def montage_caption(seg: Segmentation, slices: list[int]) -> str:
    """Which slices the montage shows: "12 of 15 positive slices", "all 3 positive slices"."""
    positive = len(seg.slices_involved)
    if not positive:
        return f"{_plural(len(slices), 'central slice')} shown"
    if len(slices) < positive:
        return f"{len(slices)} of {positive} positive slices"
    return "1 positive slice" if positive == 1 else f"all {positive} positive slices"


def _finding(seg: Segmentation) -> str:
    if not seg.assessed:
        return "not assessed (not a head CT)"
    return f"{seg.volume_ml:.2f} mL" if seg.hemorrhage_present else "no hemorrhage"


@dataclass(frozen=True)
class MontageLayout:
    """Where the panels go, in inches (fixed header and slice-title space, whatever the grid)."""

    cols: int
    blocks: int  # row pairs: brain window, then uncertainty or probability
    panel_h: float  # inches; panels are ``PANEL_IN`` wide

    @property
    def block_h(self) -> float:
        return SLICE_TITLE_IN + 2 * self.panel_h + GAP_IN

    @property
    def size(self) -> tuple[float, float]:
        width = max(2 * MARGIN_IN + self._grid_w + COLORBAR_IN, MIN_MONTAGE_WIDTH_IN)
        return width, HEADER_IN + self.blocks * self.block_h + MARGIN_IN

    @property
    def _grid_w(self) -> float:
        return self.cols * PANEL_IN + (self.cols - 1) * GAP_IN

    @property
    def _left(self) -> float:
        return (self.size[0] - self._grid_w - COLORBAR_IN) / 2

    def panel(self, block: int, row: int, col: int) -> tuple[float, float, float, float]:
        """``(left, bottom, width, height)`` in figure fractions, for ``fig.add_axes``."""
        width, height = self.size
        top = HEADER_IN + block * self.block_h + SLICE_TITLE_IN + row * (self.panel_h + GAP_IN)
        left = self._left + col * (PANEL_IN + GAP_IN)
        bottom = height - top - self.panel_h
        return left / width, bottom / height, PANEL_IN / width, self.panel_h / height

    def colorbar(self) -> tuple[float, float, float, float]:
        width, height = self.size
        panels_h = self.blocks * self.block_h
        left = self._left + self._grid_w + 0.2
        bottom = MARGIN_IN + 0.15 * panels_h
        return left / width, bottom / height, 0.15 / width, 0.7 * panels_h / height


def _outline(ax, xc, yc, region: np.ndarray, colour: str, width: float) -> None:
    if region.any():
        ax.contour(xc, yc, region.astype(np.float32), levels=[0.5], colors=colour, linewidths=width)


def _side_letters(ax) -> None:
    for x, letter, ha in ((0.02, "R", "left"), (0.98, "L", "right")):
        ax.text(
            x, 0.98, letter, color="yellow", fontsize=7, va="top", ha=ha, transform=ax.transAxes
        )


def _montage_panels(fig, layout: MontageLayout, volume: Volume, seg: Segmentation, slices):
    """Draw the panels; returns the last uncertainty (or probability) image, for the colour bar."""
    lo, hi = (
        BRAIN_WINDOW.level - BRAIN_WINDOW.width / 2,
        BRAIN_WINDOW.level + BRAIN_WINDOW.width / 2,
    )
    second = seg.entropy_q if seg.entropy_q is not None else seg.prob_q
    step = max(1, max(volume.shape[1:]) // 256)  # a panel is ~180 px wide: no need for more
    sy, sx = volume.spacing[1] * step, volume.spacing[2] * step
    image, space = None, seg.intracranial
    for n, z in enumerate(slices):
        gray, outline = volume.hu[z, ::step, ::step], seg.mask[z, ::step, ::step]
        h, w = gray.shape
        extent = (0.0, w * sx, h * sy, 0.0)
        xc, yc = (np.arange(w) + 0.5) * sx, (np.arange(h) + 0.5) * sy
        block, col = divmod(n, layout.cols)
        for row in range(2):
            ax = fig.add_axes(layout.panel(block, row, col))
            ax.imshow(gray, cmap="gray", vmin=lo, vmax=hi, extent=extent, interpolation="nearest")
            if row == 1:
                over = np.ma.masked_less(dequantized(second[z, ::step, ::step]), 0.02)
                image = ax.imshow(
                    over, cmap="inferno", vmin=0, vmax=1, alpha=0.8, extent=extent,
                    interpolation="nearest",
                )  # fmt: skip
            if space is not None:
                _outline(ax, xc, yc, space.plane(z)[::step, ::step], INTRACRANIAL_COLOUR, 0.4)
            _outline(ax, xc, yc, outline, MASK_COLOURS[row], 0.7)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"slice {z}", fontsize=8, pad=3)
                _side_letters(ax)
    return image


def render_montage(volume: Volume, seg: Segmentation, path: str | Path) -> Path:
    """Pairs of rows: brain window with the mask outlined, then uncertainty (or probability).

    The title's two lines (finding and which slices are shown; the legend) sit in a header of
    fixed height above the panels, and the figure is never narrower than they are.
    """
    path = Path(path)
    slices = montage_slices(seg, volume.shape[0])
    cols = min(len(slices), MONTAGE_COLUMNS)
    h, w = volume.shape[1:]
    aspect = float(np.clip(h * volume.spacing[1] / (w * volume.spacing[2]), 0.5, 2.0))
    layout = MontageLayout(cols, -(-len(slices) // cols), PANEL_IN * aspect)
    fig = _figure(*layout.size)
    image = _montage_panels(fig, layout, volume, seg, slices)
    second_label = "uncertainty (bits)" if seg.entropy_q is not None else "probability"
    if image is not None:
        cbar = fig.colorbar(image, cax=fig.add_axes(layout.colorbar()))
        cbar.set_label(second_label, fontsize=8)
        cbar.ax.tick_params(labelsize=7)
    name = Path(volume.source.path).name
    searched = "" if seg.intracranial is None else "; green: intracranial space searched"
    fig.suptitle(
        f"{name}: {_finding(seg)}; {montage_caption(seg, slices)}\n"
        f"red: mask{searched}; lower rows: {second_label}; research use only",
        fontsize=9,
        y=1 - 0.08 / layout.size[1],
        va="top",
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


def head_surfaces(volume: Volume, grid: int = HEAD_GRID) -> dict[str, tuple]:
    """``{"skin": …, "skull": …}`` surfaces in voxel-index units of the full grid, from a
    downsampled copy of the head alone (the largest connected region above ``HEAD_HU``: no
    table or head holder); a layer that is not there (a phantom without bone) is left out."""
    from scipy import ndimage

    factor = max(1, int(np.ceil(max(volume.shape[1:]) / grid)))
    small = volume.hu[:, ::factor, ::factor]
    labels, n = ndimage.label(small > HEAD_HU)
    if n == 0:
        return {}
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    head = np.where(labels == sizes.argmax(), small, np.float32(AIR_HU))
    spacing = (1.0, float(factor), float(factor))
    out = {"skin": _surface(head, HEAD_HU, spacing)}
    if (head > BONE_HU).any():
        out["skull"] = _surface(head, BONE_HU, spacing)
    return out


def _mm(verts_zyx: np.ndarray, volume: Volume) -> np.ndarray:
    """Index (z, y, x) → display mm along patient left, posterior, superior (LPS: right-handed,
    so matplotlib draws the head unmirrored)."""
    sz, sy, sx = volume.spacing
    return np.stack([verts_zyx[:, 2] * sx, verts_zyx[:, 1] * sy, verts_zyx[:, 0] * sz], axis=1)


@dataclass(frozen=True, eq=False)
class Layer:
    """One surface of the 3D view: triangles in display mm, their outward unit normals."""

    triangles: np.ndarray  # (n, 3, 3)
    normals: np.ndarray  # (n, 3)
    colour: tuple[float, float, float]
    alpha: float

    @classmethod
    def of(cls, surface: tuple, volume: Volume, style: tuple) -> Layer:
        verts, faces = surface
        tri = _mm(verts, volume)[faces]
        normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        # a closed surface encloses a positive volume with outward normals (divergence theorem)
        if np.einsum("ij,ij->", tri[:, 0], normals) < 0:
            normals = -normals
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        return cls(tri, normals, *style)

    def lit(self, eye: np.ndarray, light: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The triangles facing ``eye`` (closed surfaces: the others lie behind) and their
        RGBA: ambient plus diffuse light from ``light`` (unit vectors, display mm)."""
        front = self.normals @ eye > 0
        shade = AMBIENT + (1 - AMBIENT) * np.clip(self.normals[front] @ light, 0.0, 1.0)
        rgb = np.clip(np.asarray(self.colour)[None, :] * shade[:, None], 0.0, 1.0)
        return self.triangles[front], np.column_stack([rgb, np.full(len(rgb), self.alpha)])

    @property
    def bounds(self) -> np.ndarray:
        """``(2, 3)``: lowest and highest corner of the surface's box (display mm)."""
        pts = self.triangles.reshape(-1, 3)
        return np.stack([pts.min(axis=0), pts.max(axis=0)])


def view_layers(volume: Volume, seg: Segmentation) -> dict[str, Layer]:
    """Skin and skull (translucent) and the hemorrhage (opaque), as the 3D view draws them;
    a surface that is not there is left out."""
    surfaces = head_surfaces(volume)
    bleed = hemorrhage_surface(volume, seg.mask, VIEW_VOXELS)
    if bleed is not None:
        surfaces["hemorrhage"] = bleed
    return {k: Layer.of(surf, volume, SURFACE_STYLES[k]) for k, surf in surfaces.items()}


def _eye(elev: float, azim: float) -> np.ndarray:
    """matplotlib's direction from the scene towards the viewer for ``view_init(elev, azim)``."""
    e, a = np.radians(elev), np.radians(azim)
    return np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])


def _views(lo: np.ndarray, hi: np.ndarray, bleed: Layer | None) -> tuple[tuple, ...]:
    """``(title, elev, azim)``: from the side of the hemorrhage (the left without one), a
    little from the front and above; and from below with the nose up, as the slices."""
    if bleed is None or bleed.bounds[:, 0].mean() >= (lo[0] + hi[0]) / 2:
        side = ("from the patient's left", 15.0, -15.0)
    else:
        side = ("from the patient's right", 15.0, 195.0)
    return side, ("from below, as the slices", -90.0, VIEW_AZIM)


def _orientation_letters(ax, lo: np.ndarray, hi: np.ndarray, eye: np.ndarray) -> None:
    """L/R/A/P/S/I just outside the head's box, except along the line of sight."""
    mid, margin = (lo + hi) / 2, 0.03 * (hi - lo) + 2.0
    for letter, direction in ORIENTATION.items():
        d = np.asarray(direction, dtype=float)
        if abs(d @ eye) > 0.7:
            continue
        at = np.where(d > 0, hi + margin, np.where(d < 0, lo - margin, mid))
        ax.text(*at, letter, fontsize=9, color="#1f4e9e", ha="center", va="center", weight="bold")


def render_3d(volume: Volume, seg: Segmentation, path: str | Path) -> Path:
    """The hemorrhage inside lit, translucent skin and skull, from its side and from below.

    All triangles go into one collection, so matplotlib sorts them by depth across surfaces
    and the translucent ones blend back to front; back faces are culled per view.
    """
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    path = Path(path)
    layers = view_layers(volume, seg)
    box = layers.get("skin", layers.get("hemorrhage"))
    lo, hi = box.bounds if box is not None else (np.zeros(3), np.ones(3))
    fig = _figure(9.0, 5.0)
    for i, (label, elev, azim) in enumerate(_views(lo, hi, layers.get("hemorrhage"))):
        ax = fig.add_subplot(1, 2, i + 1, projection="3d", proj_type="ortho")
        eye = _eye(elev, azim)
        light = eye + np.asarray(LIGHT_OFFSET)
        light /= np.linalg.norm(light)
        drawn = [la.lit(eye, light) for la in layers.values()]
        if drawn:
            tri, rgba = (np.concatenate(part) for part in zip(*drawn, strict=True))
            ax.add_collection3d(Poly3DCollection(tri, facecolors=rgba, edgecolor="none"))
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_zlim(lo[2], hi[2])
        ax.set_box_aspect(np.maximum(hi - lo, 1.0), zoom=1.2)
        ax.view_init(elev=elev, azim=azim)
        ax.set_axis_off()
        _orientation_letters(ax, lo, hi, eye)
        ax.set_title(label, fontsize=9)
    fig.subplots_adjust(left=0.0, right=1.0, bottom=0.02, top=0.86, wspace=0.0)
    fig.suptitle(
        f"{Path(volume.source.path).name}: {_finding(seg)}\n"
        "red: hemorrhage; translucent: skin and skull; research use only",
        fontsize=9,
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
