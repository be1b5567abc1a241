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
