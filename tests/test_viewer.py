"""The case viewer's figure: the picture and the lines over it share the display image's pixel coordinates,
whether the picture is the display image or the larger zoom copy."""

import numpy as np

from skinapp.reporting.viewer import Line, jpeg_data_url, viewer_figure


def _image_trace(figure):
    (image,) = [t for t in figure.data if t.type == "image"]
    return image


def test_the_zoom_copy_covers_exactly_the_display_image_extent():
    url = jpeg_data_url(np.zeros((4, 4, 3), np.uint8))
    plain = _image_trace(viewer_figure(url, 1024, 683))
    assert (plain.x0, plain.y0, plain.dx, plain.dy) == (0, 0, 1, 1)  # pixel centres on the integers
    zoomed = _image_trace(viewer_figure(url, 1024, 683, picture_size=(2048, 1366)))
    assert zoomed.dx == 0.5 and zoomed.dy == 0.5
    for start, step, pixels, extent in ((zoomed.x0, zoomed.dx, 2048, 1024), (zoomed.y0, zoomed.dy, 1366, 683)):
        assert start - step / 2 == -0.5 and np.isclose(start + (pixels - 0.5) * step, extent - 0.5)  # same edges


def test_lines_are_drawn_in_display_pixels_and_closed_outlines_close():
    outline = Line("lesion outline", [(10, 10), (20, 10), (20, 20)], "#00d000", closed=True)
    figure = viewer_figure(jpeg_data_url(np.zeros((4, 4, 3), np.uint8)), 100, 80, [outline],
                           picture_size=(200, 160))
    (line,) = [t for t in figure.data if t.type == "scatter"]
    assert list(line.x) == [10, 20, 20, 10] and list(line.y) == [10, 10, 20, 10] and line.name == "lesion outline"
    assert figure.layout.xaxis.range == (0, 100) and figure.layout.yaxis.range == (80, 0)
