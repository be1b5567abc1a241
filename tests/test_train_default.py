"""Defaults that learn: the `finetune` recipe, schedules from the data size, the did-not-learn check,
class folders with source sub-folders, uncalibrated folders, `mmdl train` / `mmdl models`, and the
shipped grain-size classifier on real micrographs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import shared_data

from hyperspy_mmdl.calibration import Calibration
from hyperspy_mmdl.train import tasks
from hyperspy_mmdl.train.datasets import choose_pixel_size, read_classification_data, read_image_folder
from hyperspy_mmdl.train.recipes import DEFAULT_CLASSIFY, load_recipe

PRETRAINED = "grain-size-micronet"


def _png(path, x):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).save(path)


def _grey(path):
    from PIL import Image

    x = np.asarray(Image.open(path)).astype(float)
    return x[..., :3].mean(-1) if x.ndim == 3 else x


@pytest.fixture(scope="module")
def real_folder(tmp_path_factory):
    """A real 3-class folder, one sub-folder per source micrograph: perovskite SEM crops (FAPbI3 set),
    optical metallography crops (TBM) and ceramic SEM images."""
    root = tmp_path_factory.mktemp("real3")
    for f in sorted(shared_data("perovskite_sem_fapbi3_databar").glob("*.jpg"))[:5]:
        x = _grey(f)[300:940]
        for i, c in enumerate(range(0, 1024, 256)):
            _png(root / "perovskite" / f.stem / f"{i}.png", x[128:384, c:c + 256])
    tbm = sorted((shared_data("tbm_metallography_grains") / "images").glob("*.png"))
    by_source: dict = {}
    for f in tbm:
        by_source.setdefault(f.name.split("-")[0], []).append(f)
    for src, files in sorted(by_source.items())[:6]:
        for f in files[:3]:
            _png(root / "metallography" / src / f.name, _grey(f))
    for f in sorted(shared_data("ceramic_sem_phase_seg").rglob("*_sem.bmp")):
        x = _grey(f)
        for i, (r, c) in enumerate(((0, 0), (128, 128))):  # two overlapping crops of one source
            _png(root / "ceramic" / f.stem / f"{i}.png", x[r:r + 128, c:c + 128])
    return root


# --------------------------------------------------------------------------- schedule and check
def test_auto_schedule_follows_the_data_size():
    small, mid, big = tasks.auto_schedule(20), tasks.auto_schedule(120), tasks.auto_schedule(1000)
    assert small == {"batch_size": 8, "steps_per_epoch": 8, "epochs": 38}  # drawn with replacement
    assert mid["batch_size"] == 16 and mid["steps_per_epoch"] is None and mid["epochs"] == 19
    assert big["batch_size"] == 32 and big["epochs"] == 4
    for n in (20, 120, 1000):  # never the vgg_grain trap of one optimiser step per epoch
        s = tasks.auto_schedule(n)
        assert (s["steps_per_epoch"] or int(np.ceil(n / s["batch_size"]))) >= 8


def test_learning_check_tells_chance_from_learning():
    y = np.array([0] * 10 + [1] * 6 + [2] * 4)
    at_chance = tasks.learning_check(y, np.zeros_like(y))  # always the most frequent class
    assert at_chance["learned"] is False and at_chance["chance_accuracy"] == pytest.approx(0.5)
    assert at_chance["held_out_accuracy"] == pytest.approx(0.5)
    good = tasks.learning_check(y, np.where(np.arange(20) < 18, y, 0))
    assert good["learned"] is True and good["learning_p_value"] < 1e-3
    assert tasks.learning_check([0, 1], [0, 1])["learned"] is None  # too few to tell


def test_default_recipe_is_finetune_and_papers_recipes_stay_verbatim():
    r = load_recipe(DEFAULT_CLASSIFY)
    assert DEFAULT_CLASSIFY == "finetune" and r["model"] == "micronet"
    assert r["init"]["pretrained"] == PRETRAINED and r["train"]["batch_size"] == "auto"
    vgg = load_recipe("vgg_grain")
    assert vgg["train"]["batch_size"] == 256 and vgg["train"]["epochs"] == 100 and not vgg["init"]


# --------------------------------------------------------------------------- folders
def test_class_folders_with_source_subfolders_split_by_source(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        for src in range(4):
            for k in range(3):
                _png(tmp_path / cls / f"s{src}" / f"{k}.png", rng.integers(0, 255, (40, 40)))
        _png(tmp_path / cls / "loose.png", rng.integers(0, 255, (40, 40)))
    ims = read_image_folder(tmp_path)
    assert len(ims) == 26 and ims.class_names == ["a", "b"]
    assert len(np.unique(ims.groups)) == 10 and "a/s0" in set(ims.groups) and "a/loose.png" in set(ims.groups)
    tr, va, te = tasks.split_indices(ims.labels, {"val_fraction": 0.2, "test_fraction": 0.2}, groups=ims.groups)
    parts = [set(ims.groups[p]) for p in (tr, va, te)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert len(te) and len(va)


def test_pixel_size_choice():
    unc = [Calibration.uncalibrated(2)] * 2
    cal = [Calibration.from_pixel_size(s, "nm") for s in (10, 20, 40)]
    target, note = choose_pixel_size(unc, recipe_pixel=0.05)
    assert target is None and "uncalibrated" in note
    assert choose_pixel_size(cal, recipe_pixel=0.05) == (0.05, "")
    assert choose_pixel_size(cal)[0] == pytest.approx(0.02)
    assert choose_pixel_size(cal[:1] * 3) == (None, "")
    assert choose_pixel_size(unc, requested=0.1) == (0.1, "")


def test_uncalibrated_folder_trains_with_a_recipe_pixel_size(tmp_path):
    """grain_size_small resamples to 0.05 µm/px; an uncalibrated folder trains at its own pixel size
    (the Train widget used to fail here with 'cannot resample to 0.05 µm/px')."""
    rng = np.random.default_rng(1)
    for cls in ("x", "y"):
        for k in range(3):
            _png(tmp_path / cls / f"{k}.png", rng.integers(0, 255, (64, 64)))
    notes = []
    ims = read_classification_data(tmp_path, load_recipe("grain_size_small"), log=notes.append)
    assert len(ims) == 6 and ims.images[0].shape == (1, 64, 64) and ims.pixel_size() == (None, "px")
    assert notes and "uncalibrated" in notes[0] and "0.05" in notes[0]
    assert float(ims.images[0].max()) == pytest.approx(1.0)  # the recipe's minmax normalisation
    with pytest.raises(ValueError, match="uncalibrated"):
        read_classification_data(tmp_path, load_recipe("grain_size_small"), pixel_size=0.05)


# --------------------------------------------------------------------------- training
def test_finetune_default_learns_a_real_three_class_folder(real_folder, tmp_path):
    recipe = load_recipe("finetune", ["train.sample_budget=256", "train.max_minutes=0"])
    ims = read_classification_data(real_folder, recipe)
    assert ims.class_names == ["ceramic", "metallography", "perovskite"]
    notes = []
    res = tasks.train_classifier(ims, recipe, progress=False, out=tmp_path / "m.pt", log=notes.append)
    assert res.card.recipe["init"]["pretrained"] == PRETRAINED
    assert res.card.recipe["init"]["copied"] > 20
    probe = res.card.recipe["init"]["linear_probe"]
    assert probe["train_accuracy"] > 0.9
    assert res.card.recipe["train"]["batch_size"] == 8 and res.fit["epochs_run"] >= 4
    m = res.card.metrics
    # held out: 5 or 6 unseen source micrographs; chance (the most frequent class) is below 0.5
    assert m["learned"] is True and m["held_out_accuracy"] >= 0.75 > m["chance_accuracy"] + 0.25
    assert res.card.training_data["split_by"] == "source"
    held = set(ims.groups[np.concatenate([res.splits["val"], res.splits["test"]])])
    assert not held & set(ims.groups[res.splits["train"]])  # held-out sources never trained on
    assert any("linear head" in n for n in notes)


def test_a_run_that_cannot_learn_says_so(tmp_path):
    """Two classes of the same noise: the held-out accuracy is at chance, a DidNotLearnWarning is raised
    and the card records learned = false."""
    rng = np.random.default_rng(3)
    for cls in ("p", "q"):
        for src in range(10):
            _png(tmp_path / "d" / cls / f"{src}.png", rng.integers(0, 255, (48, 48)))
    recipe = load_recipe("grain_size_small", ["data.input_size=32", "data.val_fraction=0.3",
                                              "data.test_fraction=0.3", "optimizer.lr=0.0"])
    ims = read_classification_data(tmp_path / "d", recipe)
    with pytest.warns(tasks.DidNotLearnWarning, match="did not learn"):
        res = tasks.train_classifier(ims, recipe, epochs=1, progress=False, out=tmp_path / "n.pt")
    from hyperspy_mmdl.checkpoint import read_card

    assert read_card(tmp_path / "n.pt").metrics["learned"] is False


def test_cli_train_defaults_save_into_the_models_folder_and_exit_nonzero_at_chance(tmp_path, monkeypatch,
                                                                                    capsys):
    from hyperspy_mmdl.checkpoint import read_card
    from hyperspy_mmdl.cli import main

    folder = tmp_path / "models"
    monkeypatch.setenv("MMDL_MODELS_DIR", str(folder))
    rng = np.random.default_rng(4)
    for cls in ("p", "q"):
        for src in range(10):
            _png(tmp_path / "d" / cls / f"{src}.png", rng.integers(0, 255, (48, 48)))
    rc = main(["train", "--task", "classify", "--data", str(tmp_path / "d"), "--recipe", "grain_size_small",
               "--epochs", "1", "--no-progress", "--set", "optimizer.lr=0.0", "--set", "data.input_size=32",
               "--set", "data.val_fraction=0.3", "--set", "data.test_fraction=0.3"])
    out = capsys.readouterr()
    assert rc == 3, out
    assert "did not learn" in out.err and "learned=false" in out.err
    saved = [p for p in folder.glob("grain_size_small-*.pt") if not p.name.endswith(".state.pt")]
    assert len(saved) == 1 and read_card(saved[0]).metrics["learned"] is False
    # `mmdl models` lists the shipped model first and then this one, with its verdict
    assert main(["models", "--trained"]) == 0
    table = capsys.readouterr().out
    assert f"{PRETRAINED} (shipped)" in table and saved[0].name in table and "(did not learn)" in table
    assert table.index(PRETRAINED) < table.index(saved[0].name) and str(folder) in table
    assert ".state.pt" not in table  # the resume state beside it is not a model


# --------------------------------------------------------------------------- the shipped classifier
def test_shipped_grain_size_classifier_card_and_size():
    from hyperspy_mmdl.checkpoint import read_card
    from hyperspy_mmdl.models.pretrained import PRETRAINED_DIR, list_pretrained, model_card_text

    assert PRETRAINED in list_pretrained()
    card = read_card(PRETRAINED)
    assert card.task == "classify" and card.class_names == ["small", "medium", "large"]
    assert card.pixel_size == pytest.approx(0.05) and card.pixel_unit == "µm" and card.architecture == "micronet"
    assert card.metrics["learned"] is True
    assert set(card.metrics["held_out_by_source"]) >= {"synthetic", "steel_optical", "ti64_sem"}
    text = model_card_text(PRETRAINED)
    for needed in ("Licence", "NIST", "MIT", "held out", "scripts/train_pretrained_classifier.py", "finetune"):
        assert needed.lower() in text.lower(), needed
    assert (PRETRAINED_DIR / f"{PRETRAINED}.pt").stat().st_size < 5e6
    total = sum(p.stat().st_size for p in PRETRAINED_DIR.glob("*.pt"))
    assert total < 20e6


def test_shipped_classifier_on_real_micrographs_at_any_pixel_size():
    """Ti-6Al-4V SEM (Zeiss TIFF, 0.1116 µm/px; the pipeline measures a mean ECD of 1.6 µm) is 'large',
    also when its pixel size is doubled; the generated polycrystal of napari's sample (250 nm grains at
    10 nm/px) is 'small', and 600 nm grains 'medium'."""
    import hyperspy.api as hs

    from hyperspy_mmdl import inference
    from hyperspy_mmdl.synthetic import polycrystal

    path = shared_data("nist_gsat_grains", "ti64_sem", "sem_alpha_beta_ti_6al_4v.tif")
    s = hs.load(path, signal_type="microstructure")
    probs = np.asarray(s.classify(PRETRAINED, device="cpu"))
    assert probs.reshape(-1, 3).argmax(1).tolist() == [2], probs
    maps = s.attention_map(PRETRAINED, device="cpu")
    assert np.asarray(maps.data).shape[-2:] == s.data.shape[:2] and float(np.nanmax(maps.data)) > 0
    from hyperspy_mmdl.train.datasets import load_micrograph

    x, cal = load_micrograph(path, normalization="none")  # grey, data bar left out
    assert cal.pixel_size_in("µm")[1] == pytest.approx(0.11165)
    half = x[0, ::2, ::2]  # the same field at twice the pixel size
    cal2 = Calibration.from_pixel_size(2 * 0.11165, "µm")
    assert inference.classify(half, cal2, PRETRAINED, device="cpu").argmax() == 2
    for ecd, klass in ((250, 0), (600, 1)):
        sample = polycrystal((512, 512), pixel_size=10, unit="nm", mean_ecd=ecd, seed=0)
        p = inference.classify(sample.image, sample.calibration, PRETRAINED, device="cpu")
        assert p.argmax() == klass, (ecd, p)


def test_no_warning_noise_from_the_defaults(real_folder):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        read_classification_data(real_folder, load_recipe("finetune"))
