"""Lesion measurements on synthetic shapes whose values are known by hand."""

import math

import cv2
import numpy as np
import pytest

from skinapp.inference.measurements import DERMOSCOPIC_COLOURS, measure_lesion

SKIN = (226, 180, 160)


def _canvas(side: int = 400) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((side, side), np.uint8), np.full((side, side, 3), SKIN, np.uint8)


def _disc(radius: int, side: int = 400) -> np.ndarray:
    mask, _ = _canvas(side)
    cv2.circle(mask, (side // 2, side // 2), radius, 1, -1)
    return mask.astype(bool)


def test_a_disc_measures_its_area_and_diameter_in_mm_and_is_round_and_symmetric():
    mask = _disc(100)
    m = measure_lesion(mask, _canvas()[1], mm_per_pixel=0.05)
    assert m.area_px == pytest.approx(math.pi * 100 ** 2, rel=0.01)
    assert m.area_mm2 == pytest.approx(math.pi * 5.0 ** 2, rel=0.01)     # radius 100 px × 0.05 mm = 5 mm
    assert m.longest_diameter_mm == pytest.approx(10.0, abs=0.1)
    assert m.border_irregularity == pytest.approx(1.0, abs=0.06)
    assert m.asymmetry == pytest.approx((0.0, 0.0), abs=0.01) and m.asymmetric_axes == 0


def test_without_a_scale_sizes_are_in_pixels_and_the_text_says_how_to_get_mm():
    m = measure_lesion(_disc(50), _canvas()[1])
    assert m.area_mm2 is None and m.longest_diameter_mm is None
    assert "calibrate it on a ruler" in m.describe()[0]


def test_a_lesion_running_out_of_the_picture_is_not_given_a_size_or_shape():
    """A disc whose centre sits near the edge is cut by the frame: a quarter of its outline lies on the border."""
    mask, image = _canvas()
    cv2.circle(mask, (390, 200), 120, 1, -1)
    m = measure_lesion(mask.astype(bool), image, mm_per_pixel=0.05)
    assert m.cut_off and m.on_border > 0.2
    assert m.area_mm2 is None and m.longest_diameter_mm is None
    size, colours = m.describe()
    assert colours.startswith("Colours:")
    assert size.startswith("Size, shape and border not measured:") and "runs along the image border" in size
    inside = measure_lesion(_disc(100), image, mm_per_pixel=0.05)
    assert not inside.cut_off and inside.on_border == 0 and inside.area_mm2 is not None


def test_rectangles_have_their_diagonal_as_longest_diameter_and_known_compactness():
    mask, image = _canvas()
    mask[100:200, 50:350] = 1      # 300 × 100
    m = measure_lesion(mask.astype(bool), image)
    assert m.longest_diameter_px == pytest.approx(math.hypot(300, 100), rel=0.01)
    assert m.border_irregularity == pytest.approx(800 ** 2 / (4 * math.pi * 30000), rel=0.03)
    square, _ = _canvas()
    square[100:300, 100:300] = 1
    assert measure_lesion(square.astype(bool), image).border_irregularity == pytest.approx(4 / math.pi, rel=0.03)


def test_a_shape_symmetric_about_one_axis_only_is_asymmetric_about_the_other_by_the_computed_share():
    # A bar 200 × 40 with a 40 × 120 cross-piece at its left end (⊢): mirror-symmetric about the long axis.
    # About the short axis through the centroid (x̄ = 77.14 from the left), the mirror image of the bar covers
    # 154.29 of its 200 px and the cross-piece's arms (2 × 40 × 40) nothing: unmatched (11200 − 6171.4) / 11200.
    mask, image = _canvas()
    mask[180:220, 50:250] = 1
    mask[140:260, 50:90] = 1
    m = measure_lesion(mask.astype(bool), image)
    assert m.asymmetry[0] == pytest.approx(0.0, abs=0.01)
    assert m.asymmetry[1] == pytest.approx(0.449, abs=0.01)
    assert m.asymmetric_axes == 1


def test_a_ragged_border_reads_far_more_irregular_than_a_smooth_one():
    mask, image = _canvas()
    angles = np.linspace(0, 2 * np.pi, 41)[:-1]
    radii = np.where(np.arange(40) % 2 == 0, 150, 60)
    points = np.stack([200 + radii * np.cos(angles), 200 + radii * np.sin(angles)], 1).astype(np.int32)
    cv2.fillPoly(mask, [points], 1)
    star = measure_lesion(mask.astype(bool), image)
    edge = math.sqrt(150 ** 2 + 60 ** 2 - 2 * 150 * 60 * math.cos(2 * math.pi / 40))
    assert star.border_irregularity == pytest.approx((40 * edge) ** 2 / (4 * math.pi * star.area_px), rel=0.05)
    assert star.border_irregularity > 10 * measure_lesion(_disc(100), image).border_irregularity


@pytest.mark.parametrize("painted", [("dark brown",), ("light brown", "black"), ("red", "white", "blue-grey"),
                                     tuple(DERMOSCOPIC_COLOURS)])
def test_the_dermoscopic_colours_painted_into_a_lesion_are_counted_and_named(painted):
    mask, image = _canvas()
    mask[100:300, 100:300] = 1
    for i, name in enumerate(painted):  # vertical stripes of equal width
        width = 200 // len(painted)
        image[100:300, 100 + i * width:100 + (i + 1) * width] = DERMOSCOPIC_COLOURS[name]
    image[100:300, 100 + len(painted) * (200 // len(painted)):300] = DERMOSCOPIC_COLOURS[painted[-1]]
    noise = np.random.default_rng(0).normal(0, 4, image.shape)
    image = np.clip(image + noise, 0, 255).astype(np.uint8)
    m = measure_lesion(mask.astype(bool), image)
    assert sorted(m.colours) == sorted(painted)


def test_a_speck_of_a_colour_under_five_percent_of_the_lesion_is_not_counted():
    mask, image = _canvas()
    mask[100:300, 100:300] = 1
    image[100:300, 100:300] = DERMOSCOPIC_COLOURS["light brown"]
    image[100:108, 100:300] = DERMOSCOPIC_COLOURS["black"]     # 4 % of the lesion
    assert measure_lesion(mask.astype(bool), image).colours == ("light brown",)


def test_no_lesion_means_no_measurements():
    mask, image = _canvas()
    assert measure_lesion(mask.astype(bool), image) is None


def test_predict_full_rows_carry_the_measurements_in_the_files_own_pixels_and_in_mm():
    from skinapp.inference.prediction import Prediction
    from skinapp.io import Case
    from skinapp.reporting.prediction_rows import csv_row

    image = _canvas()[1]
    # The file is 800 px wide, shown at 400: a displayed pixel is 2 file pixels, and 0.05 mm.
    case = Case(name="disc", image=image, source="disc.dcm", original_size=(800, 800), pixel_spacing_mm=(0.05, 0.05))
    attention = _disc(100).astype(np.float32)  # an attention map as fine as the image: its outline is the disc
    probabilities = np.full(7, 1 / 7)
    prediction = Prediction(probabilities, probabilities[None], np.zeros(4), attention, np.zeros((8, 8)), None,
                            (400, 400), "test")
    row = csv_row(case, prediction, "full")
    assert float(row["longest_diameter_mm"]) == pytest.approx(10.0, abs=0.1)
    assert float(row["longest_diameter_px"]) == pytest.approx(402, abs=2)
    assert int(row["lesion_area_px"]) == pytest.approx(4 * math.pi * 100 ** 2, rel=0.01)
    assert float(row["lesion_area_mm2"]) == pytest.approx(math.pi * 25, rel=0.01)
    assert row["shape_asymmetric_axes"] == 0 and float(row["border_irregularity"]) < 1.1
    assert row["colour_count"] == 0 and row["colours"] == ""


def test_a_rim_of_the_patients_own_skin_inside_the_outline_is_not_counted_as_a_colour():
    mask, image = _canvas()
    mask[80:320, 80:320] = 1                                     # the outline takes in a 20 px rim of skin
    image[100:300, 100:300] = DERMOSCOPIC_COLOURS["dark brown"]
    assert measure_lesion(mask.astype(bool), image).colours == ("dark brown",)
