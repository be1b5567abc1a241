"""PCE end to end: device tables (units rows, grain-size columns, image columns), training with and
without SEM images, and every route (inference, pipeline, HyperSpy, ``mmdl analyze``, ``mmdl batch``,
``mmdl train``, ``mmdl evaluate``) on an image with composition and process."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from hyperspy_mmdl import inference, io
from hyperspy_mmdl.calibration import Calibration
from hyperspy_mmdl.cli import main
from hyperspy_mmdl.synthetic import polycrystal

RECIPE = ["train.epochs=40", "train.batch_size=256", "optimizer.lr=0.01"]


def _devices(n=160, seed=0):
    """A device table in the Perovskite Database's columns with a band gap and a grain size (nm): PCE rises
    with the grain size and depends on the ETL, as in [PSC]."""
    g = np.random.default_rng(seed)
    etl = g.choice(["TiO2-c | TiO2-mp", "SnO2-np", "PCBM-60"], n)
    short = g.choice(["MAPbI", "FAPbI", "CsFAMAPbBrI"], n)
    grain = g.uniform(80, 900, n)
    gap = g.uniform(1.5, 1.7, n)
    pce = 8 + 9 * (grain - 80) / 820 + np.where(etl == "SnO2-np", 2.0, 0.0) + g.normal(0, 0.3, n)
    return pd.DataFrame({
        "Perovskite_composition_short_form": short, "ETL_stack_sequence": etl,
        "Perovskite_deposition_number_of_deposition_steps": g.choice([1, 2], n),
        "Perovskite_deposition_procedure": g.choice(["Spin-coating", "Spin-coating >> Spin-coating"], n),
        "Perovskite_deposition_solvents": g.choice(["DMF", "DMF; DMSO"], n),
        "Perovskite_deposition_quenching_media": g.choice(["Chlorobenzene", "Unknown"], n),
        "Perovskite_band_gap": gap, "grain_size_nm": grain, "JV_default_PCE": pce,
    })


@pytest.fixture(scope="module")
def grain_model(tmp_path_factory):
    """PSC-Fusion trained on a device table with a grain-size column and no images."""
    from hyperspy_mmdl.train.recipes import load_recipe
    from hyperspy_mmdl.train.tabular import read_pce_table
    from hyperspy_mmdl.train.tasks import train_pce

    folder = tmp_path_factory.mktemp("grain_model")
    frame = _devices()
    frame.to_csv(folder / "devices.csv", index=False)
    table = read_pce_table(folder / "devices.csv", composition_numeric=["Perovskite_band_gap"])
    torch.manual_seed(0)
    res = train_pce(table, load_recipe("psc_fusion", RECIPE), out=folder / "pce.pt", progress=False)
    return res, folder / "pce.pt", frame


def _films(tmp_path):
    """Two calibrated micrographs, small and large grains (a 2-frame stack and single files)."""
    small = polycrystal((160, 160), pixel_size=10.0, unit="nm", mean_ecd=150.0, seed=1)
    large = polycrystal((160, 160), pixel_size=10.0, unit="nm", mean_ecd=600.0, seed=2)
    return small, large


def test_grain_columns_units_row_and_conversions(tmp_path):
    from hyperspy_mmdl.tabular import find_grain_columns, grain_feature_values, read_table

    path = tmp_path / "t.csv"
    path.write_text("ID,Cs,BG,Gr. Size,PCE,Voc,\n,,(eV),(nm),(%),(V),\n,,,,,,\n1,0.1,1.6,100,15.0,1.0,\n"
                    "2,0.0,1.55,250,18.0,1.1,\n")
    frame = read_table(path)
    assert len(frame) == 2 and list(frame.columns) == ["ID", "Cs", "BG", "Gr. Size", "PCE", "Voc"]
    assert frame.attrs["units"] == {"BG": "eV", "Gr. Size": "nm", "PCE": "%", "Voc": "V"}
    assert frame["Gr. Size"].tolist() == [100, 250]
    assert find_grain_columns(frame) == {"Gr. Size": {"factor": "mean_ecd", "unit": "nm"}}
    # lengths in the column's unit, GBLD per that unit, ratios unchanged
    vocab = {"numeric": ["BG", "Gr. Size", "gbld_per_nm", "AR"],
             "grain_features": {"Gr. Size": {"factor": "mean_ecd", "unit": "nm"},
                                "gbld_per_nm": {"factor": "gbld", "unit": "nm"},
                                "AR": {"factor": "mean_aspect_ratio", "unit": ""}}}
    values = grain_feature_values(vocab, [[0.25, 0.4, 1.5, 8.0, 0.1, 0.2]])
    np.testing.assert_allclose(values[0, 1:], [250.0, 0.008, 1.5], rtol=1e-6)
    assert np.isnan(values[0, 0])
    with pytest.warns(UserWarning, match="length unit is not known"):
        assert find_grain_columns(pd.DataFrame({"grain size": [1.0]})) == {}


def test_final_dataset_trains_and_evaluates(shared, tmp_path, capsys):
    """The grain-size table with --target PCE (it crashed: no categorical columns, torch.cat of nothing)."""
    path = shared("perovskite_pce_tabular", "malyadeb_grain_size_pce", "Final Dataset.csv")
    out = tmp_path / "fd.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert main(["train", "--task", "regress-pce", "--data", str(path), "--target", "PCE", "--epochs", "3",
                     "--no-progress", "--device", "cpu", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "inputs: grain features, composition (masked: image)" in text
    card = inference.get_predictor(out, device="cpu").card
    assert card.target_name == "PCE" and card.target_unit == "%"
    # the device results are never inputs; the grain size is the mean ECD in nm
    assert not {"Voc", "Jsc", "FF", "PCE", "ID"} & set(card.numeric_inputs)
    assert card.vocabularies["grain_features"] == {"Gr. Size": {"factor": "mean_ecd", "unit": "nm"}}
    assert inference.uses_grain_features(card)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert main(["evaluate", "--model", str(out), "--data", str(path), "--target", "PCE", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["target"] == "PCE" and res["n"] == 110 and np.isfinite(res["R2"]) and res["MAE"] < 6


def test_training_without_images_says_which_inputs(grain_model):
    res, path, _ = grain_model
    card = res.card
    assert card.masked_modalities == ["image"]
    assert card.extra["inputs"] == ["grain features", "composition", "process"]
    assert card.numeric_inputs == ["Perovskite_band_gap", "grain_size_nm"]
    assert card.vocabularies["numeric_composition"] == ["Perovskite_band_gap"]
    assert card.config["composition_numeric_dim"] == 1 and card.config["numeric_dim"] == 1
    assert res.metrics["R2"] > 0.8  # the grain size and the ETL explain the synthetic PCE
    # the numeric scaling is the model's own (saved with the weights)
    model = inference.get_predictor(path, device="cpu").model
    assert model.numeric_std[1] > 100  # nm


def test_model_without_images_uses_the_images_grains_on_every_route(grain_model, tmp_path, capsys):
    """Handed an image, a model trained without images uses the grains measured on it, and says so."""
    from hyperspy_mmdl.pipeline import AnalysisParameters, analyze_frame, grain_feature_factors

    _, path, frame = grain_model
    row = frame.iloc[3]
    small, large = _films(tmp_path)
    cal = Calibration.from_pixel_size(10, "nm")
    pred = inference.get_predictor(path, device="cpu")
    factors = np.stack([grain_feature_factors(analyze_frame(s.image, cal)) for s in (small, large)])
    assert factors[1, 0] > 2 * factors[0, 0]  # mean ECD in µm
    notes = []
    pce, weights = inference.predict_pce(np.stack([small.image, large.image]), cal, pred, composition=row,
                                         process=row, grain_features=factors, notes=notes)
    assert pce.shape == (2,) and pce[1] > pce[0] + 1.5  # larger grains, higher PCE (as trained)
    assert weights.shape == (2, 3) and (weights[:, 0] == 0).all()
    assert notes[0].startswith("PCE model: trained without SEM images, so the image is not used (its grains are)")
    # by hand: the table row with its grain size replaced by the measured one, in nm
    by_hand = [inference.predict_pce(None, None, pred, composition={**row.to_dict(), "grain_size_nm": f[0] * 1000},
                                     process=row, notes=[])[0] for f in factors]
    np.testing.assert_allclose(pce, by_hand, rtol=1e-5)

    # pipeline (mmdl analyze, mmdl batch, the napari Grains route): never fails a frame, no attention map
    params = AnalysisParameters(predict_pce=str(path), composition=row.to_dict(), process=row.to_dict(),
                                attention="gradcam", device="cpu")
    fa = analyze_frame(large.image, cal, params)
    assert fa.prediction == pytest.approx(float(pce[1]), rel=1e-5) and fa.attention is None
    assert any("trained without SEM images" in n for n in fa.notes)

    # HyperSpy
    import hyperspy.api as hs

    s = hs.signals.Signal2D(np.stack([small.image, large.image]))
    s.set_signal_type("microstructure")
    for ax in s.axes_manager.signal_axes:
        ax.scale, ax.units = 10.0, "nm"
    with pytest.warns(UserWarning, match="trained without SEM images"):
        out = s.predict_pce(str(path), composition=row, process=row, show_progressbar=False)
    np.testing.assert_allclose(out.data, pce, rtol=1e-5)
    assert out.metadata.Fusion.inputs == ["grain features", "composition", "process"]
    assert "trained without SEM images" in out.metadata.Fusion.notes[0]

    # mmdl analyze with --composition/--process (a row of the device table) and mmdl batch --predict-pce
    film = io.save(tmp_path / "film.tif", large.image, large.calibration)
    table = tmp_path / "devices.csv"
    frame.to_csv(table, index=False)
    report = tmp_path / "report"
    assert main(["analyze", str(film), "--model", str(path), "--composition", f"{table}:3", "--process",
                 f"{table}:3", "--device", "cpu", "--out", str(report)]) == 0
    err = capsys.readouterr().err
    assert "trained without SEM images" in err
    from hyperspy_mmdl.tables import read_table

    summary = read_table(report / "summary.csv")
    assert summary["pce"].iloc[0] == pytest.approx(float(pce[1]), rel=1e-4)
    out_dir = tmp_path / "batch"
    assert main(["batch", str(film), "--out", str(out_dir), "--predict-pce", str(path), "--composition",
                 f"{table}:3", "--process", f"{table}:3", "--no-progress"]) == 0
    from hyperspy_mmdl.batch import read_results

    _, frames, manifest = read_results(out_dir)
    assert any("trained without SEM images" in n for n in manifest["items"][0]["notes"])
    assert frames["pce"].iloc[0] == pytest.approx(float(pce[1]), rel=1e-4)
    assert frames["n_grains"].iloc[0] > 5  # the frame's grain results are there too


def test_uncalibrated_image_grains_are_not_used(grain_model):
    _, path, frame = grain_model
    row = frame.iloc[0]
    img = polycrystal((128, 128), pixel_size=10.0, unit="nm", mean_ecd=300.0, seed=5).image
    notes = []
    pce, _ = inference.predict_pce(img, Calibration.uncalibrated(), path, composition=row, process=row,
                                   grain_features=np.ones((1, 6), np.float32) * 30, notes=notes)
    assert any("no calibration" in n for n in notes)
    ref, _ = inference.predict_pce(None, None, path, composition=row, process=row, notes=[])
    assert float(pce) == pytest.approx(ref, rel=1e-6)  # the row's own grain size


def test_table_row_categories_are_encoded_as_in_training(grain_model):
    _, path, frame = grain_model
    row = frame.iloc[0].copy()
    row["ETL_stack_sequence"] = "ZnO-np"  # not among the model's categories: unknown, as training encodes it
    notes = []
    inference.predict_pce(None, None, path, composition=row, process=row, notes=notes)
    assert any("'ZnO-np' not among the model's categories" in n for n in notes)
    with pytest.raises(ValueError, match="valid categories"):  # a field named on purpose still raises
        inference.predict_pce(None, None, path, composition={"etl": "ZnO-np"})
    notes = []
    inference.predict_pce(None, None, path, composition={"etl": "SnO2-np"}, notes=notes)
    assert notes == ["PCE model: no value for Perovskite_band_gap, grain_size_nm: the training mean is used"]


def _image_table(tmp_path, n=24):
    """A device table whose rows name calibrated SEM-like images (grain size drives PCE); two rows have none."""
    g = np.random.default_rng(1)
    rows = []
    for i in range(n):
        ecd = [120.0, 400.0][i % 2]
        s = polycrystal((96, 96), pixel_size=10.0, unit="nm", mean_ecd=ecd, seed=10 + i)
        f = io.save(tmp_path / "img" / f"film{i}.tif", s.image, s.calibration)
        rows.append({"sem": f"img/{f.name}" if i >= 2 else None, "ETL_stack_sequence": g.choice(["TiO2-c", "SnO2"]),
                     "Perovskite_composition_short_form": "MAPbI",
                     "Perovskite_deposition_procedure": "Spin-coating",
                     "JV_default_PCE": 12.0 + (4.0 if ecd > 200 else 0.0) + g.normal(0, 0.2)})
    path = tmp_path / "films.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_train_with_images_from_a_table_cli(tmp_path, capsys):
    """Rows that name image files train the image branch; the model then needs (and uses) an image."""
    path = _image_table(tmp_path)
    out = tmp_path / "sem.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert main(["train", "--task", "regress-pce", "--data", str(path), "--input-size", "32", "--epochs", "2",
                     "--batch-size", "8", "--no-progress", "--device", "cpu", "--out", str(out)]) == 0
    assert "inputs: image, composition, process" in capsys.readouterr().out
    card = inference.get_predictor(out, device="cpu").card
    assert card.masked_modalities == [] and card.input_size == [1, 32, 32]
    assert card.pixel_size == pytest.approx(10.0) and card.pixel_unit == "nm"
    assert card.training_data["images"] == 22
    small = polycrystal((96, 96), pixel_size=10.0, unit="nm", mean_ecd=120.0, seed=99).image
    large = polycrystal((96, 96), pixel_size=10.0, unit="nm", mean_ecd=400.0, seed=98).image
    notes = []
    pce, w = inference.predict_pce(np.stack([small, large]), Calibration.from_pixel_size(10, "nm"), out,
                                   composition={"etl": "SnO2"}, process={}, notes=notes)
    assert pce[0] != pce[1] and (w[:, 0] > 0).all()  # the image branch is on and sees the difference
    assert notes == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert main(["evaluate", "--model", str(out), "--data", str(path), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == 24 and np.isfinite(res["MAE"])


def test_psc_fusion_numeric_inputs_missing_images_and_ensemble():
    from hyperspy_mmdl import models

    torch.manual_seed(0)
    m = models.create("psc_fusion", composition_dim=4, process_sizes=[3], composition_numeric_dim=1,
                      numeric_dim=1, dropout=0.1).eval()
    m.set_numeric_scaling([1.6, 300.0], [0.1, 100.0])
    comp, proc = torch.rand(2, 4), torch.randint(0, 3, (2, 1))
    img = torch.rand(2, 1, 32, 32)
    a = m(img, comp, proc, numeric=torch.tensor([[1.6, 300.0], [1.6, 300.0]]))
    b = m(img, comp, proc, numeric=torch.tensor([[float("nan"), float("nan")], [1.6, 300.0]]))
    c = m(img, comp, proc)  # no numeric values at all: the training means
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    # a device without an image in a batch: its image term is zero, the others' unchanged
    half = img.clone()
    half[1] = float("nan")
    out, att = m(half, comp, proc, return_attention=True)
    ref = m(img[:1], comp[:1], proc[:1])
    assert float(out[0]) == pytest.approx(float(ref[0]), rel=1e-5)
    m.set_modality_mask(["image"])
    assert float(out[1]) == pytest.approx(float(m(None, comp[1:], proc[1:])[0]), rel=1e-5)
    # a branch without inputs stays off
    lone = models.create("psc_fusion", composition_dim=0, process_sizes=[], numeric_dim=2)
    assert lone.mask == {"composition"}
    with pytest.raises(ValueError, match="no inputs"):
        lone.set_modality_mask(["image", "process"])
    # ensemble: the members' mean; files written before the numeric buffers still load
    ens = models.create("psc_fusion_ensemble", composition_dim=4, process_sizes=[3], n_members=3).eval()
    ens.set_modality_mask(["image"])
    outs = torch.stack([mem(None, comp, proc) for mem in ens.members])
    torch.testing.assert_close(ens(None, comp, proc), outs.mean(0))
    assert ens.regressor(torch.zeros(1, 32)).shape == (1, 1)
    old = {k: v for k, v in models.create("psc_fusion", composition_dim=4, process_sizes=[3]).state_dict().items()
           if "numeric" not in k}
    models.create("psc_fusion", composition_dim=4, process_sizes=[3]).load_state_dict(old, strict=True)


def test_device_fields_on_the_command_line(tmp_path):
    from hyperspy_mmdl.cli.analyze import device_fields

    assert device_fields("etl=TiO2-c | TiO2-mp;a_ions=Cs; FA,Perovskite_band_gap=1.6", "x") == {
        "etl": "TiO2-c | TiO2-mp", "a_ions": "Cs; FA", "Perovskite_band_gap": 1.6}
    path = tmp_path / "d.csv"
    _devices(4).to_csv(path, index=False)
    row = device_fields(f"{path}:2", "x")
    assert row["ETL_stack_sequence"] == _devices(4)["ETL_stack_sequence"][2]
    assert isinstance(row["Perovskite_band_gap"], float)
    json.dumps(row)  # batch parameters must be JSON
    with pytest.raises(ValueError, match="no row 9"):
        device_fields(f"{path}:9", "x")


SHIPPED = "pce-perovskite-database"


def test_shipped_pce_model_on_a_real_micrograph(shared):
    """``s.predict_pce("<shipped name>", composition=row, process=row)`` with a row of the device table on a
    real SEM micrograph: the value from composition and process, the image left out with a note."""
    import hyperspy.api as hs

    from hyperspy_mmdl.checkpoint import read_card
    from hyperspy_mmdl.models import list_pretrained, pretrained
    from hyperspy_mmdl.preprocess.color import split_colour
    from hyperspy_mmdl.tabular import read_table

    assert SHIPPED in list_pretrained()
    path = pretrained.pretrained_path(SHIPPED)
    assert path.stat().st_size <= 3 * 1024 * 1024
    text = pretrained.model_card_text(SHIPPED)
    assert "MIT" in text and "malyadeb_grain_size_pce" in text and "scripts/train_pretrained_pce.py" in text
    card = read_card(path)
    assert card.task == "regress-pce" and card.masked_modalities == ["image"]
    assert card.extra["inputs"] == ["composition", "process"] and "MIT" in card.extra["licence"]
    assert card.training_data["source"]["file"] == "Data/Supplementary Data 3.csv"
    assert card.metrics["R2"] > 0.45 and card.metrics["n"] == 392  # the held-out 20 %
    frame = read_table(shared("perovskite_pce_tabular", "psc_ai_framework", "Supplementary Data 3.csv"))
    row = frame.iloc[12]
    image = io.load(shared("perovskite_sem_fapbi3_databar", "199.jpg"))
    grey, _ = split_colour(np.asarray(image.data))
    s = hs.signals.Signal2D(grey[:960])  # the data bar below row 960 left out
    s.set_signal_type("microstructure")
    for ax in s.axes_manager.signal_axes:
        ax.scale, ax.units = 20.0, "nm"  # calibration.csv: 20 nm/px
    with pytest.warns(UserWarning, match="trained without SEM images"):
        out = s.predict_pce(SHIPPED, composition=row, process=row, show_progressbar=False)
    assert out.data.size == 1  # one value for one image
    value = float(out.data.reshape(-1)[0])
    alone, _ = inference.predict_pce(None, None, SHIPPED, composition=row, process=row, notes=[])
    assert value == pytest.approx(alone, rel=1e-6) and 5 < value < 25
    assert abs(value - row["JV_default_PCE"]) < 5  # a training-set device: near its measured PCE
    assert out.metadata.Model.as_dictionary()  # the card travels with the result
    # modality attributions of the ensemble: the Shapley values add up to f(all) - f(none)
    from hyperspy_mmdl import explain

    att = explain.modality_attributions(None, None, SHIPPED, composition=row, process=row, device="cpu")
    assert sorted(att["shapley"]) == ["composition", "process"]
    assert sum(att["shapley"].values()) == pytest.approx(float(att["pce"]) - att["baseline"], abs=1e-4)


def test_every_route_takes_the_shipped_name(shared, tmp_path, capsys):
    """``mmdl analyze --model NAME`` and ``mmdl batch --predict-pce NAME`` on an image with composition and process."""
    frame_path = shared("perovskite_pce_tabular", "psc_ai_framework", "Supplementary Data 3.csv")
    film = polycrystal((160, 160), pixel_size=20.0, unit="nm", mean_ecd=400.0, seed=7)
    f = io.save(tmp_path / "film.tif", film.image, film.calibration)
    spec = f"{frame_path}:12"
    from hyperspy_mmdl.tabular import read_table

    row = read_table(frame_path).iloc[12]
    ref, _ = inference.predict_pce(None, None, SHIPPED, composition=row, process=row, notes=[])
    assert main(["analyze", str(f), "--model", SHIPPED, "--composition", spec, "--process", spec,
                 "--device", "cpu", "--out", str(tmp_path / "report")]) == 0
    from hyperspy_mmdl.tables import read_table as read_units_table

    assert read_units_table(tmp_path / "report" / "summary.csv")["pce"].iloc[0] == pytest.approx(ref, rel=1e-4)
    assert "trained without SEM images" in capsys.readouterr().err
    from hyperspy_mmdl.batch import read_results

    assert main(["batch", str(f), "--out", str(tmp_path / "b"), "--predict-pce", SHIPPED, "--composition", spec,
                 "--process", spec, "--no-progress"]) == 0
    _, frames, _ = read_results(tmp_path / "b")
    assert frames["pce"].iloc[0] == pytest.approx(ref, rel=1e-4) and frames["n_grains"].iloc[0] > 5
