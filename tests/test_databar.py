"""Data-bar detection on real FEI, Zeiss and JEOL SEM images, and no false alarms."""

from __future__ import annotations

import numpy as np
import pytest
from tests.conftest import shared_data

from hyperspy_mmdl.calibration import Calibration
from hyperspy_mmdl.preprocess.databar import DataBar, find_data_bar, remove_data_bar
from hyperspy_mmdl.synthetic import polycrystal

# first row of the strip, read off the row profiles and checked by eye (a separator
# line or the first black row of the strip)
WITH_BAR = [
    ("perovskite_sem_fapbi3_databar/13.jpg", 705, "dark"),  # Zeiss-style, white separator at 705
    ("perovskite_sem_fapbi3_databar/57.jpg", 960, "dark"),  # JEOL-style, 66-row strip
    ("perovskite_sem_fapbi3_databar/198.jpg", 960, "dark"),
    ("perovskite_sem_fapbi3_databar/199.jpg", 960, "dark"),
    ("perovskite_sem_fapbi3_databar/200.jpg", 960, "dark"),
    ("perovskite_sem_fapbi3_databar/201.jpg", 960, "dark"),
    ("rosettasciio_dm_tiff/tiff/sem_FEI_Helios/FEI-Helios-Ebeam-8bits.tif", 442, "dark"),  # white frame line
    ("rosettasciio_dm_tiff/tiff/sem_FEI_Helios/FEI-Helios-Ebeam-16bits.tif", 442, "dark"),
    ("rosettasciio_dm_tiff/tiff/sem_Zeiss/test_tiff_Zeiss_SEM_1k.tif", 691, "bright"),  # black separator
    ("rosettasciio_dm_tiff/tiff/sem_Zeiss/test_tiff_Zeiss_SEM_512pix.tif", 350, "bright"),
]
WITHOUT_BAR = [
    "rosettasciio_dm_tiff/tiff/sem_FEI_Helios/FEI-Helios-navcam.tif",  # a flat black frame
    "rosettasciio_dm_tiff/tiff/sem_FEI_Helios/FEI-Helios-navcam-with-no-IRBeam.tif",  # flat black too
    "rosettasciio_dm_tiff/tiff/sem_FEI_Helios/FEI-Helios-navcam-with-no-IRBeam-bad-floats.tif",
    "rosettasciio_dm_tiff/tiff/sem_Zeiss/ZEISS_SEM_multipage.tif",
    "rosettasciio_dm_tiff/tiff/olympus_SIS.tif",
    "nist_gsat_grains/ti64_sem/sem_alpha_beta_ti_6al_4v.tif",
    "nist_gsat_grains/steel_optical/grain_structures_steel.tif",
    "nist_gsat_grains/steel_optical/grain_structures_steel_highlighted.tif",  # white with dark lines
    "perovskite_sem_grain_gt/example3.png",
    "tbm_metallography_grains/images/10-0-768.png",
    "tbm_metallography_grains/images/14-256-256.png",
]


def _read(path):
    if path.suffix in (".jpg", ".png"):
        from PIL import Image

        return np.asarray(Image.open(path))
    import tifffile

    a = tifffile.imread(path)
    return a[0] if a.ndim == 3 and a.shape[-1] not in (3, 4) else a


@pytest.mark.parametrize("name, top, background", WITH_BAR, ids=[w[0].split("/")[-1] for w in WITH_BAR])
def test_bar_found_within_a_few_rows(name, top, background):
    image = _read(shared_data(*name.split("/")))
    bar = find_data_bar(image)
    assert isinstance(bar, DataBar)
    assert abs(bar.top - top) <= 3, bar
    assert bar.height == image.shape[0] and bar.background == background


@pytest.mark.parametrize("name", WITHOUT_BAR, ids=[w.split("/")[-1] for w in WITHOUT_BAR])
def test_no_bar_on_images_without_one(name):
    assert find_data_bar(_read(shared_data(*name.split("/")))) is None


def test_synthetic_bar_and_removal():
    s = polycrystal((300, 400), data_bar=True, seed=4)
    bar = find_data_bar(s.image)
    assert bar.top == s.data_bar_top and bar.rows == slice(s.data_bar_top, 300)
    for seed in range(3):
        assert find_data_bar(polycrystal((300, 400), seed=seed).image) is None
        assert find_data_bar(polycrystal((300, 400), boundary="bright", seed=seed).image) is None

    cal = Calibration.from_pixel_size(10.0, "nm")
    cropped, cal2 = remove_data_bar(s.image, cal)
    assert cropped.shape == (s.data_bar_top, 400) and cal2.pixel_size == (10.0, 10.0)
    masked, _ = remove_data_bar(s.image, cal, mode="mask")
    assert masked.mask[s.data_bar_top:].all() and not masked.mask[: s.data_bar_top].any()
    # stacks: found on the first frame, cropped on all
    stack = np.stack([s.image, s.image])
    assert remove_data_bar(stack, None)[0].shape == (2, s.data_bar_top, 400)
    # nothing to remove: unchanged
    plain = polycrystal((300, 400), seed=9).image
    assert remove_data_bar(plain, cal)[0] is plain
    with pytest.raises(ValueError, match="mode"):
        remove_data_bar(plain, cal, mode="cut")
    with pytest.raises(ValueError, match="2-D"):
        find_data_bar(np.zeros((2, 3, 5, 7)))


def test_analysis_says_the_data_bar_was_left_out():
    from hyperspy_mmdl.pipeline import analyze_frame

    s = polycrystal((300, 400), data_bar=True, seed=4)
    fa = analyze_frame(s.image, Calibration.from_pixel_size(10.0, "nm"))
    top = s.data_bar_top
    assert fa.analysed_rows == top
    assert f"data bar found (rows {top}–299): left out, the analysis covers rows 0–{top - 1}" in fa.notes
    plain = analyze_frame(polycrystal((300, 400), seed=9).image)
    assert not any(n.startswith("data bar") for n in plain.notes)
