"""The dataset registry: names, official sources, pinned checksums, and ``load_dataset``.

Where data lives: ``data_dir`` if given, else ``$LMREC_DATA_HOME``, else ``~/.cache/lmrec/data``;
each dataset in a folder named after it (``<home>/ml-100k/u.data``). A local copy that is present
and verified is always used; only a missing one is downloaded, from the official source, checked
against a pinned archive checksum and installed atomically (see :mod:`.download`).

Two levels of checksums:

* **archive** checksums (``Archive.checksum``) are the values the publishers give (GroupLens
  ``.md5`` files) or that independent public code agrees on; an archive whose checksum could not be
  confirmed has ``checksum=None`` and is only downloaded with ``allow_unverified=True``
  (``--no-verify``). ``Archive.checksum_note`` says where each value was confirmed;
* **per-file** MD5s (``FileSpec.md5``) pin the extracted files, so a local copy that was never
  downloaded by lmrec (e.g. a shared folder) can be verified too. They come from the PROVENANCE.md
  of the reference copies. Files without a pinned MD5 are hashed once and the hash is recorded in
  the dataset's ``meta["checksums"]`` so evaluation reports can cite exactly what was used.
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from lmrec.data.dataset import Dataset
from lmrec.data.loaders.download import (
    STAMP_NAME,
    Stamp,
    check_gzip,
    extract_zip,
    fetch,
    file_digest,
    install,
    load_stamp,
    staging,
    stamp_path,
)
from lmrec.data.loaders.lastfm import NO_TIMESTAMP_NOTE
from lmrec.errors import ChecksumError, DataError

# ------------------------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset folder."""

    name: str
    #: pinned MD5 (hex) of the file, or of its decompressed content when ``content`` is set
    md5: str | None = None
    size: int | None = None
    #: the dataset counts as present only when every required file is there
    required: bool = True
    #: read by the loader, hence verified on every load (others only by ``verify``)
    used: bool = True
    #: ``md5`` covers the gzip-decompressed content, and the uncompressed file (``name`` without
    #: ``.gz``) is accepted in its place
    content: bool = False

    def candidates(self) -> tuple[str, ...]:
        if self.content and self.name.endswith(".gz"):
            return (self.name, self.name[:-3])
        return (self.name,)


@dataclass(frozen=True)
class Archive:
    """A downloadable file: a zip that is extracted, or a single file that is kept as is."""

    url: str
    filename: str
    #: ``"md5:<hex>"``/``"sha256:<hex>"``, or None when no value could be confirmed
    checksum: str | None
    kind: Literal["zip", "file"] = "zip"
    mirrors: tuple[str, ...] = ()
    #: an optional archive (Amazon metadata) that fails to download is skipped, not fatal
    required: bool = True
    #: where the checksum was confirmed, or why there is none
    checksum_note: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    #: selects the loader: movielens, amazon-2014, amazon-2018, lastfm, converted-tsv (interactions.tsv +
    #: items.tsv, see :mod:`.converted`), or a registered custom family
    family: str
    description: str
    size: str
    archives: tuple[Archive, ...]
    files: tuple[FileSpec, ...]
    homepage: str = ""
    license: str = ""
    citation: str = ""
    #: official counts, for ``lmrec datasets info`` and tests
    stats: Mapping[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    #: set (with no ``archives``) when there is nothing lmrec may download: the copy must be put in
    #: the dataset folder by hand; says where it comes from (a converted form with no official URL)
    local_only: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["stats"] = dict(self.stats)
        return out


# ----------------------------------------------------------------------------------------- sources
_GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
_ML_LICENSE = (
    "GroupLens research license: research use, cite Harper & Konstan (2015), no endorsement, no "
    "commercial use without permission; see the dataset README"
)
_ML_CITATION = (
    "F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History and Context. "
    "ACM TiiS 5, 4: 19:1-19:19. https://doi.org/10.1145/2827872"
)


def _ml(
    name: str,
    description: str,
    size: str,
    checksum: str | None,
    note: str,
    files: tuple[FileSpec, ...],
    stats: Mapping[str, int],
    notes: tuple[str, ...] = (),
) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        family="movielens",
        description=description,
        size=size,
        archives=(Archive(f"{_GROUPLENS}{name}.zip", f"{name}.zip", checksum, "zip", checksum_note=note),),
        files=files,
        homepage="https://grouplens.org/datasets/movielens/",
        license=_ML_LICENSE,
        citation=_ML_CITATION,
        stats=stats,
        notes=notes,
    )


def _extra(*names: str) -> tuple[FileSpec, ...]:
    """Files shipped in an archive that the loader does not read."""
    return tuple(FileSpec(n, required=False, used=False) for n in names)


_ML100K_FILES = (
    FileSpec("u.data", "6e47046882bad158b0efbb84cd5cb987", 1979173),
    FileSpec("u.item", "c9e7f390115d79079537301d5204f3f7", 236344),
    FileSpec("u.user", "1b53539edc13caad0282c8500608a319", 22628),
    FileSpec("u.genre", "a7578bdb37758741ae9429d2c736af18", 202, required=False),
    FileSpec("README", "364aae5a5037ed015864d55c04f1f476", 6750, required=False, used=False),
    FileSpec("allbut.pl", "7111b21765584d73b2c0c446f3213013", 716, required=False, used=False),
    FileSpec("mku.sh", "65560d0b2f71ce70d1fadd266d9afcce", 643, required=False, used=False),
    FileSpec("u.info", "6cae0afd8c0341aff31b631a192e57e6", 36, required=False, used=False),
    FileSpec("u.occupation", "035abaa2165f35cebce4b91e03481e0a", 193, required=False, used=False),
    FileSpec("u1.base", "4325f44281c9f8c119a3694662d63fc2", 1586544, required=False, used=False),
    FileSpec("u1.test", "62d5d837e7c8e36550cc956b09c2ecc8", 392629, required=False, used=False),
    FileSpec("u2.base", "79541afecccbd5365bb2c09b123a01c7", 1583948, required=False, used=False),
    FileSpec("u2.test", "1951a71b7e1f4ed254508007fa2f6b70", 395225, required=False, used=False),
    FileSpec("u3.base", "55c67a63f516fa9e593d68c3be779970", 1582546, required=False, used=False),
    FileSpec("u3.test", "cb3e4d0a9152041772285232ca002d4f", 396627, required=False, used=False),
    FileSpec("u4.base", "66f64a75eeeffd20ff09533bcd31adcf", 1581878, required=False, used=False),
    FileSpec("u4.test", "328acfca94e85d01b1d7e92c7d73df3b", 397295, required=False, used=False),
    FileSpec("u5.base", "0becb3392339231c08ba316944c79095", 1581776, required=False, used=False),
    FileSpec("u5.test", "bec898f7091dba3b7bdf793d1998d2d6", 397397, required=False, used=False),
    FileSpec("ua.base", "346eb46a756be3b382bdef4f7dcf3a01", 1792501, required=False, used=False),
    FileSpec("ua.test", "52e5d0355092dc1596899855b220508f", 186672, required=False, used=False),
    FileSpec("ub.base", "e4ce94f6e01e45f65b91a70bb9e8da2f", 1792476, required=False, used=False),
    FileSpec("ub.test", "5292d1e388d156aa0c19c384cdf35aca", 186697, required=False, used=False),
)
_ML_LATEST_SMALL_FILES = (
    FileSpec("ratings.csv", "325a6f09399d1c45671f187505e1a100", 2483723),
    FileSpec("movies.csv", "ed94fab72b62442ef8150d9446e000d6", 494431),
    FileSpec("tags.csv", "1b2d21a7be1cc23d327b11155a4a6aea", 118660, required=False),
    FileSpec("links.csv", "316913f95cdad64c745ca22f3630e230", 197979, required=False),
    FileSpec("README.txt", "9bc20a696092024abe52696ee6c5837f", 8342, required=False, used=False),
)
_CSV_FILES = (
    FileSpec("ratings.csv"),
    FileSpec("movies.csv"),
    FileSpec("tags.csv", required=False),
    FileSpec("links.csv", required=False),
    *_extra("README.txt"),
)
_GROUPLENS_MD5 = "published by GroupLens ({0}.zip.md5) and cited identically in independent public code"

_STATIC: dict[str, DatasetSpec] = {}
_AMAZON_LICENSE = "research use; no license file ships with the data (McAuley lab asks for citation)"


def _add(spec: DatasetSpec) -> None:
    _STATIC[spec.name] = spec


_add(
    _ml(
        "ml-100k",
        "MovieLens 100K (1998): ratings 1-5, titles, genres, user demographics",
        "4.9 MB zip",
        "md5:0e33842e24a9c977be4e0107933c0723",
        _GROUPLENS_MD5.format("ml-100k"),
        _ML100K_FILES,
        {"interactions": 100_000, "users": 943, "items": 1_682},
    )
)
_add(
    _ml(
        "ml-1m",
        "MovieLens 1M (2003): ratings 1-5, titles, genres, user demographics",
        "5.9 MB zip",
        "md5:c4d9eecfca2ab87c1945afe126590906",
        _GROUPLENS_MD5.format("ml-1m"),
        (
            FileSpec("ratings.dat"),
            FileSpec("movies.dat"),
            FileSpec("users.dat", required=False),
            *_extra("README"),
        ),
        {"interactions": 1_000_209, "users": 6_040, "items": 3_883},
    )
)
_add(
    _ml(
        "ml-10m",
        "MovieLens 10M (2009): half-star ratings, titles, genres, tags",
        "63 MB zip",
        "md5:ce571fd55effeba0271552578f2648bd",
        "cited identically by several independent public dataset configs (GroupLens ml-10m.zip.md5)",
        (
            FileSpec("ratings.dat"),
            FileSpec("movies.dat"),
            FileSpec("tags.dat", required=False),
            *_extra("README.html"),
        ),
        {"interactions": 10_000_054, "items": 10_681, "tags": 95_580},
    )
)
_add(
    _ml(
        "ml-latest-small",
        "MovieLens latest small (2018-09-26 edition): half-star ratings, titles, genres, tags",
        "0.9 MB zip",
        "md5:31a303aabbc519bd33d025e44d6c2570",
        "matches the reference copy's zip (PROVENANCE.md) and the GroupLens-published value cited in public code; "
        "GroupLens may regenerate this development set, which would change it",
        _ML_LATEST_SMALL_FILES,
        {"interactions": 100_836, "users": 610, "items": 9_742, "tags": 3_683},
        ("a development dataset; GroupLens advises against it for shared research results",),
    )
)
_add(
    _ml(
        "ml-20m",
        "MovieLens 20M (2016 update): half-star ratings, titles, genres, tags, tag genome",
        "190 MB zip",
        "md5:cd245b17a1ae2cc31bb14903e1204af3",
        _GROUPLENS_MD5.format("ml-20m"),
        (*_CSV_FILES, *_extra("genome-scores.csv", "genome-tags.csv")),
        {"interactions": 20_000_263, "users": 138_493, "items": 27_278, "tags": 465_564},
    )
)
_add(
    _ml(
        "ml-25m",
        "MovieLens 25M (2019): half-star ratings, titles, genres, tags, tag genome",
        "250 MB zip",
        "md5:6b51fb2759a8657d3bfcbfc42b592ada",
        _GROUPLENS_MD5.format("ml-25m"),
        (*_CSV_FILES, *_extra("genome-scores.csv", "genome-tags.csv")),
        {"interactions": 25_000_095, "users": 162_541, "items": 62_423, "tags": 1_093_360},
    )
)
_add(
    _ml(
        "ml-32m",
        "MovieLens 32M (2023): half-star ratings, titles, genres, tags",
        "228 MB zip",
        "md5:d472be332d4daa821edc399621853b57",
        _GROUPLENS_MD5.format("ml-32m"),
        (*_CSV_FILES, *_extra("checksums.txt")),
        {"interactions": 32_000_204, "users": 200_948, "items": 87_585, "tags": 2_000_072},
    )
)
_add(
    DatasetSpec(
        name="hetrec2011-lastfm-2k",
        family="lastfm",
        description="HetRec 2011 Last.fm: 1,892 users' top artists with play counts, artist tags (no timestamps)",
        size="2.6 MB zip",
        archives=(
            Archive(
                "https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip",
                "hetrec2011-lastfm-2k.zip",
                "sha256:6738f48195667ff03caaab4d32ca9a3133d8cc026b7c3cdaf6ce1010e913c59c",
                "zip",
                checksum_note="SHA-256 cited identically by several independent public loaders (GroupLens gives none)",
            ),
        ),
        files=(
            FileSpec("user_artists.dat", "85f04141f44f8ff69953bdbd62728bf5", 1296455),
            FileSpec("artists.dat", "83efeb9e14f896d408ddab658052ff52", 1925879),
            FileSpec("tags.dat", "42c3c2e41013d8f8ae7d275029698abe", 234468, required=False),
            FileSpec("user_taggedartists.dat", "4e05d78541bbb0ee9b1672edf6c07e60", 4366696, required=False),
            FileSpec(
                "user_friends.dat", "0a903667d9ce6d0efd30a422f292c891", 251565, required=False, used=False
            ),
            FileSpec("readme.txt", "d046cd2619289dd37af49c0e32a25a99", 4627, required=False, used=False),
            FileSpec("user_taggedartists-timestamps.dat", required=False, used=False),
        ),
        homepage="https://grouplens.org/datasets/hetrec-2011/",
        license="non-commercial use (readme.txt); commercial users must contact Last.fm",
        citation=(
            "I. Cantador, P. Brusilovsky, T. Kuflik. 2nd Workshop on Information Heterogeneity and Fusion in "
            "Recommender Systems (HetRec 2011), RecSys 2011; http://www.lastfm.com"
        ),
        stats={"interactions": 92_834, "users": 1_892, "items": 17_632, "tags": 186_479},
        notes=(NO_TIMESTAMP_NOTE,),
    )
)

# ------------------------------------------------------------------- converted, local-only copies
_OFFICE_SOURCE = (
    "McAuley et al. Amazon 2014 Office_Products 5-core, converted from the public yuyq18/APAO "
    "(data/Office) and ysh-1998/LRD (data/Office) processed copies; the copy's PROVENANCE.md gives both "
    "sources and the md5s"
)
_add(
    DatasetSpec(
        name="amazon-2014-office",
        family="converted-tsv",
        description=(
            "Amazon 2014 Office Products 5-core, sequential (leave-last-out = the LC-Rec/ReChorus split), "
            "item title, brand, categories, description"
        ),
        size="4.9 MB (3 TSV files)",
        archives=(),
        files=(
            FileSpec("interactions.tsv", "ba54a62635211baf6c955c45cbb1bec0", 964_777),
            FileSpec("items.tsv", "4818c2d41a421dfa7cdd301524141fc6", 2_116_079),
            FileSpec(
                "interactions_unixtime.tsv",
                "2375e1cd5447023b60e6a450f7be49fd",
                1_800_383,
                required=False,
                used=False,
            ),
            *_extra("PROVENANCE.md"),
        ),
        homepage="https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html",
        license=_AMAZON_LICENSE,
        citation=(
            "R. He, J. McAuley. Ups and downs: Modeling the visual evolution of fashion trends with one-class "
            "collaborative filtering. WWW 2016; J. McAuley et al. Image-based recommendations on styles and "
            "substitutes. SIGIR 2015"
        ),
        stats={"interactions": 53_258, "users": 4_905, "items": 2_420},
        notes=(
            "timestamp is the 1-based position in the user's sequence, not a time "
            "(interactions_unixtime.tsv has the day-granular unix times, which tie at the split boundary)",
            "5-core: every user and item has at least 5 interactions; no ratings",
        ),
        local_only=_OFFICE_SOURCE,
    )
)

# --------------------------------------------------------------------------------- Amazon families
AMAZON_2014_CATEGORIES = (
    "Amazon_Instant_Video", "Apps_for_Android", "Automotive", "Baby", "Beauty", "Books", "CDs_and_Vinyl",
    "Cell_Phones_and_Accessories", "Clothing_Shoes_and_Jewelry", "Digital_Music", "Electronics",
    "Grocery_and_Gourmet_Food", "Health_and_Personal_Care", "Home_and_Kitchen", "Kindle_Store", "Movies_and_TV",
    "Musical_Instruments", "Office_Products", "Patio_Lawn_and_Garden", "Pet_Supplies", "Sports_and_Outdoors",
    "Tools_and_Home_Improvement", "Toys_and_Games", "Video_Games",
)  # fmt: skip
AMAZON_2018_CATEGORIES = (
    "AMAZON_FASHION", "All_Beauty", "Appliances", "Arts_Crafts_and_Sewing", "Automotive", "Books", "CDs_and_Vinyl",
    "Cell_Phones_and_Accessories", "Clothing_Shoes_and_Jewelry", "Digital_Music", "Electronics", "Gift_Cards",
    "Grocery_and_Gourmet_Food", "Home_and_Kitchen", "Industrial_and_Scientific", "Kindle_Store", "Luxury_Beauty",
    "Magazine_Subscriptions", "Movies_and_TV", "Musical_Instruments", "Office_Products", "Patio_Lawn_and_Garden",
    "Pet_Supplies", "Prime_Pantry", "Software", "Sports_and_Outdoors", "Tools_and_Home_Improvement",
    "Toys_and_Games", "Video_Games",
)  # fmt: skip

#: content MD5s (of the decompressed JSON lines) of reference copies, by (edition, category)
_AMAZON_CONTENT_MD5: dict[tuple[str, str], tuple[str, int]] = {
    ("2014", "Musical_Instruments"): ("078862e68091de3d02e245b1c4e688bd", 7_445_886),
}
_AMAZON_STATS: dict[tuple[str, str], dict[str, int]] = {
    ("2014", "Musical_Instruments"): {"interactions": 10_261, "users": 1_429, "items": 900},
}
_AMAZON_NO_CHECKSUM = (
    "the McAuley lab publishes no checksums for these files and none could be confirmed elsewhere: "
    "download only with allow_unverified=True / --no-verify"
)


def _slug(category: str) -> str:
    return category.lower().replace("_", "-")


def _amazon_spec(edition: str, category: str) -> DatasetSpec:
    pretty = category.replace("_", " ").replace(" and ", " & ")
    if edition == "2014":
        base = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
        reviews, meta = f"reviews_{category}_5.json.gz", f"meta_{category}.json.gz"
        archives = (
            Archive(base + reviews, reviews, None, "file", checksum_note=_AMAZON_NO_CHECKSUM),
            Archive(base + meta, meta, None, "file", required=False, checksum_note=_AMAZON_NO_CHECKSUM),
        )
        homepage = "https://cseweb.ucsd.edu/~jmcauley/datasets/amazon/links.html"
        citation = (
            "R. He, J. McAuley. Ups and downs: Modeling the visual evolution of fashion trends with one-class "
            "collaborative filtering. WWW 2016; J. McAuley et al. Image-based recommendations on styles and "
            "substitutes. SIGIR 2015"
        )
    else:
        base = "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_v2/"
        old = "https://jmcauley.ucsd.edu/data/amazon_v2/"
        reviews, meta = f"{category}_5.json.gz", f"meta_{category}.json.gz"
        archives = (
            Archive(
                f"{base}categoryFilesSmall/{reviews}", reviews, None, "file",
                mirrors=(f"{old}categoryFilesSmall/{reviews}",), checksum_note=_AMAZON_NO_CHECKSUM,
            ),
            Archive(
                f"{base}metaFiles2/{meta}", meta, None, "file", mirrors=(f"{old}metaFiles2/{meta}",),
                required=False, checksum_note=_AMAZON_NO_CHECKSUM,
            ),
        )  # fmt: skip
        homepage = "https://cseweb.ucsd.edu/~jmcauley/datasets/amazon_v2/"
        citation = (
            "J. Ni, J. Li, J. McAuley. Justifying recommendations using distantly-labeled reviews and "
            "fine-grained aspects. EMNLP 2019"
        )
    md5, size = _AMAZON_CONTENT_MD5.get((edition, category), (None, None))
    return DatasetSpec(
        name=f"amazon-{edition}-{_slug(category)}",
        family=f"amazon-{edition}",
        description=f"Amazon {edition} 5-core reviews: {pretty} (review text; item metadata when present)",
        size="varies",
        archives=archives,
        files=(
            FileSpec(reviews, md5, size, content=True),
            FileSpec(meta, required=False, content=True),
        ),
        homepage=homepage,
        license=_AMAZON_LICENSE,
        citation=citation,
        stats=_AMAZON_STATS.get((edition, category), {}),
        notes=("5-core: every user and item has at least 5 reviews; duplicate reviews are kept as found",),
    )


_AMAZON: dict[str, tuple[str, str]] = {
    **{f"amazon-2014-{_slug(c)}": ("2014", c) for c in AMAZON_2014_CATEGORIES},
    **{f"amazon-2018-{_slug(c)}": ("2018", c) for c in AMAZON_2018_CATEGORIES},
}

# ------------------------------------------------------------------------------ registry functions
Loader = Callable[[Path, DatasetSpec, dict[str, Any]], Dataset]
_CUSTOM: dict[str, DatasetSpec] = {}
_CUSTOM_LOADERS: dict[str, Loader] = {}


def register_dataset(spec: DatasetSpec, loader: Loader | None = None, *, overwrite: bool = False) -> None:
    """Add a dataset (e.g. an internal log with a pinned archive) to the registry.

    ``loader(folder, spec, meta) -> Dataset`` is needed when ``spec.family`` is not a built-in one.
    """
    if not overwrite and (spec.name in _CUSTOM or spec.name in _STATIC or spec.name in _AMAZON):
        raise ValueError(f"dataset {spec.name!r} is already registered (pass overwrite=True to replace it)")
    if loader is None and spec.family not in _BUILTIN_LOADERS:
        raise ValueError(f"family {spec.family!r} has no built-in loader: pass loader=")
    _CUSTOM[spec.name] = spec
    if loader is not None:
        _CUSTOM_LOADERS[spec.name] = loader


def unregister_dataset(name: str) -> None:
    _CUSTOM.pop(name, None)
    _CUSTOM_LOADERS.pop(name, None)


def list_datasets(family: str | None = None) -> list[str]:
    """Every registered dataset name (MovieLens and Last.fm first, then the Amazon categories)."""
    names = [*_STATIC, *_CUSTOM, *_AMAZON]
    if family is None:
        return names
    return [
        n
        for n in names
        if dataset_info(n).family == family or dataset_info(n).family.startswith(family + "-")
    ]


@functools.cache
def _amazon_cached(name: str) -> DatasetSpec:
    edition, category = _AMAZON[name]
    return _amazon_spec(edition, category)


def dataset_info(name: str) -> DatasetSpec:
    """The registry entry for ``name``; an unknown name raises :class:`DataError` with suggestions."""
    if name in _CUSTOM:
        return _CUSTOM[name]
    if name in _STATIC:
        return _STATIC[name]
    if name in _AMAZON:
        return _amazon_cached(name)
    close = difflib.get_close_matches(name, list_datasets(), n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    raise DataError(f"unknown dataset {name!r}{hint}; `lmrec datasets list` shows them all")


def data_home(data_dir: str | Path | None = None) -> Path:
    """``data_dir``, else ``$LMREC_DATA_HOME``, else ``~/.cache/lmrec/data``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("LMREC_DATA_HOME")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "lmrec" / "data"


def dataset_dir(name: str, data_dir: str | Path | None = None) -> Path:
    dataset_info(name)
    return data_home(data_dir) / name


def _find(folder: Path, spec: FileSpec) -> Path | None:
    for cand in spec.candidates():
        p = folder / cand
        if p.is_file():
            return p
    return None


def missing_files(name: str, data_dir: str | Path | None = None) -> list[str]:
    """Required files absent from the local copy (empty when the copy is present)."""
    spec = dataset_info(name)
    folder = dataset_dir(name, data_dir)
    return [f.name for f in spec.files if f.required and _find(folder, f) is None]


def is_present(name: str, data_dir: str | Path | None = None) -> bool:
    return not missing_files(name, data_dir)


def local_status(name: str, data_dir: str | Path | None = None) -> str:
    """The local copy's state, from the verification stamp and file metadata only (never hashes):

    * ``"missing"``: a required file is absent;
    * ``"present"``: not verified yet, or changed since the last check;
    * ``"verified"``: every file the loader reads matched its pinned or download-time checksum;
    * ``"unpinned"``: checked, but some file has no reference checksum to compare with (its hash is
      recorded in ``meta["checksums"]`` all the same).
    """
    spec = dataset_info(name)
    folder = dataset_dir(name, data_dir)
    if missing_files(name, data_dir):
        return "missing"
    stamp = load_stamp(folder, name)
    status = "verified"
    for f in spec.files:
        path = _find(folder, f)
        if path is None or not f.used:
            continue
        entry = stamp.lookup(path.name, path)
        if entry is None or (f.md5 is not None and entry.md5 != f.md5):
            return "present"
        if entry.origin == "observed":
            status = "unpinned"
    return status


# ---------------------------------------------------------------------------------------- verifying
@dataclass(frozen=True)
class FileCheck:
    name: str
    #: ok (matches its reference), unpinned (no reference; hash recorded), mismatch, missing
    status: Literal["ok", "unpinned", "mismatch", "missing"]
    expected: str | None
    actual: str | None
    #: what the reference is: "pinned" (registry), "archive" (recorded when extracted from a verified
    #: archive), "observed" (none) or "" for missing files
    origin: str
    required: bool = True


def _is_local_only(name: str) -> bool:
    try:
        return bool(dataset_info(name).local_only)
    except DataError:  # unregistered since the check ran
        return False


@dataclass(frozen=True)
class VerifyReport:
    name: str
    folder: Path
    checks: tuple[FileCheck, ...]

    @property
    def ok(self) -> bool:
        return all(
            c.status in ("ok", "unpinned") or (c.status == "missing" and not c.required) for c in self.checks
        )

    def checksums(self) -> dict[str, str]:
        """``{file: "md5:<hex>"}`` for every file checked and present."""
        return {c.name: f"md5:{c.actual}" for c in self.checks if c.actual}

    def raise_for_problems(self) -> None:
        for c in self.checks:
            if c.status == "missing" and c.required:
                raise DataError(
                    f"missing file {c.name} in the local copy of {self.name} at {self.folder}",
                    source=str(self.folder / c.name),
                )
            if c.status == "mismatch":
                what = "pinned" if c.origin == "pinned" else "recorded when it was downloaded"
                fix = (
                    "replace it with the copy PROVENANCE.md describes; it cannot be downloaded"
                    if _is_local_only(self.name)
                    else f"replace it with `lmrec datasets download {self.name} --force`"
                )
                raise ChecksumError(
                    f"checksum mismatch for {c.name} in {self.name}: expected md5:{c.expected} ({what}), "
                    f"got md5:{c.actual}; the local copy at {self.folder} is damaged or a different version "
                    f"({fix})",
                    source=str(self.folder / c.name),
                )


def verify_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    full: bool = True,
    scope: Literal["all", "used"] = "all",
    raise_on_error: bool = True,
    progress: bool | None = None,
) -> VerifyReport:
    """Check the local copy's files against their pinned (or download-time) MD5s.

    ``full=True`` re-hashes every file; ``full=False`` trusts files whose size and mtime match the
    stamp from an earlier verification, so loads stay fast. ``scope="used"`` limits the check to
    files the loader reads. A mismatch raises :class:`ChecksumError` naming the file and both
    hashes (unless ``raise_on_error=False``: then the report says so).
    """
    spec = dataset_info(name)
    folder = dataset_dir(name, data_dir)
    stamp = load_stamp(folder, name)
    checks: list[FileCheck] = []
    covered: set[str] = set()
    for f in spec.files:
        if scope == "used" and not f.used:
            continue
        path = _find(folder, f)
        covered.update(f.candidates())
        if path is None:
            checks.append(FileCheck(f.name, "missing", f.md5, None, "", f.required))
            continue
        checks.append(_check_file(path, path.name, f.md5, f.content, stamp, full, progress, f.required))
    if scope == "all":
        # files recorded when extracted from a verified archive but not listed in the spec
        for rel, entry in sorted(stamp.entries.items()):
            path = folder / rel
            if rel in covered or entry.origin != "archive":
                continue
            if not path.is_file():
                checks.append(FileCheck(rel, "missing", entry.md5, None, "archive", False))
                continue
            checks.append(_check_file(path, rel, None, False, stamp, full, progress, False))
    stamp.save(only_if_dirty=True)
    report = VerifyReport(name=name, folder=folder, checks=tuple(checks))
    if raise_on_error:
        report.raise_for_problems()
    return report


def _check_file(
    path: Path,
    rel: str,
    pinned: str | None,
    content: bool,
    stamp: Stamp,
    full: bool,
    progress: bool | None,
    required: bool,
) -> FileCheck:
    previous = stamp.entries.get(rel)
    fresh = None if full else stamp.lookup(rel, path)
    actual = fresh.md5 if fresh is not None else file_digest(path, "md5", content=content, progress=progress)
    if pinned is not None:
        expected, origin = pinned, "pinned"
    elif previous is not None and previous.origin == "archive":
        expected, origin = previous.md5, "archive"
    else:
        expected, origin = None, "observed"
    if expected is None:
        status: Literal["ok", "unpinned", "mismatch"] = "unpinned"
    else:
        status = "ok" if actual == expected else "mismatch"
    if status != "mismatch":
        stamp.record(rel, path, actual, origin)
    return FileCheck(rel, status, expected, actual, origin, required)


# --------------------------------------------------------------------------------------- download
def download_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    allow_unverified: bool = False,
    force: bool = False,
    progress: bool | None = None,
    opener: Callable[[str, float], Any] | None = None,
) -> Path:
    """Make sure a verified copy of ``name`` is in its folder, downloading it only if missing.

    A present copy is verified (cheaply) and kept: never re-downloaded unless ``force=True``, which
    replaces it atomically. Archives without a confirmed checksum are refused unless
    ``allow_unverified=True``. Returns the dataset folder.
    """
    spec = dataset_info(name)
    home = data_home(data_dir)
    final = home / name
    if not force and final.exists():
        if is_present(name, data_dir):
            verify_dataset(name, data_dir, full=False, progress=progress)
            return final
        if spec.local_only:
            raise _not_downloadable(spec, final)
        if any(final.iterdir()):
            # Never mix downloaded files into a folder someone else filled: say what is wrong instead.
            missing = missing_files(name, data_dir)
            raise DataError(
                f"{final} exists but is incomplete (missing {', '.join(missing)}); add the missing files, "
                f"or replace the folder with `lmrec datasets download {name} --force`",
                source=str(final / missing[0]),
            )
        final.rmdir()
    if spec.local_only:
        raise _not_downloadable(spec, final)
    if not allow_unverified:
        for a in spec.archives:
            if a.required and a.checksum is None:
                raise DataError(
                    f"{name}: no confirmed checksum for {a.filename} ({a.checksum_note or 'none pinned'}); "
                    "pass allow_unverified=True (`lmrec datasets download --no-verify`) to download it anyway",
                    source=a.url,
                )
    with staging(home, name) as tmp:
        incoming = tmp / ".incoming"
        incoming.mkdir()
        sources: dict[str, Any] = {}
        verified_all = True
        for a in spec.archives:
            try:
                got = fetch(
                    [a.url, *a.mirrors], incoming / a.filename, checksum=a.checksum,
                    allow_unverified=allow_unverified, progress=progress, opener=opener,
                )  # fmt: skip
            except ChecksumError:
                raise
            except DataError as exc:
                if a.required:
                    raise
                sources[a.filename] = {"url": a.url, "skipped": str(exc)}
                continue
            if a.kind == "zip":
                extract_zip(got.path, tmp, source=a.filename)
                got.path.unlink()
            else:
                check_gzip(got.path, source=a.filename)
                os.replace(got.path, tmp / a.filename)
            verified_all &= got.verified
            sources[a.filename] = {
                "url": got.url,
                "checksum": a.checksum,
                "verified": got.verified,
                **got.digests,
            }
        incoming.rmdir()
        stamp = _seal(spec, tmp, sources, archive_verified=verified_all, progress=progress)
        install(tmp, final, replace=force)
        if not tmp.exists():  # ours was installed (not another process's copy that finished first)
            stamp.path = stamp_path(final, name)
            stamp.save()
    return final


def _not_downloadable(spec: DatasetSpec, folder: Path) -> DataError:
    missing = next((f.name for f in spec.files if f.required and _find(folder, f) is None), "")
    return DataError(
        f"{spec.name} cannot be downloaded: there is no official URL for this converted copy; put its files "
        f"in {folder} (source: {spec.local_only})",
        source=str(folder / missing) if missing else str(folder),
    )


def _seal(
    spec: DatasetSpec, folder: Path, sources: dict[str, Any], *, archive_verified: bool, progress: bool | None
) -> Stamp:
    """Check the staged files against per-file pins; the stamp is saved once the folder is installed."""
    by_name = {c: f for f in spec.files for c in f.candidates()}
    stamp = Stamp(folder / STAMP_NAME, sources=sources)
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != STAMP_NAME):
        rel = path.relative_to(folder).as_posix()
        f = by_name.get(rel)
        md5 = file_digest(path, "md5", content=bool(f and f.content), progress=progress)
        if f is not None and f.md5 is not None:
            if md5 != f.md5:
                raise ChecksumError(
                    f"checksum mismatch for {rel} extracted from the {spec.name} download: expected md5:{f.md5}, "
                    f"got md5:{md5} (nothing was installed)",
                    source=rel,
                )
            origin = "pinned"
        else:
            origin = "archive" if archive_verified else "observed"
        stamp.record(rel, path, md5, origin)
    for f in spec.files:
        if f.required and _find(folder, f) is None:
            raise DataError(
                f"the {spec.name} download has no {f.name} (nothing was installed)", source=f.name
            )
    return stamp


# ----------------------------------------------------------------------------------------- loading
def _load_movielens(folder: Path, spec: DatasetSpec, meta: dict[str, Any]) -> Dataset:
    from lmrec.data.loaders.movielens import load_movielens

    return load_movielens(folder, name=spec.name, meta=meta)


def _load_amazon(folder: Path, spec: DatasetSpec, meta: dict[str, Any]) -> Dataset:
    from lmrec.data.loaders.amazon import load_amazon

    reviews = _find(folder, spec.files[0])
    if reviews is None:
        raise DataError(f"missing file {spec.files[0].name}", source=str(folder / spec.files[0].name))
    meta_file = _find(folder, spec.files[1]) if len(spec.files) > 1 else None
    if meta_file is None:
        meta = {**meta, "notes": [*meta.get("notes", []), "no item metadata file: items carry ids only"]}
    return load_amazon(reviews, meta_file, name=spec.name, dataset_meta=meta)


def _load_lastfm(folder: Path, spec: DatasetSpec, meta: dict[str, Any]) -> Dataset:
    from lmrec.data.loaders.lastfm import load_lastfm

    return load_lastfm(folder, name=spec.name, meta=meta)


def _load_converted(folder: Path, spec: DatasetSpec, meta: dict[str, Any]) -> Dataset:
    from lmrec.data.loaders.converted import load_converted

    return load_converted(folder, name=spec.name, meta=meta)


_BUILTIN_LOADERS: dict[str, Loader] = {
    "movielens": _load_movielens,
    "amazon-2014": _load_amazon,
    "amazon-2018": _load_amazon,
    "lastfm": _load_lastfm,
    "converted-tsv": _load_converted,
}


def _offline() -> bool:
    return os.environ.get("LMREC_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    download: bool | None = None,
    *,
    allow_unverified: bool = False,
    progress: bool | None = None,
) -> Dataset:
    """Load a registered dataset, downloading it first if it is missing.

    ``download=None`` downloads a missing dataset unless ``$LMREC_OFFLINE`` is set; ``False`` never
    downloads (a missing copy raises :class:`DataError` naming the missing file); ``True`` always
    may. A present copy is verified against its pinned checksums (cached, see
    :func:`verify_dataset`) and never re-downloaded. ``meta`` records the name, the local folder,
    the official URLs and the MD5 of every file read.
    """
    spec = dataset_info(name)
    folder = dataset_dir(name, data_dir)
    missing = missing_files(name, data_dir)
    if missing:
        if spec.local_only:
            raise _not_downloadable(spec, folder)
        if download is False or (download is None and _offline()):
            raise DataError(
                f"dataset {name!r} is not in {folder} (missing {missing[0]}); run `lmrec datasets download {name}` "
                "or call load_dataset(..., download=True)",
                source=str(folder / missing[0]),
            )
        download_dataset(name, data_dir, allow_unverified=allow_unverified, progress=progress)
    report = verify_dataset(name, data_dir, full=False, scope="used", progress=progress)
    stamp = load_stamp(folder, name)
    meta: dict[str, Any] = {
        "name": spec.name,
        "family": spec.family,
        "source": str(folder),
        "urls": [a.url for a in spec.archives],
        "checksums": report.checksums(),
        "verification": {
            c.name: c.origin if c.status == "ok" else c.status for c in report.checks if c.actual
        },
        "license": spec.license,
        "citation": spec.citation,
        "notes": list(spec.notes),
    }
    if spec.local_only:
        meta["provenance"] = spec.local_only
    if stamp.sources:
        meta["archives"] = stamp.sources
    loader = _CUSTOM_LOADERS.get(name) or _BUILTIN_LOADERS[spec.family]
    return loader(folder, spec, meta)
