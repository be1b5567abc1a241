"""Checkpoints: round trip, model card, safe loading, clear errors."""

from __future__ import annotations

import pytest
import torch

from hyperspy_mmdl.checkpoint import (  # noqa: E402
    CheckpointError,
    ModelCard,
    load_checkpoint,
    read_card,
    save_checkpoint,
)


class _Tiny(torch.nn.Module):
    def __init__(self, num_classes=3, in_chans=1):
        super().__init__()
        self.conv = torch.nn.Conv2d(in_chans, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, num_classes)

    def forward(self, x):
        x = self.bn(self.conv(x)).mean((2, 3))
        return self.fc(x)


def _card(**kw):
    base = dict(
        architecture="tiny",
        config={"num_classes": 3, "in_chans": 1},
        task="classify",
        input_size=(1, 32, 32),
        normalization="minmax",
        pixel_size=0.05,
        pixel_unit="µm",
        class_names=["small", "medium", "large"],
        metrics={"accuracy": 0.93},
    )
    base.update(kw)
    return base


def test_round_trip_weights_and_card(tmp_path):
    model = _Tiny()
    with torch.no_grad():
        model.bn.running_mean.fill_(0.25)
    path = save_checkpoint(tmp_path / "sub" / "m.pt", model, _card())
    assert path.is_file()
    assert not list(path.parent.glob(".m.pt.*"))  # no temporary file left behind
    loaded, card = load_checkpoint(path, model=_Tiny())
    assert isinstance(card, ModelCard)
    assert card.class_names == ["small", "medium", "large"]
    assert card.input_size == [1, 32, 32]
    assert card.num_classes == 3 and card.in_chans == 1
    assert card.pixel_size == 0.05 and card.pixel_unit == "µm"
    assert card.metrics["accuracy"] == 0.93
    assert card.versions["torch"] == torch.__version__
    assert card.created.endswith("+00:00")
    assert not loaded.training
    x = torch.rand(2, 1, 32, 32)
    model.eval()
    assert torch.equal(loaded(x), model(x))
    assert torch.equal(loaded.bn.running_mean, torch.full((4,), 0.25))
    assert read_card(path).architecture == "tiny"


def test_unknown_card_keys_go_to_extra():
    card = ModelCard.from_dict(_card(my_note="hello"))
    assert card.extra == {"my_note": "hello"}


def test_card_validation():
    with pytest.raises(ValueError, match="task"):
        ModelCard(architecture="x", task="dance")
    with pytest.raises(ValueError, match="architecture"):
        ModelCard.from_dict({"task": "classify"})


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "napari-mmdl-checkpoint", "format_version": 1, "card": "{}",
                "state_dict": {}, "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(path, model=_Tiny())


def test_corrupt_file_named_in_error(tmp_path):
    model = _Tiny()
    path = save_checkpoint(tmp_path / "m.pt", model, _card())
    data = path.read_bytes()
    bad = tmp_path / "broken.pt"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="broken.pt"):
        load_checkpoint(bad, model=_Tiny())
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.pt"):
        load_checkpoint(text, model=_Tiny())


def test_foreign_state_dict_rejected(tmp_path):
    path = tmp_path / "bare.pt"
    torch.save(_Tiny().state_dict(), path)
    with pytest.raises(CheckpointError, match="not a napari-mmdl checkpoint"):
        load_checkpoint(path, model=_Tiny())


def test_mismatched_weights(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _Tiny(num_classes=3), _card())
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(path, model=_Tiny(num_classes=5))


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint("nope.pt")


def test_file_is_loadable_with_weights_only(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", _Tiny(), _card())
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "napari-mmdl-checkpoint"
    assert set(payload) == {"format", "format_version", "card", "state_dict"}
    assert isinstance(payload["card"], str)


# --------------------------------------------------------------------------- model cards validated at load
# A real registered classifier (the PSC image encoder with a 3-class head, 112 px at 0.05 µm/px) and
# a real segmentation U-Net are saved; each defect is written into a copy of the file, as a hand edit
# or a broken script would, and every way of loading the copy must refuse it naming the file.

import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402

import numpy as np  # noqa: E402

from hyperspy_mmdl.checkpoint import check_checkpoint  # noqa: E402
from hyperspy_mmdl.errors import CalibrationError, MMDLError, WrongTaskError  # noqa: E402


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    from hyperspy_mmdl import models

    torch.manual_seed(0)
    net = models.create("psc_encoder", num_classes=3, in_chans=1, head=True)
    card = ModelCard("psc_encoder", config=net.default_cfg["config"], task="classify",
                     input_size=[1, 112, 112], pixel_size=0.05, pixel_unit="µm",
                     class_names=["small", "medium", "large"])
    return save_checkpoint(tmp_path_factory.mktemp("models") / "grain.pt", net, card)


@pytest.fixture(scope="module")
def segmenter_file(tmp_path_factory):
    from hyperspy_mmdl import models

    net = models.create("unet_boundary", base_channels=4, depth=1)
    card = ModelCard("unet_boundary", config=net.default_cfg["config"], task="segment",
                     input_size=[1, 64, 64], pixel_size=20.0, pixel_unit="nm")
    return save_checkpoint(tmp_path_factory.mktemp("models") / "boundaries.pt", net, card)


def _tampered(src, dst, card=None, weights=None):
    payload = torch.load(src, weights_only=True)
    if card is not None:
        c = json.loads(payload["card"])
        card(c)
        payload["card"] = json.dumps(c)  # NaN is written as the JSON literal NaN
    if weights is not None:
        weights(payload["state_dict"])
    torch.save(payload, dst)
    return dst


def _set(**kw):
    return lambda c: c.update(kw)


def _nan_first(sd):
    next(v for v in sd.values() if v.is_floating_point()).fill_(float("nan"))


TAMPERED = {
    "class_names": (_set(class_names=["a", "b"]), None, "2 class names"),
    "duplicate_names": (_set(class_names=["a", "a", "b"]), None, "repeat a name"),
    "input_16": (_set(input_size=[1, 16, 16]), None, "16×16 px is outside 32–1024"),
    "input_2000": (_set(input_size=[1, 2000, 2000]), None, "2000×2000 px is outside 32–1024"),
    "input_chans": (_set(input_size=[2, 112, 112]), None, "2 channels"),
    "input_not_chw": (_set(input_size=[112, 112]), None, "is not \\[channels, height, width\\]"),
    "pixel_negative": (_set(pixel_size=-0.05), None, "pixel_size -0.05 is not a positive, finite number"),
    "pixel_zero": (_set(pixel_size=0), None, "pixel_size 0 is not a positive"),
    "pixel_nan": (_set(pixel_size=float("nan")), None, "pixel_size nan is not a positive"),
    "pixel_text": (_set(pixel_size="fifty"), None, "'fifty' is not a positive"),
    "unit_parsec": (_set(pixel_unit="parsec"), None, "outside the range of micrographs"),
    "unit_unknown": (_set(pixel_unit="furlongs per fortnight"), None, "is not a length unit"),
    "unit_time": (_set(pixel_unit="s"), None, "is not a length unit"),
    "pixel_tiny": (_set(pixel_size=1e-7), None, "1e-13 m\\) is outside the range"),
    "num_classes": (lambda c: (c["config"].update(num_classes=10 ** 9), c.update(class_names=None)), None,
                    "num_classes=1000000000 is not a whole number from 1 to 10000"),
    "in_chans": (lambda c: c["config"].update(in_chans=4), None, "in_chans=4"),
    "reduction": (lambda c: c["config"].update(reduction=10 ** 7), None,
                  "reduction=10000000 asks for more than the weights hold"),
    "normalization": (_set(normalization="magic"), None, "normalization 'magic'"),
    "target_std": (_set(target_std=float("inf")), None, "target_std is inf"),
    "nan_weights": (None, _nan_first, "NaN or infinite values: .* \\(a diverged training"),
}


@pytest.mark.parametrize("defect", sorted(TAMPERED))
def test_tampered_card_refused_naming_the_file(classifier_file, tmp_path, defect):
    card_edit, weights_edit, message = TAMPERED[defect]
    bad = _tampered(classifier_file, tmp_path / f"{defect}.pt", card_edit, weights_edit)
    for load in (lambda p: load_checkpoint(p), read_card, check_checkpoint,
                 lambda p: load_checkpoint(p, task="classify")):
        with pytest.raises(CheckpointError, match=message) as info:
            load(bad)
        assert str(bad) in str(info.value)  # the file is named
    # the whole message is one sentence naming the file first
    assert str(info.value).startswith(f"{bad}: the model card does not fit the model: ")


def test_every_problem_is_listed_once(classifier_file, tmp_path):
    bad = _tampered(classifier_file, tmp_path / "many.pt",
                    _set(pixel_size=0, class_names=["a"], input_size=[1, 8, 8]), _nan_first)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(bad)
    text = str(info.value)
    for part in ("pixel_size 0", "1 class names", "8×8 px", "NaN or infinite"):
        assert text.count(part) == 1, (part, text)


def test_good_card_loads_and_predicts(classifier_file):
    from hyperspy_mmdl import inference
    from hyperspy_mmdl.calibration import Calibration

    net, card = load_checkpoint(classifier_file)
    assert card.validate(classifier_file) is card
    assert check_checkpoint(classifier_file, task="classify") == card
    probs = inference.classify(np.random.default_rng(0).random((2, 128, 128)),
                               Calibration.from_pixel_size(50.0, "nm"), classifier_file, device="cpu")
    assert probs.shape == (2, 3) and np.allclose(probs.sum(1), 1.0, atol=1e-5)


def test_huge_num_classes_is_refused_before_anything_is_built(classifier_file, tmp_path, monkeypatch):
    """1e9 classes would allocate 128 GB in the head: refused from the card alone."""
    from hyperspy_mmdl import checkpoint

    built = []
    monkeypatch.setattr(checkpoint, "_build", lambda *a: built.append(a))
    bad = _tampered(classifier_file, tmp_path / "huge.pt", TAMPERED["num_classes"][0])
    with pytest.raises(CheckpointError, match="huge.pt"):
        load_checkpoint(bad)
    assert built == []


def test_wrong_task_named_with_the_file(segmenter_file, classifier_file):
    with pytest.raises(WrongTaskError, match="boundaries.pt is a 'segment' model; a 'classify' call"):
        load_checkpoint(segmenter_file, task="classify")
    with pytest.raises(WrongTaskError, match="boundaries.pt is a 'segment' model; mmdl batch needs a 'classify'"):
        check_checkpoint(segmenter_file, task="classify", use="mmdl batch")
    assert check_checkpoint(segmenter_file, task="segment").task == "segment"
    with pytest.raises(WrongTaskError, match="needs a 'regress-pce' model"):
        check_checkpoint(classifier_file, task="regress-pce")


def test_unknown_architecture_refused_by_check(classifier_file, tmp_path):
    bad = _tampered(classifier_file, tmp_path / "alien.pt", _set(architecture="alien_net"))
    with pytest.raises(CheckpointError, match="alien.pt: unknown architecture 'alien_net'"):
        check_checkpoint(bad)


def test_attention_map_of_a_segmenter_is_a_wrong_task_error(segmenter_file):
    from hyperspy_mmdl import explain

    with pytest.raises(WrongTaskError, match="boundaries.pt is a 'segment' model; attention_map needs a "
                                             "'classify' or 'regress-pce' model"):
        explain.attention_map(np.zeros((64, 64), np.float32), None, segmenter_file, device="cpu")


def test_resampling_that_would_not_fit_in_memory_is_refused(classifier_file, tmp_path):
    """A model at 51 pm/px (a valid TEM card) on a 20 nm/px SEM image: ×392 per axis, refused
    with both pixel sizes before any allocation (it would need 37 GiB)."""
    from hyperspy_mmdl import inference
    from hyperspy_mmdl.calibration import Calibration

    fine = _tampered(classifier_file, tmp_path / "tem.pt", _set(pixel_size=5.1e-5))
    with pytest.raises(CalibrationError) as info:
        inference.classify(np.zeros((256, 256), np.float32), Calibration.from_pixel_size(20.0, "nm"), fine,
                           device="cpu")
    text = str(info.value)
    assert "tem.pt" in text and "256×256" in text and "0.051 nm/px" in text and "20 nm/px" in text
    assert "GiB" in text
    # a frame that would shrink to almost nothing is refused too
    coarse = _tampered(classifier_file, tmp_path / "coarse.pt", _set(pixel_size=5.0, pixel_unit="mm"))
    with pytest.raises(CalibrationError, match="coarse.pt: .* would leave 1×1 px"):
        inference.classify(np.zeros((256, 256), np.float32), Calibration.from_pixel_size(20.0, "nm"), coarse,
                           device="cpu")
    # and a modest resampling is not
    ok = inference.classify(np.zeros((64, 64), np.float32), Calibration.from_pixel_size(20.0, "nm"),
                            classifier_file, device="cpu")
    assert ok.shape == (3,)


def test_nan_outputs_of_a_model_in_memory_are_an_error():
    from hyperspy_mmdl import inference

    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(1, 2))
    with torch.no_grad():
        net[2].weight.fill_(float("nan"))
    card = ModelCard("vgg_grain", input_size=[1, 16, 16], class_names=["a", "b"])
    with pytest.raises(MMDLError, match="in memory>: the model returned NaN or infinite outputs for 2 of 2"):
        inference.classify(np.zeros((2, 16, 16)), None, (net, card), device="cpu")


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_checkpoint_written_with_the_users_file_mode(tmp_path, umask):
    """A model saved into a group folder is readable as any new file of the user is."""
    old = os.umask(umask)
    try:
        path = save_checkpoint(tmp_path / "m.pt", _Tiny(), _card())
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert math.isclose(read_card(path).pixel_size, 0.05)
