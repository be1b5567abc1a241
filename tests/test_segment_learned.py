"""The shipped learned segmenter, the evaluation definition, auto's choice and the quality warnings."""

from __future__ import annotations

import numpy as np
import pytest
from tests.conftest import shared_data

from hyperspy_mmdl.grains import segment
from hyperspy_mmdl.grains.evaluate import evaluate, heyn_intercept, labels_from_boundary_mask, pool
from hyperspy_mmdl.grains.learned import DEFAULT_MODEL, labels_from_boundaries
from hyperspy_mmdl.grains.quality import assess, find_overlay_text
from hyperspy_mmdl.models import list_pretrained
from hyperspy_mmdl.synthetic import STYLES, training_micrograph


def _png(path):
    from PIL import Image

    a = np.asarray(Image.open(path), dtype=np.float32)
    return (a[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32) if a.ndim == 3 else a) / 255


# ----------------------------------------------------------------------------- evaluation definition
def test_heyn_intercept_counts_crossings_of_thinned_boundaries():
    lab = np.ones((80, 120), np.int32)
    lab[:, 30:33] = 0            # a 3-px wide line counts once
    lab[:, 90] = 0
    r = heyn_intercept(lab, spacing=10)
    assert r["intersections"] == 2 * 8 and r["length"] == 120 * 8
    assert r["intercept"] == pytest.approx(60.0)


def test_evaluate_scores_a_known_error():
    truth = np.zeros((96, 96), np.int32)
    for i, x0 in enumerate(range(0, 96, 24)):
        truth[:, x0 + 1:x0 + 24] = i + 1                 # 4 vertical bands, 1-px boundaries
    merged = truth.copy()
    merged[merged == 3] = 2                             # one boundary missed
    merged[:, 48] = 2
    r = evaluate(merged, truth, exclude_border=False)
    assert r["precision"] == pytest.approx(1.0) and r["recall"] < 0.8
    assert r["n_pred"] == 3 and r["n_true"] == 4 and r["count_error"] == pytest.approx(-0.25)
    assert r["intercept_error"] > 0.3                    # fewer crossings: longer intercepts
    p = pool([r, evaluate(truth, truth, exclude_border=False)])
    assert p["n_true"] == 8 and p["crops"] == 2


def test_labels_from_boundaries_merges_only_weak_boundaries():
    prob = np.zeros((60, 60), np.float32)
    prob[29:31, :] = 0.95
    prob[:29, 29:31] = 0.45                              # a faint line; a neck cut by erosion
    lab = labels_from_boundaries(prob, threshold=0.4, merge=0.6, smooth=0, min_area=4)
    assert lab.max() == 2
    lab = labels_from_boundaries(prob, threshold=0.4, merge=None, smooth=0, min_area=4)
    assert lab.max() == 3


@pytest.mark.parametrize("style", STYLES)
def test_training_micrographs_have_closed_grains(style):
    img, bnd, lab = training_micrograph((128, 128), style=style, seed=3)
    assert img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1
    assert bnd.mean() > 0.05 and lab.max() >= 3
    assert not (lab[bnd] > 0).any()


# ----------------------------------------------------------------------------- the shipped model
def test_shipped_segmenter_is_listed_with_its_card():
    from hyperspy_mmdl.checkpoint import read_card
    from hyperspy_mmdl.models.pretrained import model_card_text, pretrained_path

    assert DEFAULT_MODEL in list_pretrained()
    card = read_card(DEFAULT_MODEL)
    assert card.task == "segment" and card.extra["postprocess"]["threshold"] > 0
    assert card.metrics["held_out_tbm_test_sources"]["crops"] >= 15
    text = model_card_text(DEFAULT_MODEL)
    assert "MIT" in text and "held out" in text.lower() and "train_pretrained_segmenter.py" in text
    assert pretrained_path(DEFAULT_MODEL).stat().st_size < 8e6


@pytest.mark.slow
def test_learned_beats_classical_on_held_out_metallography():
    folder = shared_data("tbm_metallography_grains")
    names = ["10-0-768.png", "16-256-256.png", "19-256-768.png", "22-0-0.png"]   # held-out sources
    learned, classical = [], []
    for n in names:
        img, truth = _png(folder / "images" / n), labels_from_boundary_mask(_png(folder / "masks" / n) > 0.5)
        lab, info = segment(img, method="auto", return_info=True)
        assert info["method"] == "learned", info["auto"]
        learned.append(evaluate(lab, truth))
        classical.append(evaluate(segment(img, method="threshold"), truth))
    ours, theirs = pool(learned), pool(classical)
    assert ours["f1"] > theirs["f1"] + 0.1
    assert abs(ours["intercept_error"]) < abs(theirs["intercept_error"]) or abs(ours["intercept_error"]) < 0.3


def test_learned_without_model_uses_the_shipped_one():
    img = _png(shared_data("perovskite_sem_grain_gt") / "example3.png")[:128, :128]
    lab, info = segment(img, method="learned", return_info=True)
    assert info["model"] == DEFAULT_MODEL and lab.max() >= 3


# ----------------------------------------------------------------------------- quality warnings
def test_overlay_text_is_found_and_left_out():
    from hyperspy_mmdl import io

    im = io.load(shared_data("perovskite_sem_fapbi3_databar") / "199.jpg")
    grey = np.asarray(im.data, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    text = find_overlay_text(grey[:900])
    rows = np.nonzero(text.any(1))[0]
    assert 30 <= rows.min() <= 45 and 240 <= rows.max() <= 260      # the five printed lines
    assert not text[400:].any()
    tbm = _png(shared_data("tbm_metallography_grains") / "images" / "10-0-768.png")
    assert not find_overlay_text(tbm).any()


def test_quality_warns_on_low_coverage_and_tiny_grains():
    lab = np.zeros((100, 100), np.int32)
    lab[10:20, 10:20] = 1
    w = assess(np.random.default_rng(0).random((100, 100)), lab, method="boundary")
    assert any("cover only 1%" in x for x in w) and any("only 1 grain" in x for x in w)
    noise = np.arange(1, 10001, dtype=np.int32).reshape(100, 100)   # every pixel its own "grain"
    assert any("noise" in x for x in assess(np.zeros((100, 100)), noise, method="threshold"))


def test_pipeline_notes_say_what_auto_chose():
    from hyperspy_mmdl.pipeline import analyze_frame

    img = _png(shared_data("tbm_metallography_grains") / "images" / "13-0-0.png")
    fa = analyze_frame(img)
    assert fa.method == "learned"
    assert any(n.startswith("method 'auto' chose 'learned'") for n in fa.notes)


# ----------------------------------------------------------------------------- scale="auto"
def _magnified(m, seed):
    """A generated micrograph (a seed the shipped model never saw) recorded at ``m`` times the pixels."""
    from hyperspy_mmdl.preprocess.resample import resize

    img, _, lab = training_micrograph((round(256 / m),) * 2, style="sem", seed=seed)
    return resize(img, (256, 256), order=1), resize(lab, (256, 256), order=0)


def test_choose_scale_shrinks_grains_three_times_too_large():
    from hyperspy_mmdl.grains.learned import MIN_JUDGED, choose_scale

    img, truth = _magnified(3.0, seed=91_003)
    zoom, seen = choose_scale(img, None, DEFAULT_MODEL, device="cpu")
    assert zoom <= 0.5, seen
    assert all(round(min(img.shape) * z) >= MIN_JUDGED for z in seen)   # no judging on tiny windows
    auto, info = segment(img, method="learned", return_info=True)
    one = segment(img, method="learned", scale=1.0)
    assert info["learned"]["scale"] == zoom
    assert evaluate(auto, truth)["f1"] > evaluate(one, truth)["f1"] + 0.2


def test_scale_auto_leaves_held_out_metallography_at_its_own_pixels():
    img = _png(shared_data("tbm_metallography_grains") / "images" / "16-256-256.png")
    _, info = segment(img, method="learned", return_info=True)
    assert info["learned"]["scale"] == 1.0 and set(info["learned"]["certainty"]) >= {0.5, 1.0, 2.0}


@pytest.mark.slow
def test_scale_auto_helps_on_the_large_grains_of_the_perovskite_film():
    folder = shared_data("perovskite_sem_grain_gt")
    truth = labels_from_boundary_mask(_png(folder / "ground_truth3.png") > 0.5)
    img = _png(folder / "example3.png")[:, : truth.shape[1]]
    auto, info = segment(img, method="learned", return_info=True)
    assert info["learned"]["scale"] < 1
    assert evaluate(auto, truth)["f1"] > evaluate(segment(img, method="learned", scale=1.0), truth)["f1"] + 0.05


@pytest.mark.parametrize("bad", [0, -1.0, "big", True, float("nan"), float("inf")])
def test_scale_must_be_auto_or_positive(bad):
    with pytest.raises(ValueError, match="scale must be 'auto' or a positive number"):
        segment(np.random.default_rng(0).random((64, 64)), method="learned", scale=bad)


def test_certainty_weighs_boundary_and_interior_alike():
    from hyperspy_mmdl.grains.learned import certainty

    crisp = np.full((40, 40), 0.05)
    crisp[::8] = 0.95
    fewer = crisp.copy()
    fewer[8::16] = 0.05                             # half the boundaries, just as decided
    assert certainty(crisp) == pytest.approx(0.9) and certainty(fewer) == pytest.approx(0.9)
    hesitant = crisp.copy()
    hesitant[::8] = 0.6                             # boundaries barely called
    assert certainty(hesitant) < 0.6
    assert certainty(np.full((40, 40), 0.9)) == 0.0   # all boundary: no grains


def test_auto_takes_the_learned_models_parameters():
    img = np.random.default_rng(1).random((96, 96))
    _, info = segment(img, method="auto", scale=1.0, return_info=True)
    assert info["method"] in {"learned", "boundary", "boundary-edge", "threshold"}
    if info["method"] == "learned":
        assert info["learned"]["scale"] == 1.0
    with pytest.raises(TypeError, match="unexpected parameters"):
        segment(img, method="threshold", scale=1.0)


def test_a_numeric_threshold_is_the_learned_models_probability_cut():
    img, _ = _magnified(1.0, seed=91_001)
    low = segment(img, method="learned", threshold=0.2, scale=1.0)
    high = segment(img, method="learned", threshold=0.8, scale=1.0)
    assert (low == 0).mean() > (high == 0).mean()     # a lower cut: more boundary
    assert segment(img, method="learned", threshold="otsu", scale=1.0).max() > 0   # names do not apply
    with pytest.raises(ValueError, match="boundary probability in"):
        segment(img, method="learned", threshold=1.5)


@pytest.mark.slow
def test_default_route_matches_nist_gsat_intercept_on_a_real_sem():
    """A real Zeiss SEM micrograph the segmenter never saw, as a user opens it: the Heyn
    intercept of the defaults is within 10 % of NIST GSAT's own boundary map."""
    import tifffile
    import warnings

    import hyperspy.api as hs

    folder = shared_data("nist_gsat_grains") / "ti64_sem"
    s = hs.load(folder / "sem_alpha_beta_ti_6al_4v.tif", signal_type="microstructure")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        labels = s.segment_grains()
    gsat = np.atleast_3d(tifffile.imread(folder / "sem_alpha_beta_ti_6al_4v_segmented.tif"))[..., 0] > 127
    ours, theirs = heyn_intercept(np.asarray(labels.data))["intercept"], heyn_intercept(gsat)["intercept"]
    assert labels.metadata.Grains.method == "learned"
    assert ours == pytest.approx(theirs, rel=0.10)
    assert evaluate(np.asarray(labels.data), gsat)["f1"] > 0.75
