"""Your own data as a named dataset: ``lmrec datasets add NAME --interactions events.csv ...``.

:func:`add_dataset` reads the files (CSV, TSV, Parquet or JSON lines, see :mod:`.tabular`), renames
the mapped columns, validates everything the way :meth:`Dataset.from_frames` does (every error is one
line naming the file, the column and the row or id), then copies the files into ``<home>/NAME/``
beside a manifest, ``lmrec-dataset.toml``, that pins each copy's MD5. From then on NAME resolves
like a catalogue name (``load_dataset``, ``lmrec datasets info``, ``evaluate``, ``train``, ``tune``):
:func:`find_own` turns the manifest into a :class:`DatasetSpec` of family ``own`` whose pinned
checksums :mod:`.verify` checks on every load, and :func:`load_own` reads the copies.

Where: ``--data-dir`` if given, else the user data home (:func:`._home.user_data_home`), which is
searched after the data home (``$LMREC_DATA_HOME``), so a read-only shared data home and your own
datasets coexist. The files are copied, not linked: the dataset stays what was validated even if
the originals change.

Column mapping (``columns``, ``--map user_id=customer,item_id=sku,timestamp=ts``): canonical name ->
file column. Interaction names (``user_id``, ``item_id``, ``timestamp``, ``weight``, ``rating``,
``event``) must be columns of the interactions file; every entry is applied to each other table
that has that column (``item_id=sku`` renames ``sku`` in the items file too), and an entry that no
file has is an error.

Item pictures (``images``, ``--images DIR``): a folder of files named ``<item_id>.jpg`` (or .png,
...; see :mod:`lmrec.data.images`). Every picture is decoded once; the usable ones are copied into
``images/`` beside a list of their MD5s (``images_md5.txt``, itself pinned in the manifest), and a
missing or unreadable picture is reported by item id (a warning) without stopping the add. Each load
checks the pictures against the list the same way.

Item text (``text_columns``, ``--text-columns title,description``): the language models read the
item columns ``title``, ``name``, ``brand``, ``genres``, ``categories`` and ``description`` when they
are there (map a column onto one of these names to have it read as such). Listed columns must
exist in the items table; a listed column with another name (``blurb``) is appended to the
``description`` text, in the order given.
"""

from __future__ import annotations

import functools
import re
import shutil
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import tomli_w

from lmrec._atomic import swap_dir
from lmrec.data.dataset import Dataset
from lmrec.data.images import ItemImages, read_md5_list
from lmrec.data.loaders._home import data_home, search_homes, user_data_home
from lmrec.data.loaders.catalogue import DatasetSpec, FileSpec
from lmrec.data.loaders.tabular import _SUFFIXES, _md5, _parse_timestamps, infer_format, read_table
from lmrec.data.validate import check_id_column
from lmrec.errors import DataError, LmrecError

#: the manifest file in an added dataset's folder
MANIFEST = "lmrec-dataset.toml"
FAMILY = "own"
_MANIFEST_VERSION = 1
#: the tables a dataset may have, interactions first (the only required one)
ROLES = ("interactions", "items", "users", "reviews")
#: canonical interaction columns: a mapping to one of these must name a column of the interactions
INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp", "weight", "rating", "event")
#: item columns the profile builder reads by default (``ProfileConfig.fields`` less derived fields)
PROFILE_FIELDS = ("title", "name", "brand", "genres", "categories", "description")
#: the id columns each side table must have
_KEYS = {"items": ("item_id",), "users": ("user_id",), "reviews": ("user_id", "item_id")}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


# -------------------------------------------------------------------------------------- reading
def _mapped(frame: pl.DataFrame, columns: Mapping[str, str], path: Path) -> tuple[pl.DataFrame, set[str]]:
    """``frame`` with every mapping entry whose file column it has renamed; the file columns used."""
    hits = {src: dst for dst, src in columns.items() if src in frame.columns and src != dst}
    for src, dst in hits.items():
        if dst in frame.columns and dst not in hits:
            raise DataError(
                f"cannot map {dst}={src}: the file already has a {dst!r} column", source=str(path), column=src
            )
    return frame.rename(hits), set(hits) | {c for c in columns.values() if c in frame.columns}


def _side_ids(frame: pl.DataFrame, col: str, like: pl.DataType, role: str, path: Path) -> pl.DataFrame:
    """Checked ids of a side table, as text when the interactions' ids are text."""
    frame = check_id_column(frame, col, role, str(path))
    if frame[col].dtype != like and like == pl.String:
        frame = frame.with_columns(pl.col(col).cast(pl.String))
    if frame[col].dtype != like:
        raise DataError(
            f"{role}: {col} values are {frame[col].dtype} but the interactions' are {like}",
            source=str(path),
            column=col,
        )
    if role != "reviews" and frame[col].is_duplicated().any():
        dup = frame[col].filter(frame[col].is_duplicated())[0]
        raise DataError(f"{role}: {col} {dup!r} is listed twice", source=str(path), column=col)
    return frame


def _fold_text(items: pl.DataFrame, text_columns: Sequence[str], path: Path) -> pl.DataFrame:
    for c in text_columns:
        if c not in items.columns:
            raise DataError(
                f"text column {c!r} is not in the items table (columns: {', '.join(items.columns)})",
                source=str(path),
                column=c,
            )
    extra = [c for c in text_columns if c not in PROFILE_FIELDS]
    if not extra:
        return items
    parts = [c for c in ("description", *extra) if c in items.columns]
    text = pl.concat_str([pl.col(c).cast(pl.String) for c in parts], separator=". ", ignore_nulls=True)
    return items.with_columns(text.alias("description"))


def read_own(
    files: Mapping[str, str | Path],
    columns: Mapping[str, str] | None = None,
    text_columns: Sequence[str] = (),
    *,
    name: str,
    meta: Mapping[str, Any] | None = None,
) -> Dataset:
    """The tables of an own dataset (``{"interactions": path, "items": path, ...}``) as a Dataset.

    Every problem is a one-line :class:`DataError` naming the file and the column.
    """
    columns = dict(columns or {})
    paths = {role: Path(p) for role, p in files.items() if p is not None}
    unknown = set(paths) - set(ROLES)
    if unknown or "interactions" not in paths:
        raise LmrecError(f"tables are {', '.join(ROLES)} (interactions required), got {', '.join(paths)}")
    inter_path = paths["interactions"]
    inter_map = {k: v for k, v in columns.items() if k in INTERACTION_COLUMNS}
    inter = read_table(inter_path, columns=inter_map)
    used = set(inter_map.values())
    for col in ("user_id", "item_id"):
        if col not in inter.columns:
            raise DataError(
                f"no {col!r} column; map one with --map {col}=<column> (columns: {', '.join(inter.columns)})",
                source=str(inter_path),
                column=col,
            )
        inter = check_id_column(inter, col, "interactions", str(inter_path))
    inter = _parse_timestamps(inter, str(inter_path), None)
    side: dict[str, pl.DataFrame] = {}
    for role in ROLES[1:]:
        path = paths.get(role)
        if path is None:
            continue
        frame, hit = _mapped(read_table(path), columns, path)
        used |= hit
        for col in _KEYS[role]:
            if col not in frame.columns:
                raise DataError(
                    f"{role} table has no {col!r} column; map one with --map {col}=<column> "
                    f"(columns: {', '.join(frame.columns)})",
                    source=str(path),
                    column=col,
                )
            frame = _side_ids(frame, col, inter[col].dtype, role, path)
        if role == "reviews":
            if "text" not in frame.columns:
                raise DataError(
                    f"reviews table has no 'text' column; map one with --map text=<column> "
                    f"(columns: {', '.join(frame.columns)})",
                    source=str(path),
                    column="text",
                )
            frame = _parse_timestamps(frame, str(path), None)
        side[role] = frame
    unused = [f"{k}={v}" for k, v in columns.items() if v not in used]
    if unused:
        raise LmrecError(f"--map {unused[0]}: no file has a column {unused[0].split('=', 1)[1]!r}")
    if text_columns:
        if "items" not in side:
            raise LmrecError("--text-columns names item columns: give the items table with --items")
        side["items"] = _fold_text(side["items"], text_columns, paths["items"])
    meta = {**(meta or {}), "columns": columns, "text_columns": list(text_columns)}
    return Dataset.from_frames(
        inter,
        items=side.get("items"),
        users=side.get("users"),
        reviews=side.get("reviews"),
        name=name,
        source=str(inter_path),
        meta=meta,
    )


# ------------------------------------------------------------------------------------- manifest
def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise LmrecError(
            f"dataset name {name!r}: use letters, digits, '.', '_' and '-' (starting with a letter or digit)"
        )
    return name


def _suffix(path: Path) -> str:
    """``.csv``, ``.tsv.gz``, ...: the format suffix the copy keeps, so it is read the same way."""
    infer_format(path)  # an unknown format fails here, naming the file
    low = path.name.lower()
    base = low.removesuffix(".gz")
    return next(s for s in _SUFFIXES if base.endswith(s)) + (".gz" if low != base else "")


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DataError(f"damaged dataset manifest ({exc})", source=str(path)) from None
    files = raw.get("files")
    if not isinstance(files, list) or not any(f.get("role") == "interactions" for f in files):
        raise DataError("damaged dataset manifest: no interactions file listed", source=str(path))
    return raw


@functools.lru_cache(maxsize=64)
def _spec(path: str, mtime_ns: int) -> DatasetSpec:
    manifest = Path(path)
    raw = _read_manifest(manifest)
    files = tuple(FileSpec(f["name"], md5=f.get("md5"), size=f.get("size")) for f in raw["files"])
    total = sum(int(f.get("size") or 0) for f in raw["files"])
    images = raw.get("images", {})
    if images:
        files += (FileSpec(images["md5_list"], md5=images.get("md5_list_md5")),)
        total += int(images.get("size") or 0)
    roles = ", ".join(f["role"] for f in raw["files"])
    sources = "; ".join(f"{f['role']} {f.get('source', '?')}" for f in raw["files"])
    return DatasetSpec(
        name=manifest.parent.name,
        family=FAMILY,
        description=raw.get("description") or f"your own data ({roles})",
        size=f"{total / 1e6:.1f} MB" if total >= 100_000 else f"{total / 1e3:.1f} kB",
        archives=(),
        files=files,
        license="your own data",
        stats={k: int(v) for k, v in raw.get("stats", {}).items()},
        notes=(f"added {raw.get('added', '')} with `lmrec datasets add`",),
        local_only=f"added with `lmrec datasets add` from {sources}",
        folder=str(manifest.parent),
        images=images.get("folder", ""),
        images_md5=images.get("md5_list", ""),
    )


def find_own(name: str, data_dir: str | Path | None = None) -> DatasetSpec | None:
    """The spec of an added dataset ``name`` (data home first, then user data home), or None."""
    if not _NAME.match(name):
        return None
    for home in search_homes(data_dir):
        manifest = home / name / MANIFEST
        try:
            mtime = manifest.stat().st_mtime_ns
        except OSError:
            continue
        return _spec(str(manifest), mtime)
    return None


def own_names(data_dir: str | Path | None = None) -> list[str]:
    """Names of the added datasets found in the search homes, sorted, first home first."""
    names: list[str] = []
    for home in search_homes(data_dir):
        try:
            children = sorted(home.iterdir())
        except OSError:
            continue
        names += [c.name for c in children if _NAME.match(c.name) and (c / MANIFEST).is_file()]
    return list(dict.fromkeys(names))


def load_own(folder: Path, spec: DatasetSpec, meta: dict[str, Any]) -> Dataset:
    """Read an added dataset's copies as its manifest describes them (the registry's loader)."""
    raw = _read_manifest(folder / MANIFEST)
    files = {f["role"]: folder / f["name"] for f in raw["files"]}
    data = read_own(files, raw.get("columns", {}), raw.get("text_columns", ()), name=spec.name, meta=meta)
    if spec.images:
        data = data.with_images(folder / spec.images, md5s=read_md5_list(folder / spec.images_md5))
    return data


# ------------------------------------------------------------------------------------------ add
def add_dataset(
    name: str,
    interactions: str | Path,
    *,
    items: str | Path | None = None,
    users: str | Path | None = None,
    reviews: str | Path | None = None,
    columns: Mapping[str, str] | None = None,
    text_columns: Sequence[str] = (),
    images: str | Path | None = None,
    data_dir: str | Path | None = None,
    description: str = "",
    overwrite: bool = False,
) -> Path:
    """Validate the files, copy them into ``<home>/name/`` with a checksummed manifest; the folder.

    ``home`` is ``data_dir`` when given, else the user data home. A name the catalogue (or
    :func:`register_dataset`) already uses is refused, and so is an existing dataset of that name
    in ``home`` unless ``overwrite``.
    """
    from lmrec.data.loaders.registry import builtin_names

    check_name(name)
    if name in builtin_names():
        raise LmrecError(f"{name!r} is a built-in dataset name; choose another name for your data")
    sources = {
        role: Path(p).expanduser().resolve()
        for role, p in zip(ROLES, (interactions, items, users, reviews), strict=True)
        if p is not None
    }
    columns = dict(columns or {})
    data = read_own(sources, columns, text_columns, name=name)  # validates before anything is written
    pictures = None
    if images is not None:
        # problems with single pictures are reported (by item id) here, and those are not copied
        pictures = ItemImages.from_folder(
            Path(images).expanduser().resolve(), data.item_vocab.to_series().to_list()
        )
    home = data_home(data_dir) if data_dir is not None else user_data_home()
    target = home / name
    if target.exists() and not (target / MANIFEST).is_file():
        raise LmrecError(f"{target} exists and is not a dataset added by lmrec; choose another name")
    if target.exists() and not overwrite:
        raise LmrecError(f"dataset {name!r} already exists at {target}; pass --force to replace it")
    try:
        home.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=home))
    except OSError as exc:
        raise LmrecError(
            f"cannot write to {home} ({exc.strerror or exc}); pass --data-dir or set LMREC_USER_DATA_HOME"
        ) from None
    try:
        entries = []
        for role, src in sources.items():
            copy = staging / f"{role}{_suffix(src)}"
            shutil.copyfile(src, copy)
            entries.append(
                {"role": role, "name": copy.name, "md5": _md5(copy), "size": copy.stat().st_size,
                 "source": str(src)}
            )  # fmt: skip
        image_entry: dict[str, Any] = {}
        if pictures is not None:
            (staging / "images").mkdir()
            lines, size = [], 0
            for src in pictures.paths.values():
                shutil.copyfile(src, staging / "images" / src.name)
                lines.append(f"{_md5(staging / 'images' / src.name)}  {src.name}\n")
                size += src.stat().st_size
            (staging / "images_md5.txt").write_text("".join(lines), encoding="utf-8")
            image_entry = {
                "folder": "images", "md5_list": "images_md5.txt", "md5_list_md5": _md5(staging / "images_md5.txt"),
                "n": len(pictures), "size": size, "source": pictures.source,
                "problems": {str(k): v for k, v in pictures.problems.items()},
            }  # fmt: skip
        manifest: dict[str, Any] = {
            "name": name,
            "manifest_version": _MANIFEST_VERSION,
            "added": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "stats": {"interactions": data.n_interactions, "users": data.n_users, "items": data.n_items},
            "columns": columns,
            "text_columns": list(text_columns),
            "files": entries,
        }
        if image_entry:
            manifest["images"] = image_entry
        if description:
            manifest["description"] = description
        header = (
            "# An lmrec dataset added with `lmrec datasets add`: the files beside this manifest, their\n"
            "# MD5s (checked on every load) and how their columns map to lmrec's names.\n"
        )
        (staging / MANIFEST).write_text(header + tomli_w.dumps(manifest), encoding="utf-8")
        swap_dir(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def remove_dataset(name: str, data_dir: str | Path | None = None) -> Path:
    """Delete an added dataset's folder (only one with a manifest: never a catalogue copy)."""
    spec = find_own(check_name(name), data_dir)
    if spec is None:
        homes = ", ".join(map(str, search_homes(data_dir)))
        raise LmrecError(f"no dataset {name!r} added with `lmrec datasets add` in {homes}")
    folder = Path(spec.folder)
    shutil.rmtree(folder)
    return folder


__all__ = [
    "FAMILY",
    "MANIFEST",
    "PROFILE_FIELDS",
    "add_dataset",
    "find_own",
    "load_own",
    "own_names",
    "read_own",
    "remove_dataset",
]
