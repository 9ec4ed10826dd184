"""MovieLens, every edition on one code path.

Three file layouts exist and the folder's content says which one it is:

* ``u.data`` (ml-100k): tab-separated ``user item rating timestamp``; ``u.item`` is ``|``-separated
  Latin-1 with 19 genre flags; ``u.user`` holds age, gender, occupation and zip code;
* ``ratings.dat`` (ml-1m, ml-10m): ``::``-separated; ``movies.dat`` has ``|``-joined genres;
  ``users.dat`` (ml-1m only) codes age groups and occupations as integers; ``tags.dat`` (ml-10m);
* ``ratings.csv`` (ml-latest-small, ml-20m, ml-25m, ml-32m): CSV with a header, plus ``movies.csv``,
  ``tags.csv`` and optionally ``links.csv``.

Items: ``item_id, title, genres, year`` plus edition extras (``imdb_id``/``tmdb_id`` from links,
``tags``: the most used tags of the movie). Genres are joined with ``|`` as in the newer files;
"no genre" (``unknown`` in ml-100k, ``(no genres listed)`` later) becomes an empty string so that
text built from it carries no placeholder words. The catalogue includes movies nobody rated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from lmrec.data.dataset import Dataset
from lmrec.data.loaders._read import read_bytes, read_delimited, read_text, require_file, top_tags
from lmrec.errors import DataError

#: genre order of the 19 flags in ml-100k's u.item (also listed in u.genre)
GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

#: ml-1m users.dat codes (from its README)
AGE_GROUPS_1M = {1: "under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55", 56: "56+"}
OCCUPATIONS_1M = {
    0: "other", 1: "academic/educator", 2: "artist", 3: "clerical/admin", 4: "college/grad student",
    5: "customer service", 6: "doctor/health care", 7: "executive/managerial", 8: "farmer", 9: "homemaker",
    10: "K-12 student", 11: "lawyer", 12: "programmer", 13: "retired", 14: "sales/marketing", 15: "scientist",
    16: "self-employed", 17: "technician/engineer", 18: "tradesman/craftsman", 19: "unemployed", 20: "writer",
}  # fmt: skip
_GENDER = {"M": "male", "F": "female"}
_NO_GENRE = {"unknown", "(no genres listed)"}
_YEAR = re.compile(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$")

RATING_SCHEMA = {"user_id": pl.Int64, "item_id": pl.Int64, "rating": pl.Float32, "timestamp": pl.Int64}
_CSV_DTYPES = {"userId": pl.Int64, "movieId": pl.Int64, "rating": pl.Float32, "timestamp": pl.Int64}
_CSV_NAMES = {"userId": "user_id", "movieId": "item_id"}


def detect_layout(path: Path) -> str:
    """``"100k"``, ``"dat"`` or ``"csv"`` from the files in ``path``."""
    if (path / "u.data").exists():
        return "100k"
    if (path / "ratings.dat").exists():
        return "dat"
    if (path / "ratings.csv").exists():
        return "csv"
    raise DataError(
        "no MovieLens ratings file here (looked for u.data, ratings.dat, ratings.csv)",
        source=str(path / "ratings.csv"),
    )


def load_movielens(
    path: str | Path, *, name: str | None = None, meta: Mapping[str, Any] | None = None
) -> Dataset:
    """Load any MovieLens edition from an extracted folder (the layout is detected from its files)."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"MovieLens folder {path} does not exist", source=str(path))
    layout = detect_layout(path)
    if layout == "100k":
        inter, items, users, tags = _load_100k(path)
    elif layout == "dat":
        inter, items, users, tags = _load_dat(path)
    else:
        inter, items, users, tags = _load_csv(path)
    if tags is not None and tags.height:
        items = items.join(top_tags(tags), on="item_id", how="left").with_columns(
            pl.col("tags").fill_null("")
        )
    return Dataset.from_frames(
        inter,
        items=items,
        users=users,
        tags=tags,
        name=name or path.name,
        source=str(path),
        meta=meta,
        require_timestamp=True,
    )


# ------------------------------------------------------------------------------------------ shared
def _genres(names: list[str]) -> str:
    return "|".join(g for g in names if g and g not in _NO_GENRE)


def _year(title: str) -> int | None:
    m = _YEAR.search(title)
    return int(m.group(1)) if m else None


def _items_frame(
    ids: list[int], titles: list[str], genres: list[str], extra: Mapping[str, Any] | None = None
) -> pl.DataFrame:
    cols: dict[str, Any] = {
        "item_id": pl.Series(ids, dtype=pl.Int64),
        "title": pl.Series(titles, dtype=pl.String),
        "genres": pl.Series(genres, dtype=pl.String),
        "year": pl.Series([_year(t) for t in titles], dtype=pl.Int32),
    }
    for k, v in (extra or {}).items():
        cols[k] = v
    return pl.DataFrame(cols)


def _split_lines(
    text: str, path: Path, sep: str, min_fields: int, maxsplit: int = -1
) -> list[tuple[int, list[str]]]:
    out = []
    # split("\n"), not splitlines(): Latin-1 text may hold U+0085 (byte 0x85), which splitlines() takes
    # for a line break.
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        parts = line.split(sep, maxsplit)
        if len(parts) < min_fields:
            raise DataError(
                f"line {lineno} has {len(parts)} fields, expected {min_fields}: {line[:80]!r}",
                source=str(path),
            )
        out.append((lineno, parts))
    return out


def _int(value: str, path: Path, lineno: int, column: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise DataError(
            f"non-integer value {value!r} at line {lineno}", source=str(path), column=column
        ) from None


def _profile(age: str, gender: str, occupation: str) -> str:
    parts = [f"age {age}" if age else "", _GENDER.get(gender, gender), occupation]
    text = ", ".join(p for p in parts if p)
    return text[:1].upper() + text[1:] + "." if text else ""


# ---------------------------------------------------------------------------------------- ml-100k
def _load_100k(path: Path) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None, None]:
    inter = read_delimited(
        path / "u.data", separator="\t", names=list(RATING_SCHEMA), dtypes=RATING_SCHEMA, quote_char=None,
        context=("user_id", "item_id"),
    )  # fmt: skip

    genre_names = list(GENRES_100K)
    if (path / "u.genre").exists():
        listed = [p[0] for _, p in _split_lines(read_text(path / "u.genre"), path / "u.genre", "|", 2)]
        if len(listed) == len(GENRES_100K):
            genre_names = listed
    item_path = require_file(path / "u.item", "movie titles and genres")
    ids, titles, genres, released, urls = [], [], [], [], []
    n_flags = len(genre_names)
    for lineno, parts in _split_lines(read_text(item_path), item_path, "|", 5 + n_flags):
        ids.append(_int(parts[0], item_path, lineno, "movie id"))
        titles.append(parts[1].strip())
        released.append(parts[2] or None)
        urls.append(parts[4] or None)
        flags = parts[5 : 5 + n_flags]
        genres.append(_genres([g for g, f in zip(genre_names, flags, strict=True) if f.strip() == "1"]))
    items = _items_frame(
        ids, titles, genres,
        {"release_date": pl.Series(released, dtype=pl.String), "imdb_url": pl.Series(urls, dtype=pl.String)},
    )  # fmt: skip

    users = None
    user_path = path / "u.user"
    if user_path.exists():
        rows = _split_lines(read_text(user_path), user_path, "|", 5)
        uid = [_int(p[0], user_path, n, "user id") for n, p in rows]
        age = [_int(p[1], user_path, n, "age") for n, p in rows]
        users = pl.DataFrame(
            {
                "user_id": pl.Series(uid, dtype=pl.Int64),
                "age": pl.Series(age, dtype=pl.Int32),
                "gender": [p[2] for _, p in rows],
                "occupation": [p[3] for _, p in rows],
                "zip_code": [p[4] for _, p in rows],
                "profile": [_profile(p[1], p[2], p[3]) for _, p in rows],
            }
        )
    return inter, items, users, None


# ------------------------------------------------------------------------------- ml-1m and ml-10m
def _load_dat(path: Path) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None, pl.DataFrame | None]:
    # polars has no multi-character separator; numbers never contain "::" so turning it into a tab is
    # exact for ratings (and ~3x faster than splitting 10M lines in Python).
    ratings_path = require_file(path / "ratings.dat", "ratings")
    inter = read_delimited(
        read_bytes(ratings_path).replace(b"::", b"\t"), label=str(ratings_path), separator="\t",
        names=list(RATING_SCHEMA), dtypes=RATING_SCHEMA, quote_char=None, context=("user_id", "item_id"),
    )  # fmt: skip

    movies_path = require_file(path / "movies.dat", "movie titles and genres")
    ids, titles, genres = [], [], []
    for lineno, parts in _split_lines(read_text(movies_path), movies_path, "::", 2, 1):
        title, sep, genre = parts[1].rpartition("::")
        if not sep:
            raise DataError(f"line {lineno} has no genres field: {parts[1][:80]!r}", source=str(movies_path))
        ids.append(_int(parts[0], movies_path, lineno, "MovieID"))
        titles.append(title.strip())
        genres.append(_genres(genre.strip().split("|")))
    items = _items_frame(ids, titles, genres)

    users = None
    users_path = path / "users.dat"
    if users_path.exists():
        rows = _split_lines(read_text(users_path), users_path, "::", 5)
        age_code = [_int(p[2], users_path, n, "Age") for n, p in rows]
        occ_code = [_int(p[3], users_path, n, "Occupation") for n, p in rows]
        age_group = [AGE_GROUPS_1M.get(a, str(a)) for a in age_code]
        occupation = [OCCUPATIONS_1M.get(o, str(o)) for o in occ_code]
        gender = [p[1] for _, p in rows]
        users = pl.DataFrame(
            {
                "user_id": pl.Series([_int(p[0], users_path, n, "UserID") for n, p in rows], dtype=pl.Int64),
                "gender": gender,
                "age_group": age_group,
                "occupation": occupation,
                "zip_code": [p[4].strip() for _, p in rows],
                "profile": [_profile(a, g, o) for a, g, o in zip(age_group, gender, occupation, strict=True)],
            }
        )

    tags = None
    tags_path = path / "tags.dat"
    if tags_path.exists():
        t_user, t_item, t_tag, t_ts = [], [], [], []
        for lineno, parts in _split_lines(read_text(tags_path), tags_path, "::", 3, 2):
            tag, sep, ts = parts[2].rpartition("::")
            if not sep:
                raise DataError(
                    f"line {lineno} has no timestamp field", source=str(tags_path), column="timestamp"
                )
            t_user.append(_int(parts[0], tags_path, lineno, "UserID"))
            t_item.append(_int(parts[1], tags_path, lineno, "MovieID"))
            t_tag.append(tag)
            t_ts.append(_int(ts, tags_path, lineno, "timestamp"))
        tags = pl.DataFrame(
            {
                "user_id": pl.Series(t_user, dtype=pl.Int64),
                "item_id": pl.Series(t_item, dtype=pl.Int64),
                "tag": pl.Series(t_tag, dtype=pl.String),
                "timestamp": pl.Series(t_ts, dtype=pl.Int64),
            }
        )
    return inter, items, users, tags


# ------------------------------------------------------------------------- ml-latest, 20m, 25m, 32m
def _load_csv(path: Path) -> tuple[pl.DataFrame, pl.DataFrame, None, pl.DataFrame | None]:
    ratings = read_delimited(
        path / "ratings.csv", dtypes=_CSV_DTYPES, required=list(_CSV_DTYPES), context=("userId", "movieId")
    )
    inter = ratings.select(list(_CSV_DTYPES)).rename(_CSV_NAMES)

    movies_path = require_file(path / "movies.csv", "movie titles and genres")
    movies = read_delimited(
        movies_path, dtypes={"movieId": pl.Int64, "title": pl.String, "genres": pl.String},
        required=["movieId", "title", "genres"],
    )  # fmt: skip
    items = movies.select(
        pl.col("movieId").alias("item_id"),
        pl.col("title").str.strip_chars(),
        pl.col("genres")
        .fill_null("")
        .str.split("|")
        .list.eval(pl.element().filter(~pl.element().is_in(list(_NO_GENRE))))
        .list.join("|")
        .alias("genres"),
    ).with_columns(
        pl.col("title")
        .str.extract(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$", 1)
        .cast(pl.Int32, strict=False)
        .alias("year")
    )
    links_path = path / "links.csv"
    if links_path.exists():
        links = read_delimited(
            links_path,
            dtypes={"movieId": pl.Int64, "imdbId": pl.String, "tmdbId": pl.String},
            required=["movieId"],
        )
        keep = [c for c in ("imdbId", "tmdbId") if c in links.columns]
        links = links.select(pl.col("movieId").alias("item_id"), *[pl.col(c).alias(_snake(c)) for c in keep])
        items = items.join(links, on="item_id", how="left", maintain_order="left")

    tags = None
    tags_path = path / "tags.csv"
    if tags_path.exists():
        tag_dtypes = {"userId": pl.Int64, "movieId": pl.Int64, "tag": pl.String, "timestamp": pl.Int64}
        raw = read_delimited(
            tags_path, dtypes=tag_dtypes, required=list(tag_dtypes), context=("userId", "movieId")
        )
        tags = raw.select(list(tag_dtypes)).rename(_CSV_NAMES).with_columns(pl.col("tag").fill_null(""))
    return inter, items, None, tags


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()
