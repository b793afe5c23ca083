import math

from skinapp.vocab import FINE_SITES, METADATA_DIM, REGIONS, Metadata, Site, encode_metadata, parse_age, parse_sex, parse_site


def test_age_formats():
    assert parse_age("045Y") == 45
    assert parse_age('"070Y"') == 70
    assert parse_age(55.0) == 55
    assert parse_age("18M") == 1.5
    assert parse_age("") is None and parse_age(float("nan")) is None and parse_age("old") is None
    assert parse_age("400") is None


def test_sex_formats():
    assert parse_sex("M") == "male" and parse_sex('"female"') == "female"
    assert parse_sex("unknown") is None and parse_sex(None) is None


def test_ham_and_siim_sites_share_one_vocabulary():
    assert parse_site("face") == Site("head/neck", "face")
    assert parse_site("head/neck") == Site("head/neck", None)
    assert parse_site("back") == parse_site("posterior torso") == Site("torso", "back")
    assert parse_site("trunk") == parse_site("anterior torso") == Site("torso", None)
    assert parse_site("upper extremity") == parse_site("UPPER EXTREMITY") == Site("upper extremity", None)
    assert parse_site("acral") == parse_site("palms/soles") == Site("palms/soles", "acral")
    assert parse_site("unknown") == parse_site(None) == parse_site("kidney") == Site()
    for site in FINE_SITES:
        region = parse_site(site).region
        assert region in REGIONS


def test_encoding_is_one_hot_with_unknowns():
    empty = encode_metadata(Metadata())
    assert len(empty) == METADATA_DIM
    assert empty[:2] == [0.0, 1.0]  # age missing
    full = encode_metadata(Metadata.parse("45", "female", "face"))
    assert math.isclose(full[0], 0.45) and full[1] == 0.0
    assert sum(full[2:]) == 3  # exactly one sex, one region, one fine site
    assert Metadata().is_empty and Metadata().missing_fields() == ["age", "sex", "anatomic site"]


def test_snomed_dermatology_sites_map_onto_the_model_sites():
    from pydicom.sr._concepts_dict import concepts

    meanings = {code: meaning for entry in concepts["SCT"].values() for code, (meaning, cids) in entry.items() if 4029 in cids}
    skin = [m for m in meanings.values() if m.lower().startswith("skin of")]
    assert len(skin) > 80
    unmapped = [m for m in skin if parse_site(m).region is None]
    assert unmapped == []
    # the codes in the real SIIM-ISIC files, and sites where the specific word must win
    assert parse_site("Skin of part of lower limb") == Site("lower extremity", None)
    assert parse_site("Skin of trunk") == Site("torso", None)
    assert parse_site("Skin of head") == Site("head/neck", None)
    assert parse_site("Skin of lateral border of sole of foot") == Site("palms/soles", "acral")
    assert parse_site("Skin of posterior surface of thorax") == Site("torso", "back")
    assert parse_site("Skin of forearm") == Site("upper extremity", None)
    assert parse_site("Skin of helix of ear") == Site("head/neck", "ear")
    assert parse_site("Skin of upper lip") == Site("head/neck", "face")
    assert parse_site("Retina") == Site() and parse_site("lipoma") == Site()
