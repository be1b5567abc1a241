"""Grad-CAM, the models' own attention maps and PSC-Fusion modality attributions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyperspy_mmdl import explain  # noqa: E402
from hyperspy_mmdl import inference as inf  # noqa: E402
from hyperspy_mmdl.calibration import Calibration  # noqa: E402

REGION = (slice(0, 12), slice(0, 12))  # the class is decided here (top-left corner of 32×32)


def _region_images(n, rng):
    """Noise; class 1 images have a bright 5×5 square somewhere inside REGION."""
    x = rng.normal(0.3, 0.1, (n, 1, 32, 32)).astype(np.float32)
    y = np.arange(n) % 2
    for i in np.flatnonzero(y):
        r, c = rng.integers(1, 7, 2)
        x[i, 0, r:r + 5, c:c + 5] += 0.5
    return x, y


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU())
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


CARD = dict(architecture="small_cnn", task="classify", input_size=[1, 32, 32], normalization="none",
            class_names=["absent", "present"])


@pytest.fixture(scope="module")
def trained():
    """A small CNN trained (≈2 s) to tell whether REGION holds a bright square."""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    x, y = _region_images(128, rng)
    net = SmallCNN()
    opt = torch.optim.Adam(net.parameters(), 2e-2)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(25):
        perm = torch.randperm(len(X))
        for b in range(0, len(X), 32):
            i = perm[b:b + 32]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(X[i]), Y[i]).backward()
            opt.step()
    net.eval()
    xt, yt = _region_images(40, np.random.default_rng(1))
    with torch.no_grad():
        acc = (net(torch.from_numpy(xt)).argmax(1).numpy() == yt).mean()
    assert acc >= 0.95, f"the test model did not learn the task (accuracy {acc})"
    return inf.Predictor(net, CARD, device="cpu"), xt[yt == 1][:, 0]


def test_gradcam_mass_is_in_the_deciding_region(trained):
    pred, positives = trained
    cams = explain.attention_map(positives, None, pred, "gradcam", target="present")
    assert cams.shape == positives.shape
    inside = cams[:, REGION[0], REGION[1]].sum((1, 2)) / cams.sum((1, 2))
    area = 144 / 1024  # REGION is 14 % of the image
    assert np.median(inside) > 0.8 and inside.min() > 0.5, inside
    # the map is not just the bright square: a copy flipped left-right moves the mass with it
    flipped = explain.attention_map(positives[:, :, ::-1], None, pred, "gradcam", target="present")
    inside_flipped = flipped[:, REGION[0], REGION[1]].sum((1, 2)) / flipped.sum((1, 2))
    assert np.median(inside_flipped) < area


def test_gradcam_default_target_is_the_predicted_class(trained):
    pred, positives = trained
    default = explain.attention_map(positives[:3], None, pred, "gradcam")
    explicit = explain.attention_map(positives[:3], None, pred, "gradcam", target=1)
    np.testing.assert_allclose(default, explicit, atol=1e-6)
    with pytest.raises(ValueError, match="not a class of this model"):
        explain.attention_map(positives[:1], None, pred, target="maybe")


def test_gradcam_of_a_large_image_is_tiled_and_at_the_image_size(trained):
    pred, positives = trained
    big = np.tile(positives[0], (3, 2))  # 96×64: six tiles with the square in each copy
    cal = Calibration.from_pixel_size(5, "nm")
    cam = explain.attention_map(big, cal, pred, "gradcam", target=1)
    assert cam.shape == big.shape
    inside = sum(cam[r * 32:(r * 32) + 12, c * 32:(c * 32) + 12].sum() for r in range(3) for c in range(2))
    assert inside / cam.sum() > 0.6


def test_find_target_layer_picks_end_of_last_conv_block(trained):
    pred, _ = trained
    name, layer = explain.find_target_layer(pred.model, torch.zeros(1, 1, 32, 32))
    assert name == "features" and layer is pred.model.features  # after the last ReLU, before GAP

    class Blocks(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.block = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                                             torch.nn.ReLU())
            self.pool = torch.nn.MaxPool2d(2)
            self.fc = torch.nn.Linear(4 * 16 * 16, 2)

        def forward(self, x):
            return self.fc(self.pool(self.block(self.stem(x))).flatten(1))

    m = Blocks().eval()
    name, layer = explain.find_target_layer(m, torch.zeros(1, 1, 32, 32))
    assert name == "pool"  # the last spatial map before the classifier

    class NoConv(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(16, 2)

        def forward(self, x):
            return self.fc(x.flatten(1)[:, :16])

    with pytest.raises(ValueError, match="no convolutional layer"):
        explain.find_target_layer(NoConv(), torch.zeros(1, 1, 4, 4))


class WithAttention(torch.nn.Module):
    """Returns a CBAM-like spatial map, EA-like token attention and a PA-like map on request."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x, return_attention=False):
        f = torch.relu(self.conv(x))
        out = self.fc(f.mean((2, 3)))
        if not return_attention:
            return out
        spatial = x[:, :1, ::2, ::2]  # the attention "looks" at bright pixels (16×16)
        b = x.shape[0]
        tokens = torch.nn.functional.avg_pool2d(x[:, :1], 8).reshape(b, 16, 1)  # 4×4 patches of 8 px
        ea = torch.softmax(torch.cat([tokens * 10, torch.zeros_like(tokens)], -1), 1)  # (B, N=16, S=2)
        return out, {"cbam_spatial": spatial, "cbam_channel": torch.ones(b, 4, 1, 1),
                     "external_attention.0": ea[:, None], "pa.stage4": spatial[:, :, ::2, ::2]}


def test_own_attention_maps_follow_the_model():
    pred = inf.Predictor(WithAttention(), dict(CARD, normalization="minmax"), device="cpu")
    x = np.zeros((2, 32, 32), np.float32)
    x[0, 2:10, 20:30] = 1  # a bright block top-right
    x[1, 22:30, 2:10] = 1  # bottom-left
    for method in ("cbam", "external", "chunking"):
        maps = explain.attention_map(x, None, pred, method)
        assert maps.shape == x.shape
        for m, (rows, cols) in zip(maps, [(slice(0, 12), slice(18, 32)), (slice(20, 32), slice(0, 12))]):
            assert m[rows, cols].sum() / m.sum() > 0.6, method
    with pytest.raises(ValueError, match="method must be one of"):
        explain.attention_map(x, None, pred, "saliency")


def test_own_attention_missing_kind_is_a_clear_error():
    class Plain(WithAttention):
        def forward(self, x, return_attention=False):
            out = self.fc(torch.relu(self.conv(x)).mean((2, 3)))
            return (out, {"cbam_spatial": x}) if return_attention else out

    pred = inf.Predictor(Plain(), CARD, device="cpu")
    with pytest.raises(ValueError, match="has no 'external' attention"):
        explain.attention_map(np.zeros((32, 32), np.float32), None, pred, "external")


def test_modality_shapley_values_add_up():
    from test_inference import COMP, PROC, pce_predictor

    pred = pce_predictor()
    x = np.random.default_rng(0).random((2, 40, 40)).astype(np.float32)
    res = explain.modality_attributions(x, Calibration.from_pixel_size(20, "nm"), pred, COMP, PROC)
    total = sum(res["shapley"].values())
    np.testing.assert_allclose(total, res["pce"] - res["baseline"], rtol=1e-5, atol=1e-5)
    assert set(res["shapley"]) == {"image", "composition", "process"}
    assert res["pce"].shape == (2,) and res["shapley"]["image"].shape == (2,)
    # composition and process do not depend on the frame; their values differ only through interactions
    # with the image branch (the gates), the image attribution differs between frames
    assert not np.allclose(res["shapley"]["image"][0], res["shapley"]["image"][1])
    no_image = explain.modality_attributions(None, None, pred, COMP, PROC)
    assert set(no_image["shapley"]) == {"composition", "process"}
    np.testing.assert_allclose(sum(no_image["shapley"].values()),
                               no_image["pce"] - no_image["baseline"], atol=1e-5)


def test_gradcam_of_psc_fusion_image_branch():
    from test_inference import COMP, PROC, pce_predictor

    pred = pce_predictor()
    x = np.zeros((40, 40), np.float32)
    x[5:15, 5:15] = 1
    cam = explain.attention_map(x, Calibration.from_pixel_size(20, "nm"), pred, "gradcam",
                                composition=COMP, process=PROC)
    assert cam.shape == x.shape and np.isfinite(cam).all() and cam.max() == pytest.approx(1)


def test_gradcam_in_parallel_threads(trained):
    """Lazy signals run dask blocks in threads on one model: each call must keep its own activations."""
    from concurrent.futures import ThreadPoolExecutor

    pred, positives = trained
    ref = [explain.attention_map(p, None, pred, "gradcam", target=1) for p in positives[:6]]
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(lambda p: explain.attention_map(p, None, pred, "gradcam", target=1), positives[:6]))
    for a, b in zip(ref, got):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_registry_models_attention_and_fusion():
    """The real zoo: EANet's external attention on the patch grid; PSC-Fusion PCE, gates and Shapley sums."""
    from test_inference import COMP, PROC, VOCAB

    from hyperspy_mmdl import models

    torch.manual_seed(0)
    eanet = models.create("eanet", num_classes=3, in_chans=1).eval()
    card = dict(CARD, architecture="eanet", input_size=[1, 224, 224], normalization="minmax",
                class_names=["a", "b", "c"])
    img = np.random.default_rng(0).random((240, 230)).astype(np.float32)
    ext = explain.attention_map(img, None, inf.Predictor(eanet, card, device="cpu"), "external")
    assert ext.shape == img.shape and np.isfinite(ext).all() and ext.max() == pytest.approx(1)
    fusion = models.create("psc_fusion", num_classes=1, in_chans=1, composition_dim=6, process_sizes=[3, 3])
    pcard = dict(architecture="psc_fusion", task="regress-pce", input_size=[1, 224, 224],
                 normalization="minmax", vocabularies=VOCAB, extra={"target_mean": 15.0, "target_std": 2.0})
    pred = inf.Predictor(fusion.eval(), pcard, device="cpu")
    pce, w = inf.predict_pce(img, None, pred, composition=COMP, process=PROC)
    assert np.isfinite(pce) and w.shape == (3,) and ((w > 0) & (w < 1)).all()
    res = explain.modality_attributions(img, None, pred, COMP, PROC)
    np.testing.assert_allclose(sum(res["shapley"].values()), res["pce"] - res["baseline"], atol=1e-4)
