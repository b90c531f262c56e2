"""Pictures and the mesh file: valid PNGs, and a PLY whose surface encloses the mask's volume."""

from __future__ import annotations

import numpy as np
import onnx_models as om
import pytest
from matplotlib.image import imread

from ugss.runtime.engines import OnnxEngine
from ugss.runtime.render import (
    montage_caption,
    montage_slices,
    render_3d,
    render_all,
    render_montage,
    surface_to_lps,
    view_layers,
    write_hemorrhage_mesh,
)
from ugss.runtime.segment import segment_volume
from ugss.runtime.volume import Volume

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_ply(path):
    """Minimal reader for the binary PLY written by ``write_ply``."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    assert header[:2] == ["ply", "format binary_little_endian 1.0"]
    nv = int(next(h for h in header if h.startswith("element vertex")).split()[-1])
    nf = int(next(h for h in header if h.startswith("element face")).split()[-1])
    verts = np.frombuffer(data, "<f4", nv * 3, end).reshape(nv, 3)
    faces = np.frombuffer(data, [("n", "u1"), ("v", "<i4", (3,))], nf, end + nv * 12)
    assert len(data) == end + nv * 12 + nf * 13
    assert (faces["n"] == 3).all()
    return header, verts.astype(np.float64), faces["v"]


def enclosed_volume_mm3(verts, faces):
    """Signed volume by the divergence theorem: positive when normals point outward."""
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


@pytest.fixture(scope="module")
def segmented(tmp_path_factory):
    d = tmp_path_factory.mktemp("m")
    engine = OnnxEngine(om.save(om.build_mc_model(om.mc_info()), d / "mc.onnx"))
    volume, _ = om.phantom_volume(shape=(12, 128, 128), spacing=(2.5, 0.8, 0.8))
    return volume, segment_volume(volume, engine)


@pytest.mark.slow
def test_pictures_are_valid_pngs(segmented, tmp_path):
    volume, seg = segmented
    written = render_all(volume, seg, tmp_path, "scan")
    assert set(written) == {"montage", "view3d", "mesh"}
    for key in ("montage", "view3d"):
        assert written[key].read_bytes()[:8] == PNG_MAGIC
        image = imread(written[key])
        assert image.ndim == 3 and min(image.shape[:2]) > 200
        assert image[..., :3].std() > 0.05  # not blank


def test_montage_picks_involved_slices(segmented):
    _, seg = segmented
    picks = montage_slices(seg, seg.mask.shape[0])
    assert set(picks) <= set(seg.slices_involved) and len(picks) <= 12


@pytest.mark.parametrize("mirror", [False, True])
def test_mesh_lands_on_the_scan_in_lps_and_encloses_the_mask(segmented, tmp_path, mirror):
    volume, seg = segmented
    if mirror:  # a grid whose column axis runs to patient right: handedness flips
        affine = volume.affine.copy()
        affine[0, 0] *= -1
        volume = Volume(hu=volume.hu, affine=affine)
    path = write_hemorrhage_mesh(volume, seg, tmp_path / "h.ply")
    header, verts, faces = read_ply(path)
    assert "comment SPACE=LPS" in header
    enclosed_ml = enclosed_volume_mm3(verts, faces) / 1000.0
    assert enclosed_ml == pytest.approx(seg.volume_ml, rel=0.15)  # positive: outward normals
    # vertices sit where the mask is, in world LPS mm
    zyx = np.argwhere(seg.mask)
    lps = surface_to_lps(zyx.astype(float), volume)
    lo, hi = lps.min(axis=0) - 3, lps.max(axis=0) + 3
    assert np.all((verts >= lo) & (verts <= hi))


@pytest.mark.slow
def test_no_hemorrhage_no_mesh(tmp_path):
    from ugss.runtime.segment import Segmentation

    volume, _ = om.phantom_volume(shape=(6, 64, 64), bleed=False)
    empty = Segmentation.empty(volume, threshold=0.5, min_component_ml=0.05, batch_size=4)
    written = render_all(volume, empty, tmp_path, "clean")
    assert set(written) == {"montage", "view3d"}
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in written.values())


def test_surfaces_close_where_data_fills_the_grid():
    """A mask filling its bounding box, and a head filling the whole image, still give surfaces."""
    from ugss.runtime.render import head_surfaces, hemorrhage_surface

    volume = Volume(hu=np.full((4, 16, 16), 40.0, np.float32), affine=np.diag([-1.0, -1, 2, 1]))
    mask = np.zeros(volume.shape, bool)
    mask[1:3, 4:8, 4:8] = True
    verts, faces = hemorrhage_surface(volume, mask)
    assert len(faces) and verts[:, 1].min() >= 3 and verts[:, 1].max() <= 8
    assert hemorrhage_surface(volume, np.ones(volume.shape, bool)) is not None
    assert set(head_surfaces(volume)) == {"skin"}  # no bone: no skull


def _segmentation(volume: Volume, mask: np.ndarray):
    """A segmentation that found ``mask`` (no model needed to test the pictures)."""
    from ugss.runtime.segment import Segmentation, ct_intensity_stats

    return Segmentation(
        mask=mask,
        prob_q=mask.astype(np.uint8) * 255,
        entropy_q=mask.astype(np.uint8) * 100,
        volume_ml=float(mask.sum() * np.prod(volume.spacing) / 1000.0),
        interval_ml=None,
        interval_method=None,
        sample_volumes_ml=None,
        components=(),
        removed_components=0,
        removed_ml=0.0,
        threshold=0.5,
        min_component_ml=0.05,
        midline_x=volume.shape[2] / 2,
        batch_size=4,
        intensity=ct_intensity_stats(volume.hu),
    )


def _drawn_figure(monkeypatch, draw, *args):
    """The matplotlib Figure a render function saves, drawn, with its renderer."""
    from matplotlib.figure import Figure

    saved = []
    real = Figure.savefig
    monkeypatch.setattr(
        Figure, "savefig", lambda fig, *a, **k: saved.append(fig) or real(fig, *a, **k)
    )
    draw(*args)
    (fig,) = saved
    fig.canvas.draw()
    return fig, fig.canvas.get_renderer()


@pytest.mark.slow
@pytest.mark.parametrize("positive", [1, 3, 15])
def test_montage_title_clears_the_slice_titles_and_says_what_it_shows(
    positive, tmp_path, monkeypatch
):
    """One row pair (one slice, or three) or two: the title lies inside the picture, above
    every panel and slice title; it says which of the positive slices are shown (issue 16
    item 13)."""
    volume, _ = om.phantom_volume(shape=(20, 96, 96), spacing=(5.0, 2.0, 2.0))
    mask = np.zeros(volume.shape, bool)
    mask[2 : 2 + positive, 40:50, 60:70] = True
    seg = _segmentation(volume, mask)
    fig, renderer = _drawn_figure(monkeypatch, render_montage, volume, seg, tmp_path / "m.png")
    title = fig._suptitle
    box = title.get_window_extent(renderer)
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height
    for ax in fig.axes:
        for other in (ax.get_window_extent(renderer), ax.title.get_window_extent(renderer)):
            assert not box.overlaps(other) and box.y0 >= other.y1 - 1, (positive, box, other)
    shown = {1: "1 positive slice", 3: "all 3 positive slices", 15: "12 of 15 positive slices"}
    assert shown[positive] in title.get_text()
    assert montage_caption(seg, montage_slices(seg, volume.shape[0])) in title.get_text()


def test_montage_caption_without_hemorrhage():
    volume, _ = om.phantom_volume(shape=(20, 32, 32), bleed=False)
    seg = _segmentation(volume, np.zeros(volume.shape, bool))
    assert montage_caption(seg, montage_slices(seg, 20)) == "6 central slices shown"


@pytest.fixture(scope="module")
def head_with_bleed():
    """A synthetic head CT (skin, skull, brain) with a subdural on the patient's left."""
    from ugss.synth import make_scan

    volume, mask, _ = make_scan(3, matrix=128, slice_thickness=5.0, hemorrhage="subdural")
    mask = mask.astype(bool)
    mask[:, :, : volume.shape[2] // 2] = False  # keep the left half: patient left is +x
    assert mask.sum() > 200
    return volume, _segmentation(volume, mask)


@pytest.mark.slow
def test_3d_view_shows_the_head_translucent_and_the_hemorrhage_inside(head_with_bleed, tmp_path):
    """Skin and skull cover much of each view (the old 6 % opaque grey head left 93 % of
    the picture white), the hemorrhage shows through them, on the patient's left (the
    picture's right in the view from below)."""
    volume, seg = head_with_bleed
    image = imread(render_3d(volume, seg, tmp_path / "v.png"))[..., :3]
    width = image.shape[1]
    visible = np.abs(image - image[2, 2]).max(axis=2) > 0.1
    assert visible.mean() > 0.2, visible.mean()
    red = (image[..., 0] > 0.5) & (image[..., 1] < 0.35) & (image[..., 2] < 0.35)
    for half in (slice(0, width // 2), slice(width // 2, width)):
        assert red[:, half].sum() > 30
    below_red = np.argwhere(red[:, width // 2 :])[:, 1].mean()
    below_head = np.argwhere(visible[60:, width // 2 :])[:, 1].mean()
    assert below_red > below_head + 5  # patient left on the picture's right


def test_3d_layers_are_lit_and_culled(head_with_bleed):
    """Skin and skull translucent, hemorrhage opaque; each view draws the faces towards the
    viewer only, brighter where they face the light."""
    volume, seg = head_with_bleed
    layers = view_layers(volume, seg)
    assert {k: la.alpha < 0.5 for k, la in layers.items()} == {
        "skin": True,
        "skull": True,
        "hemorrhage": False,
    }
    eye = np.array([0.0, 0.0, -1.0])
    for layer in layers.values():
        tri, rgba = layer.lit(eye, eye)
        assert 0 < len(tri) < len(layer.triangles) and rgba.shape == (len(tri), 4)
        facing = layer.normals[layer.normals @ eye > 0] @ eye
        order = np.argsort(facing)
        lum = rgba[order, :3].sum(axis=1)
        assert lum[-len(lum) // 10 :].mean() > lum[: len(lum) // 10].mean()
