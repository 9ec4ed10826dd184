"""The built-in catalogue (package-data TOML) read into the spec dataclasses."""

from __future__ import annotations

from lmrec.data.loaders import AMAZON_2014_CATEGORIES, dataset_info, list_datasets
from lmrec.data.loaders.catalogue import catalogue
from lmrec.data.loaders.lastfm import NO_TIMESTAMP_NOTE
from lmrec.data.loaders.verify import parse_checksum


def test_catalogue_is_read_once_into_specs() -> None:
    assert catalogue() is catalogue()
    names = list_datasets()
    assert names[:2] == ["ml-100k", "ml-1m"] and names[-1] == "amazon-2018-video-games"
    assert len(names) == len(set(names)) == 10 + 24 + 29
    assert len(AMAZON_2014_CATEGORIES) == 24


def test_every_pinned_checksum_parses_and_every_dataset_can_be_had() -> None:
    for name in list_datasets():
        spec = dataset_info(name)
        assert spec.archives or spec.local_only, name
        assert any(f.required for f in spec.files), name
        for a in spec.archives:
            assert a.url.startswith("https://") and a.filename, name
            if a.checksum is not None:
                parse_checksum(a.checksum)
            else:
                assert a.checksum_note, name  # say why there is none
        for f in spec.files:
            assert f.md5 is None or len(f.md5) == 32, (name, f.name)


def test_family_defaults_extras_and_amazon_templates() -> None:
    ml = dataset_info("ml-1m")
    assert ml.license.startswith("GroupLens") and ml.homepage == "https://grouplens.org/datasets/movielens/"
    readme = next(f for f in ml.files if f.name == "README")
    assert (readme.required, readme.used, readme.md5) == (False, False, None)
    mi = dataset_info("amazon-2014-musical-instruments")
    assert mi.files[0].name == "reviews_Musical_Instruments_5.json.gz" and mi.files[0].content
    assert mi.files[0].md5 == "078862e68091de3d02e245b1c4e688bd" and mi.stats["users"] == 1_429
    sw = dataset_info("amazon-2018-software")
    assert sw.archives[0].mirrors and not sw.archives[1].required and sw.stats == {}


def test_lastfm_note_matches_the_loader() -> None:
    # the TOML repeats lastfm.NO_TIMESTAMP_NOTE: the loader adds it only when it is missing
    assert NO_TIMESTAMP_NOTE in dataset_info("hetrec2011-lastfm-2k").notes
