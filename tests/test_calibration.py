import math

import numpy as np
import pytest

from hyperspy_mmdl.calibration import Calibration, convert_length, normalize_unit


@pytest.mark.parametrize(
    "raw, canonical",
    [("um", "µm"), ("µm", "µm"), ("micron", "µm"), ("nm", "nm"), ("", "px"), (None, "px"),
     ("<undefined>", "px"), ("Å", "Å"), ("A", "Å"), ("1/nm", "1/nm"), ("s", "s"), ("pm", "pm"),
     ("nanometer", "nm"), ("mm", "mm")],
)
def test_normalize_unit(raw, canonical):
    assert normalize_unit(raw) == canonical


def test_convert_length():
    assert convert_length(1.0, "µm", "nm") == pytest.approx(1000.0)
    assert convert_length(2.5, "nm", "Å") == pytest.approx(25.0)
    assert convert_length(3.0, "um", "µm") == 3.0
    with pytest.raises(ValueError, match="not calibrated"):
        convert_length(1.0, "px", "nm")


def test_image_and_stack_views():
    cal = Calibration(scale=(2.0, 0.5, 0.25), units=("s", "um", "um"), offset=(0, 10, 20))
    assert cal.navigate == (True, False, False)
    assert cal.names == ("frame", "y", "x")
    assert cal.pixel_size == (0.5, 0.25)
    assert cal.unit == "µm"
    assert not cal.is_square
    nm = cal.to_unit("nm")
    assert nm.pixel_size == pytest.approx((500.0, 250.0))
    assert nm.offset == pytest.approx((0.0, 10000.0, 20000.0))
    assert nm.scale[0] == 2.0 and nm.units[0] == "s"
    assert cal.area_unit == "µm²"


def test_resampled_keeps_field_of_view():
    cal = Calibration.from_pixel_size(10.0, "nm")
    up = cal.resampled(2)
    assert up.pixel_size == (5.0, 5.0)
    # the left edge of the first pixel stays where it was
    assert up.offset[1] - up.scale[1] / 2 == pytest.approx(cal.offset[1] - cal.scale[1] / 2)


def test_cropped_moves_offset():
    cal = Calibration(scale=(2.0, 3.0), units=("nm", "nm"), offset=(1.0, 1.0))
    c = cal.cropped(slice(5, None), slice(2, 10))
    assert c.offset == (11.0, 7.0)


def test_napari_and_hyperspy_axes():
    cal = Calibration.from_pixel_size((4.0, 5.0), "nm").with_frames(2.0, "s")
    kw = cal.to_napari()
    assert kw["scale"] == (2.0, 4.0, 5.0)
    assert kw["units"] == ("s", "nm", "nm")
    axes = cal.to_axes((3, 8, 9))
    assert [a["size"] for a in axes] == [3, 8, 9]
    assert [a["navigate"] for a in axes] == [True, False, False]
    assert Calibration.from_axes(
        [dict(a, index_in_array=i) for i, a in enumerate(axes)]
    ) == cal


def test_invalid_scale_rejected():
    with pytest.raises(ValueError, match="positive"):
        Calibration(scale=(0.0, 1.0), units=("nm", "nm"))
    with pytest.raises(ValueError, match="positive"):
        Calibration(scale=(math.nan, 1.0), units=("nm", "nm"))


def test_uncalibrated():
    cal = Calibration.uncalibrated()
    assert not cal.is_calibrated
    assert cal.unit == "px"
    with pytest.raises(ValueError):
        cal.to_unit("nm")


def test_from_signal_round_trip():
    import hyperspy.api as hs

    cal = Calibration.from_pixel_size((4.0, 5.0), "nm").with_frames(2.0, "s")
    data = np.zeros((3, 8, 9), dtype=np.float32)
    s = hs.signals.Signal2D(data, axes=cal.to_axes(data.shape))
    assert Calibration.from_signal(s) == cal


def test_unit_strings_and_underflowing_pixels_refused():
    from hyperspy_mmdl.calibration import is_known_unit
    from hyperspy_mmdl.errors import CalibrationError

    with pytest.raises(CalibrationError, match="'furlong-ish' .* not a unit pint knows"):
        Calibration.from_pixel_size(10, "furlong-ish")
    with pytest.raises(CalibrationError, match="underflows to 0"):
        Calibration.from_pixel_size(1e-300, "nm")
    with pytest.raises(CalibrationError, match="underflows"):
        Calibration.from_pixel_size(1e-160, "m")  # 1e-151 nm: its area is 0 in floating point
    with pytest.raises(CalibrationError, match="finite and positive"):
        Calibration.from_pixel_size(float("nan"), "nm")
    assert is_known_unit("Å") and is_known_unit("1/nm") and not is_known_unit("furlong-ish")
    # still fine: ordinary and extreme-but-representable pixel sizes keep their area
    cal = Calibration.from_pixel_size(1e-12, "m")
    assert cal.pixel_area > 0
    # a file's unknown unit makes the axes pixels (io warns that the file is uncalibrated)
    axes = [dict(index_in_array=0, scale=2.0, units="furlong-ish"), dict(index_in_array=1, scale=2.0, units="nm")]
    assert not Calibration.from_axes(axes).is_calibrated
