"""The body map (issue 29): a spot for every anatomic site the model knows, a click read back as the site, and a
patient's lesions drawn at their sites in their risk tier's colour."""

from skinapp.reporting.body_map import SPOTS, TIER_COLOURS, body_map_figure, site_of_selection
from skinapp.vocab import FINE_SITES, REGIONS, Site, parse_site


def test_every_site_the_model_knows_has_a_spot_read_as_the_import_reads_its_name():
    assert {s.fine for s in SPOTS} == set(FINE_SITES)
    assert {s.site.region for s in SPOTS} == set(REGIONS)
    for spot in SPOTS:
        assert spot.site == parse_site(spot.fine), spot


def test_a_clicked_spot_is_read_back_as_its_site():
    def clicked(fine):
        return {"selection": {"points": [{"curve_number": 0, "point_index": 3, "customdata": fine}]}}

    assert site_of_selection(clicked("hand")) == Site("upper extremity", "hand")
    assert site_of_selection(clicked("upper extremity")) == Site("upper extremity", None)  # the region itself
    assert site_of_selection(clicked(["back"])) == Site("torso", "back")
    assert site_of_selection({"selection": {"points": []}}) is None and site_of_selection(None) is None
    assert site_of_selection(clicked("moon")) is None


def test_the_picked_site_is_ringed_and_lesions_take_their_tiers_colour():
    figure = body_map_figure(Site("torso", "back"), lesions=[(Site("torso", "back"), "high", "c1"),
                                                             (Site("torso", "back"), "low", "c2"),
                                                             (Site("head/neck", None), "cannot_exclude", "c3"),
                                                             (Site(), None, "unknown site")])
    spots, lesions = figure.data
    ringed = [label for label, size in zip(spots.hovertext, spots.marker.size, strict=True) if size > 13]
    assert ringed == ["Back"]
    assert list(lesions.hovertext) == ["c1", "c2", "c3"]  # a lesion without a site is not drawn
    assert list(lesions.marker.color) == [TIER_COLOURS["high"], TIER_COLOURS["low"], TIER_COLOURS["cannot_exclude"]]
    assert lesions.x[0] != lesions.x[1]  # two lesions on the back side by side, not on top of each other
