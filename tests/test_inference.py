"""Inference: device choice, model cache, preprocessing, tiling, batching, HyperSpy methods."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from hyperspy_mmdl import inference as inf  # noqa: E402
from hyperspy_mmdl.calibration import Calibration  # noqa: E402
from hyperspy_mmdl.checkpoint import save_checkpoint  # noqa: E402
from hyperspy_mmdl.errors import WrongTaskError  # noqa: E402
from hyperspy_mmdl.inference.tiling import plan_tiles  # noqa: E402


class TinyClassifier(torch.nn.Module):
    """Conv -> BN -> ReLU -> GAP -> Linear: accepts any input size."""

    def __init__(self, num_classes=3, in_chans=1):
        super().__init__()
        self.conv = torch.nn.Conv2d(in_chans, 6, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(6)
        self.fc = torch.nn.Linear(6, num_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


class TinyDense(torch.nn.Module):
    """Two 3×3 convs (receptive-field radius 2): a dense per-pixel output."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.b = torch.nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def card(**kw):
    base = dict(architecture="tiny", task="classify", input_size=[1, 32, 32], normalization="minmax",
                pixel_size=20.0, pixel_unit="nm", class_names=["small", "medium", "large"])
    base.update(kw)
    return base


@pytest.fixture
def classifier():
    torch.manual_seed(1)
    net = TinyClassifier()
    with torch.no_grad():  # non-trivial BN statistics
        net.bn.running_mean.uniform_(-0.2, 0.2)
        net.bn.running_var.uniform_(0.5, 2.0)
    return inf.Predictor(net, card(), device="cpu")


def stack(n=4, shape=(70, 90), seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n,) + shape).astype(np.float32)


# --------------------------------------------------------------------------- device and cache
def test_select_device_auto_and_explicit():
    dev = inf.select_device("auto")
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert dev.type == expected
    assert inf.select_device("cpu").type == "cpu"
    assert inf.select_device(torch.device("cpu")).type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            inf.select_device("cuda")
    with pytest.raises(ValueError, match="not a torch device"):
        inf.select_device("gpu0")


def test_amp_only_on_cuda(classifier):
    assert classifier.amp is False  # CPU: never autocast
    p = inf.Predictor(TinyClassifier(), card(), device="cpu", amp=True)
    assert p.amp is False


def test_checkpoint_loaded_once_and_reloaded_when_file_changes(tmp_path, monkeypatch):
    from hyperspy_mmdl import checkpoint

    path = save_checkpoint(tmp_path / "m.pt", TinyClassifier(), card())
    calls = []
    real = checkpoint.load_checkpoint

    def counting(p, device="cpu", model=None):
        calls.append(p)
        return real(p, device=device, model=TinyClassifier())

    monkeypatch.setattr(checkpoint, "load_checkpoint", counting)
    inf.clear_cache()
    a = inf.get_predictor(path, device="cpu")
    b = inf.get_predictor(str(path), device="cpu")
    assert a is b and len(calls) == 1
    import os

    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the file "changed"
    c = inf.get_predictor(path, device="cpu")
    assert c is not a and len(calls) == 2
    inf.clear_cache()
    with pytest.raises(FileNotFoundError, match="not found"):
        inf.get_predictor(tmp_path / "missing.pt")


# --------------------------------------------------------------------------- preprocessing
def test_normalization_is_the_training_one(classifier):
    from hyperspy_mmdl.train import transforms as T

    x = stack(1, (40, 50))[0] * 300 + 20
    for method in ("minmax", "zscore", "none"):
        np.testing.assert_array_equal(inf.normalize(x, method), T.normalize(x, method))
    with pytest.raises(ValueError, match="unknown normalisation 'bogus'"):
        inf.normalize(x, "bogus")
    frames, (lead, shape) = inf.prepare_frames(x, Calibration.from_pixel_size(20, "nm"), classifier)
    assert lead == () and shape == (40, 50)
    assert frames[0].shape == (1, 40, 50)  # same pixel size: no resampling
    assert frames[0].min() == 0 and frames[0].max() == 1


def test_resample_to_pixel_size_keeps_physical_extent():
    x = np.zeros((100, 60), np.float32)
    cal = Calibration.from_pixel_size(10, "nm")
    out, cal2 = inf.resample_to_pixel_size(x, cal, 0.025, "µm")
    assert out.shape == (40, 24)
    assert cal2.unit == "µm" and cal2.pixel_size == pytest.approx((0.025, 0.025))
    assert cal2.pixel_size_in("nm") == pytest.approx((25, 25))
    # same size: unchanged; uncalibrated: warning and unchanged
    same, _ = inf.resample_to_pixel_size(x, cal, 10, "nm")
    assert same.shape == x.shape
    with pytest.warns(UserWarning, match="not calibrated"):
        raw, _ = inf.resample_to_pixel_size(x, Calibration.uncalibrated(), 10, "nm")
    assert raw.shape == x.shape


def test_channels_grey_and_rgb():
    p3 = inf.Predictor(TinyClassifier(in_chans=3), card(input_size=[3, 32, 32], config={"in_chans": 3}),
                       device="cpu")
    grey = stack(1, (32, 32))[0]
    frames, _ = inf.prepare_frames(grey, None, p3, resample=False)
    assert frames[0].shape == (3, 32, 32)
    np.testing.assert_array_equal(frames[0][0], frames[0][2])
    p1 = inf.Predictor(TinyClassifier(), card(), device="cpu")
    rgb = np.stack([grey, grey * 0.5, grey * 0.0], axis=-1)
    frames, (_, shape) = inf.prepare_frames(rgb, None, p1, channel_axis=-1, resample=False)
    assert shape == (32, 32) and frames[0].shape == (1, 32, 32)
    np.testing.assert_allclose(frames[0][0], inf.normalize(grey * 0.5), atol=1e-6)


# --------------------------------------------------------------------------- tiling
def test_tile_starts_cover_with_overlap():
    for length, tile, ov in [(100, 32, 8), (32, 32, 8), (20, 32, 8), (1000, 224, 56), (225, 224, 56)]:
        starts = inf.tile_starts(length, tile, ov)
        assert starts[0] == 0
        if length > tile:
            assert starts[-1] == length - tile
            steps = np.diff(starts)
            assert (tile - steps >= ov).all()  # every overlap is at least `ov`
        covered = np.zeros(max(length, tile), bool)
        for s in starts:
            covered[s:s + tile] = True
        assert covered[:length].all()
    with pytest.raises(ValueError, match="overlap"):
        inf.tile_starts(100, 32, 32)


def test_feather_window():
    w = inf.feather_window((32, 32), 8)
    assert w.shape == (32, 32) and w.max() == 1
    assert w[0, 16] == 0 and w[1, 16] == 0 and w[2, 16] > 0  # margin overlap // 4 = 2 px discarded
    assert w[16, 16] == 1 and w[8, 16] == 1 and w[7, 16] < 1  # ramp over the rest of the overlap
    np.testing.assert_allclose(w, w[::-1, ::-1])
    edge = inf.feather_window((32, 32), 8, edges=(True, False, True, False))
    assert edge[0, 0] == 1 and edge[31, 31] == 0
    with pytest.raises(ValueError, match="margin"):
        inf.feather_window((32, 32), 8, margin=4)


def test_tiled_and_untiled_dense_outputs_agree():
    torch.manual_seed(0)
    pred = inf.Predictor(TinyDense(), card(task="segment", pixel_size=None), device="cpu")
    x = stack(2, (75, 101))
    tiled = inf.predict_dense(x, None, pred, inf.model_output_fn, overlap=12)
    whole = inf.predict_dense(x, None, pred, inf.model_output_fn, tile=False)
    assert tiled.shape == whole.shape == (2, 2, 75, 101)
    # the receptive field (radius 2) fits in the discarded margin (12 // 4 = 3): identical up to rounding
    np.testing.assert_allclose(tiled, whole, atol=2e-6)
    assert np.abs(tiled).max() > 0.01  # not trivially zero


def test_batch_and_single_image_calls_agree(classifier):
    x = stack(5, (70, 90))
    cal = Calibration.from_pixel_size(20, "nm")
    batched = inf.classify(x, cal, classifier, batch_size=16)
    single = np.stack([inf.classify(f, cal, classifier, batch_size=1) for f in x])
    assert batched.dtype == np.float32 and batched.shape == (5, 3)
    np.testing.assert_allclose(batched.sum(1), 1, atol=1e-6)
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-6)
    # a 70×90 frame at 32×32 tiles: 3×4 tiles averaged; an image equal to one tile is one forward pass
    one = x[:1, :32, :32]
    with torch.no_grad():
        ref = torch.softmax(classifier.model(torch.from_numpy(inf.normalize(one)[:, None])), 1).numpy()
    np.testing.assert_allclose(inf.classify(one, cal, classifier), ref, rtol=1e-5, atol=1e-6)
    dense_b = inf.predict_dense(x, cal, classifier, _feature_fn, batch_size=7)
    dense_s = np.stack([inf.predict_dense(f, cal, classifier, _feature_fn, batch_size=1) for f in x])
    np.testing.assert_allclose(dense_b, dense_s, rtol=1e-5, atol=1e-6)


def _feature_fn(pred, batch):
    with torch.no_grad():
        m = pred.model
        return torch.relu(m.bn(m.conv(pred.to_tensor(batch)))).numpy()


def test_classify_resamples_by_calibration(classifier):
    """A 10 nm/px image and the same field at 20 nm/px reach the model at the same scale."""
    rng = np.random.default_rng(3)
    fine = rng.random((128, 128)).astype(np.float32)
    from hyperspy_mmdl.train.transforms import resize

    coarse = resize(fine, (64, 64))
    pf = inf.classify(fine, Calibration.from_pixel_size(10, "nm"), classifier)
    pc = inf.classify(coarse, Calibration.from_pixel_size(0.02, "µm"), classifier)
    np.testing.assert_allclose(pf, pc, atol=1e-6)
    # ignoring the calibration gives a different answer
    raw = inf.classify(fine, None, classifier, resample=False)
    assert np.abs(raw - pc).max() > 1e-4


def test_classify_rejects_wrong_inputs(classifier):
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        inf.classify(np.zeros(5), None, classifier)
    with pytest.raises(ValueError, match="batch_size"):
        inf.classify(np.zeros((40, 40)), None, classifier, batch_size=0)
    seg = inf.Predictor(TinyDense(), card(task="segment"), device="cpu")
    with pytest.raises(WrongTaskError, match=r"is a 'segment' model; classify .*needs a 'classify' model"):
        inf.classify(np.zeros((40, 40)), None, seg)
    with pytest.raises(TypeError, match="checkpoint path"):
        inf.classify(np.zeros((40, 40)), None, 42)


def test_progress_steps(classifier):
    steps = inf.iter_classify(stack(3, (70, 90)), None, classifier, batch_size=5)
    seen = []
    try:
        while True:
            seen.append(next(steps))
    except StopIteration as stop:
        probs = stop.value
    assert seen[0] == (0, 36) and seen[-1] == (36, 36)
    assert probs.shape == (3, 3)


# --------------------------------------------------------------------------- tabular encoding
VOCAB = {
    "composition": {"perovskite_type": ["MAPbI3", "FA-based"], "etl": ["TiO2", "SnO2"]},
    "process": {"antisolvent": ["chlorobenzene", "toluene"], "deposition_process": ["1", "2"]},
    "columns": {"composition": {"perovskite_type": "Perovskite_composition_short_form",
                                "etl": "ETL_stack_sequence"},
                "process": {"antisolvent": "Perovskite_deposition_quenching_media",
                            "deposition_process": "Perovskite_deposition_number_of_deposition_steps"}},
    "numeric": [],
}


def test_encode_tabular_matches_training_encoding_and_names_valid_categories():
    import pandas as pd

    from hyperspy_mmdl.train import tabular

    c = card(task="regress-pce", vocabularies=VOCAB)
    comp, proc, num = inf.encode_tabular(c, {"perovskite_type": "FA-based", "etl": "TiO2 | SnO2"},
                                         {"antisolvent": "toluene", "deposition_process": 2.0})
    np.testing.assert_array_equal(comp, [0, 1, 0, 1, 1, 0])  # each field: tokens + trailing unknown slot
    np.testing.assert_array_equal(proc, [2, 2])
    assert num.shape == (0,)
    row = pd.Series({"Perovskite_composition_short_form": "MAPbI3", "ETL_stack_sequence": "SnO2",
                     "Perovskite_deposition_quenching_media": "chlorobenzene",
                     "Perovskite_deposition_number_of_deposition_steps": 1, "JV_default_PCE": 17.2})
    comp2, proc2, _ = inf.encode_tabular(c, row)
    frame = pd.DataFrame([row])
    np.testing.assert_array_equal(comp2, tabular.encode_composition(frame, VOCAB)[0])
    np.testing.assert_array_equal(proc2, tabular.encode_process(frame, VOCAB)[0])
    comp3, proc3, _ = inf.encode_tabular(c, {}, {})
    np.testing.assert_array_equal(comp3, [0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(proc3, [0, 0])
    with pytest.raises(ValueError, match=r"unknown category 'ZnO'; valid categories: \['TiO2', 'SnO2'\]"):
        inf.encode_tabular(c, {"etl": "ZnO"})
    with pytest.raises(ValueError, match=r"'water'.*\['chlorobenzene', 'toluene'\]"):
        inf.encode_tabular(c, None, {"antisolvent": "water"})
    with pytest.raises(ValueError, match="unknown field 'colour'"):
        inf.encode_tabular(c, {"colour": "red"})
    with pytest.raises(ValueError, match="no composition/process vocabularies"):
        inf.encode_tabular(card(), {"etl": "TiO2"})


# --------------------------------------------------------------------------- real calibrated SEM images
def _read_sem(path):
    from skimage import io as skio

    rgb = skio.imread(path)
    return rgb[..., :3].mean(-1).astype(np.float32) if rgb.ndim == 3 else rgb.astype(np.float32)


def _scale_bar_length(image):
    """Length in pixels of the white scale bar in the data bar (longest bright horizontal run)."""
    best = 0
    for row in image:
        bright = row > 200
        run = 0
        for v in bright:
            run = run + 1 if v else 0
            best = max(best, run)
    return best


def test_resampling_real_sem_images_to_one_physical_scale(shared):
    """10, 20 and 33.36 nm/px FAPbI3 images: after resampling to 25 nm/px, the 1 µm bar is 40 px."""
    folder = shared("perovskite_sem_fapbi3_databar")
    rows = {r["file"]: r for r in csv.DictReader(open(folder / "calibration.csv"))}
    lengths = {}
    for name in ("198.jpg", "199.jpg", "57.jpg"):
        r = rows[name]
        img = _read_sem(folder / name)
        top = int(r["image_rows_without_databar"])  # the instrument data bar holds the scale bar
        cal = Calibration.from_pixel_size(float(r["pixel_size_nm"]), "nm")
        # the 1 µm bar ends at column 1070; the logo right of column 1180 is excluded
        assert abs(_scale_bar_length(img[top:, :1150]) - int(r["scale_bar_px"])) <= 2  # as printed
        out, cal2 = inf.resample_to_pixel_size(img, cal, 0.025, "µm")
        assert cal2.pixel_size_in("nm") == pytest.approx((25.0, 25.0), rel=0.002)
        # the field of view is kept: 1280 px at 10 nm/px -> 512 px at 25 nm/px
        f = float(r["pixel_size_nm"]) / 25
        assert out.shape == (round(img.shape[0] * f), round(img.shape[1] * f))
        out = out[int(np.ceil(top * f)) + 1:, :int(1150 * f)]
        lengths[name] = _scale_bar_length(out)
    for name, n in lengths.items():
        assert abs(n - 40) <= 2, (name, lengths)  # 1 µm / 25 nm = 40 px in every image


# --------------------------------------------------------------------------- PSC-Fusion (PCE)
class TinyFusion(torch.nn.Module):
    """PSC-Fusion in miniature: three encoders, sigmoid gates per modality, masking switch."""

    def __init__(self, composition_dim=6, process_sizes=(3, 3), width=8, numeric_dim=0):
        super().__init__()
        self.num = torch.nn.Linear(numeric_dim, width) if numeric_dim else None
        self.image = torch.nn.Sequential(torch.nn.Conv2d(1, width, 3, padding=1), torch.nn.ReLU())
        self.comp = torch.nn.Linear(composition_dim, width)
        self.emb = torch.nn.ModuleList(torch.nn.Embedding(n, 4) for n in process_sizes)
        self.proc = torch.nn.Linear(4 * len(process_sizes), width)
        self.gates = torch.nn.ModuleList(torch.nn.Linear(width, width) for _ in range(3))
        self.head = torch.nn.Linear(width, 1)
        self.mask = set()

    def set_modality_mask(self, masked):
        self.mask = set(masked)

    def forward(self, image, composition, process, return_attention=False, numeric=None):
        b = composition.shape[0]
        v = [self.image(image).mean((2, 3)) if "image" not in self.mask else composition.new_zeros(b, 8),
             self.comp(composition),
             self.proc(torch.cat([e(process[:, i]) for i, e in enumerate(self.emb)], 1))]
        if self.num is not None:
            v[2] = v[2] + self.num(numeric)
        w = [torch.sigmoid(g(x)) for g, x in zip(self.gates, v)]
        z = sum((wi * vi for m, wi, vi in zip(("image", "composition", "process"), w, v)
                 if m not in self.mask), torch.zeros_like(v[1]))
        out = self.head(z)[:, 0]
        return (out, {"fusion_weights": torch.stack(w, 1)}) if return_attention else out


def pce_predictor(**extra):
    torch.manual_seed(2)
    c = card(architecture="tiny_fusion", task="regress-pce", class_names=None, target_name="PCE",
             target_unit="%", vocabularies=VOCAB, extra={"target_mean": 15.0, "target_std": 2.0, **extra})
    return inf.Predictor(TinyFusion(), c, device="cpu")


COMP = {"perovskite_type": "FA-based", "etl": "SnO2"}
PROC = {"antisolvent": "chlorobenzene", "deposition_process": "1"}


def test_predict_pce_image_and_tabular():
    pred = pce_predictor()
    x = stack(3, (70, 90))
    cal = Calibration.from_pixel_size(20, "nm")
    pce, w = inf.predict_pce(x, cal, pred, composition=COMP, process=PROC)
    assert pce.shape == (3,) and w.shape == (3, 3) and pce.dtype == np.float32
    assert ((w > 0) & (w < 1)).all()
    # by hand: one tile-average per frame, de-standardised with the card's target mean and SD
    comp, proc, _ = inf.encode_tabular(pred.card, COMP, PROC)
    frames, _ = inf.prepare_frames(x[:1], cal, pred)
    padded, tiles = plan_tiles(frames, (32, 32), 0.25)
    batch = np.stack([padded[0][:, t.y:t.y + 32, t.x:t.x + 32] for t in tiles])
    with torch.no_grad():
        out = pred.model(torch.from_numpy(batch), torch.from_numpy(comp).expand(len(tiles), -1),
                         torch.from_numpy(proc).expand(len(tiles), -1))
    assert pce[0] == pytest.approx(float(out.mean()) * 2.0 + 15.0, rel=1e-5)
    single = np.array([inf.predict_pce(f, cal, pred, composition=COMP, process=PROC, batch_size=1)[0]
                       for f in x])
    np.testing.assert_allclose(pce, single, rtol=1e-5)
    # a pandas row with both kinds of fields works as either argument
    import pandas as pd

    row = pd.Series({"Perovskite_composition_short_form": "FA-based", "ETL_stack_sequence": "SnO2",
                     "Perovskite_deposition_quenching_media": "chlorobenzene",
                     "Perovskite_deposition_number_of_deposition_steps": 1})
    np.testing.assert_allclose(inf.predict_pce(x, cal, pred, composition=row)[0], pce, rtol=1e-6)
    with pytest.raises(ValueError, match=r"unknown category 'PTAA'.*valid categories"):
        inf.predict_pce(x, cal, pred, composition={"etl": "PTAA"})
    assert pred.model.mask == set()  # the mask is restored after every call


def test_predict_pce_without_image_and_masks():
    pred = pce_predictor()
    pce, w = inf.predict_pce(None, None, pred, composition=COMP, process=PROC)
    assert isinstance(pce, float) and w.shape == (3,)
    pce5, w5 = inf.predict_pce(None, None, pred, composition=COMP, process=PROC, n_frames=5)
    assert pce5.shape == (5,) and np.all(pce5 == np.float32(pce))
    x = stack(2, (40, 40))
    masked, _ = inf.predict_pce(x, None, pred, composition=COMP, process=PROC, mask=["image"])
    np.testing.assert_allclose(masked, pce)
    # a model trained without images that is handed images: what it has, one value per frame, and a note
    trained_without = pce_predictor(masked_modalities=["image"])
    alone, _ = inf.predict_pce(None, None, trained_without, composition=COMP, process=PROC, notes=[])
    notes = []
    per_frame, w_frames = inf.predict_pce(x, None, trained_without, composition=COMP, process=PROC, notes=notes)
    assert per_frame.shape == (2,) and w_frames.shape == (2, 3)
    np.testing.assert_allclose(per_frame, alone, rtol=1e-6)
    assert notes == ["PCE model: trained without SEM images, so the image is not used; "
                     "inputs: composition, process"]
    with pytest.warns(UserWarning, match="trained without SEM images"):
        inf.predict_pce(x, None, trained_without, composition=COMP, process=PROC)
    with pytest.raises(WrongTaskError, match=r"is a 'classify' model; predict_pce .*needs a 'regress-pce' model"):
        inf.predict_pce(x, None, inf.Predictor(TinyClassifier(), card(), device="cpu"))
    with pytest.raises(ValueError, match="unknown modality"):
        inf.predict_pce(x, None, pred, mask=["sound"])


# --------------------------------------------------------------------------- HyperSpy methods
def _signal(data, lazy=False, scale=20.0):
    import hyperspy.api as hs

    s = hs.signals.Signal2D(data)
    s.set_signal_type("microstructure")
    for ax in s.axes_manager.signal_axes:
        ax.scale, ax.units = scale, "nm"
    if s.axes_manager.navigation_dimension:
        nav = s.axes_manager.navigation_axes[0]
        nav.name, nav.scale, nav.units = "time", 2.0, "s"
    s.metadata.General.title = "film"
    return s.as_lazy() if lazy else s


def test_signal_classify_stack_eager_and_lazy(classifier):
    from hyperspy_mmdl.signals import LazyMicrostructure, Microstructure

    x = stack(6, (48, 64))
    s = _signal(x)
    assert isinstance(s, Microstructure)
    out = s.classify(classifier, show_progressbar=False)
    assert out.axes_manager.navigation_shape == (6,) and out.axes_manager.signal_shape == (3,)
    assert out.axes_manager.signal_axes[0].name == "class"
    assert out.metadata.Signal.class_names == ["small", "medium", "large"]
    nav = out.axes_manager.navigation_axes[0]
    assert (nav.name, nav.scale, nav.units) == ("time", 2.0, "s")
    ref = inf.classify(x, Calibration.from_pixel_size(20, "nm"), classifier)
    np.testing.assert_allclose(out.data, ref, rtol=1e-5, atol=1e-6)
    lz = _signal(x, lazy=True)
    assert isinstance(lz, LazyMicrostructure)
    lout = lz.classify(classifier, show_progressbar=False)
    assert lout._lazy
    np.testing.assert_allclose(lout.data.compute(), ref, rtol=1e-5, atol=1e-6)
    eager = lz.classify(classifier, lazy_output=False, show_progressbar=False)
    assert not eager._lazy
    one = _signal(x[0]).classify(classifier, show_progressbar=False)
    assert one.data.shape == (3,)
    np.testing.assert_allclose(one.data, ref[0], rtol=1e-5, atol=1e-6)


def test_signal_attention_map_keeps_axes(classifier):
    x = stack(3, (40, 52))
    s = _signal(x, scale=15.0)
    s.axes_manager.signal_axes[0].offset = 100.0
    m = s.attention_map(classifier, show_progressbar=False)
    assert m.data.shape == x.shape
    for a, b in zip(m.axes_manager._axes, s.axes_manager._axes):
        assert (a.name, a.scale, a.offset, a.units, a.navigate) == (b.name, b.scale, b.offset, b.units,
                                                                      b.navigate)
    assert m.metadata.Attention.method == "gradcam"
    assert 0 <= m.data.min() and m.data.max() == pytest.approx(1)
    lm = _signal(x, lazy=True, scale=15.0).attention_map(classifier, show_progressbar=False)
    assert lm._lazy
    np.testing.assert_allclose(lm.data.compute(), m.data, atol=1e-5)


def test_signal_predict_pce_with_fusion_weights():
    pred = pce_predictor()
    x = stack(4, (40, 40))
    s = _signal(x)
    out = s.predict_pce(pred, composition=COMP, process=PROC, show_progressbar=False)
    assert out.axes_manager.navigation_shape == (4,) and out.axes_manager.signal_dimension == 0
    assert out.metadata.Signal.quantity == "PCE (%)"
    ref, w = inf.predict_pce(x, Calibration.from_pixel_size(20, "nm"), pred, composition=COMP,
                             process=PROC)
    np.testing.assert_allclose(out.data, ref, rtol=1e-5)
    weights = out.metadata.Fusion.weights
    np.testing.assert_allclose(weights.data, w, rtol=1e-5)
    assert out.metadata.Fusion.modalities == ["image", "composition", "process"]
    lazy = _signal(x, lazy=True).predict_pce(pred, composition=COMP, process=PROC, show_progressbar=False)
    assert lazy._lazy
    np.testing.assert_allclose(lazy.data.compute(), ref, rtol=1e-5)
    with pytest.raises(ValueError, match="valid categories"):
        s.predict_pce(pred, composition={"etl": "graphite"})


def test_vocabulary_order_survives_the_checkpoint(tmp_path):
    """The field order is the encoding layout: a saved card must keep it (not sort it)."""
    from hyperspy_mmdl.checkpoint import read_card

    path = save_checkpoint(tmp_path / "f.pt", TinyFusion(), card(task="regress-pce", vocabularies=VOCAB))
    loaded = read_card(path)
    assert list(loaded.vocabularies["composition"]) == ["perovskite_type", "etl"]
    comp, _, _ = inf.encode_tabular(loaded, COMP, PROC)
    ref, _, _ = inf.encode_tabular(card(vocabularies=VOCAB), COMP, PROC)
    np.testing.assert_array_equal(comp, ref)


def test_predict_pce_with_grain_features():
    from hyperspy_mmdl.grains.summarize import FEATURE_FACTORS
    from hyperspy_mmdl.synthetic import polycrystal

    vocab = dict(VOCAB, numeric=list(FEATURE_FACTORS))
    torch.manual_seed(4)
    c = card(architecture="tiny_fusion", task="regress-pce", class_names=None, vocabularies=vocab,
             pixel_size=10.0, extra={"target_mean": 15.0, "target_std": 2.0})
    pred = inf.Predictor(TinyFusion(numeric_dim=6), c, device="cpu")
    sample = polycrystal(shape=(128, 128), pixel_size=10.0, unit="nm", mean_ecd=150.0, seed=1)
    img = np.asarray(sample.image, np.float32)
    cal = Calibration.from_pixel_size(10, "nm")
    from hyperspy_mmdl.pipeline import AnalysisParameters, analyze_frame, grain_feature_factors

    factors = grain_feature_factors(analyze_frame(img, cal))  # the grains as every route analyses them
    assert factors.shape == (6,) and np.isfinite(factors).all()
    assert 0.05 < factors[0] < 0.3  # mean ECD in µm of grains generated at 150 nm
    pce, _ = inf.predict_pce(img, cal, pred, composition=COMP, process=PROC, grain_features=factors[None])
    comp, proc, _ = inf.encode_tabular(c, COMP, PROC)
    frames, _ = inf.prepare_frames(img, cal, pred)
    padded, tiles = plan_tiles(frames, (32, 32), 0.25)
    batch = torch.from_numpy(np.stack([padded[0][:, t.y:t.y + 32, t.x:t.x + 32] for t in tiles]))
    n = len(tiles)
    with torch.no_grad():
        out = pred.model(batch, torch.from_numpy(comp).expand(n, -1), torch.from_numpy(proc).expand(n, -1),
                         numeric=torch.from_numpy(factors).expand(n, -1))
    assert float(pce) == pytest.approx(float(out.mean()) * 2 + 15, rel=1e-5)
    # without the grains (a direct call that does not measure them) the model's training means are used,
    # and a note says so (PSC-Fusion fills NaN inputs with them; see tests/test_pce.py)
    notes = []
    inf.predict_pce(img, cal, pred, composition=COMP, process=PROC, notes=notes)
    assert notes == ["PCE model: no value for " + ", ".join(FEATURE_FACTORS) + ": the training mean is used"]
    with pytest.raises(ValueError, match="not trained with grain features"):
        inf.predict_pce(img, cal, pce_predictor(), composition=COMP, process=PROC, grain_features=factors[None])
    with pytest.raises(TypeError, match="pipeline.grain_feature_factors"):
        inf.predict_pce(img, cal, pred, composition=COMP, process=PROC, grain_features=True)
    # the pipeline passes them itself
    fa = analyze_frame(img, cal, AnalysisParameters(predict_pce=pred, composition=COMP, process=PROC,
                                                    device="cpu"))
    assert fa.prediction == pytest.approx(float(pce), rel=1e-5)
