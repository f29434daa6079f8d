"""MovieLens (GroupLens): ``ml-100k``, ``ml-1m``, ``ml-20m``.

What they are
    Explicit movie ratings collected by the MovieLens recommender (GroupLens Research,
    University of Minnesota). famekit reads every rating, whatever its value, as an interaction
    and builds one chronological sequence per user.

    =======  =======  ======  ============  ==========================  ====================
    name     users    movies  ratings       files in the zip            metadata
    =======  =======  ======  ============  ==========================  ====================
    ml-100k  943      1,682   100,000       ``u.data``, ``u.item``,...  title, year, genres,
                                                                        release date, IMDb
                                                                        URL; user age, gender,
                                                                        occupation, zip
    ml-1m    6,040    3,706   1,000,209     ``::``-separated ``.dat``   title, year, genres;
                                            (ISO-8859-1)                user demographics
    ml-20m   138,493  26,744  20,000,263    ``.csv`` with header        title, year, genres
    =======  =======  ======  ============  ==========================  ====================

Where they come from
    The official zips, https://files.grouplens.org/datasets/movielens/{ml-100k,ml-1m,ml-20m}.zip,
    downloaded by famekit. GroupLens publishes no sha256 of the zips; famekit checks every
    member's CRC (zip integrity) and the sha256 of the members whose bytes the provenance
    pinned (all ml-100k files; ml-1m's ``movies.dat``, ``users.dat`` and ``README``). A member
    famekit parses without a recorded hash (ml-1m's ``ratings.dat``, ml-20m's ``ratings.csv``
    and ``movies.csv``) is refused unless the user opts in with ``FAMEKIT_ALLOW_UNVERIFIED=1``.

Sequences and the tie rule
    Ratings are sorted by (user, timestamp) with a **stable** sort: ratings of one user with
    the same timestamp keep their order in the ratings file (ties are frequent: in ml-100k
    75,772 of the 100,000 ratings share their timestamp with another rating of the same user).
    Users appear in ascending user id; user ids are kept.

Item ids
    * ``ml-100k`` keeps the MovieLens movie ids (1..1682, all rated, contiguous).
    * ``ml-1m`` and ``ml-20m`` renumber densely: ``item_id`` = 1 + the rank of the MovieLens
      movie id among the movie ids that have at least one rating, in ascending order (so the
      order of ids is preserved and unrated movies get no embedding row). The original id is
      the ``movielens_movie_id`` column.

Metadata columns: ``title`` (as published, year included), ``year`` (the four digits in
parentheses at the end of the title; missing when absent), ``genres`` (list; ml-20m's
"(no genres listed)" becomes an empty list), ``n_ratings``.

Licence in one line
    GroupLens: research use only, no commercial use, no redistribution without permission;
    cite F. M. Harper & J. A. Konstan, "The MovieLens Datasets: History and Context", ACM TiiS
    5(4), 2015.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from famekit.datasets.core import SeqDataset
from famekit.datasets.fetch import RemoteFile, Source, load_source
from famekit.errors import DataFormatError

__all__ = [
    "SOURCES",
    "load_ml1m",
    "load_ml20m",
    "load_ml100k",
    "sequences_from_ratings",
    "title_year",
]

BUILD_VERSION = "movielens-1"
GROUPLENS = "https://files.grouplens.org/datasets/movielens"
TIE_RULE = ("stable sort by (user, timestamp): ratings with equal timestamps keep their order "
            "in the ratings file")
DENSE_ID_RULE = ("item_id = 1 + rank of the MovieLens movie id among the rated movie ids "
                 "(ascending); original id in column movielens_movie_id")

_LICENCE = ("GroupLens MovieLens: research use only, no commercial use, no redistribution "
            "without permission")
_CITATION = ("F. M. Harper & J. A. Konstan, The MovieLens Datasets: History and Context, "
             "ACM TiiS 5(4), 2015")


def _zip(name: str, members: dict[str, str], parsed: tuple[str, ...]) -> Source:
    remote = RemoteFile(f"{name}.zip", f"{GROUPLENS}/{name}.zip", None, None,
                        {f"{name}/{k}": v for k, v in members.items()},
                        origin=f"GroupLens {name}.zip",
                        parsed=tuple(f"{name}/{k}" for k in parsed))
    return Source(name, (remote,), _LICENCE, _CITATION)


SOURCES: dict[str, Source] = {
    # Member hashes from the provenance notes (file sizes identical to the official archive).
    "ml-100k": _zip("ml-100k", {
        "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
        "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
        "u.genre": "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
        "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
        "u.info": "5b0a40b2e47a729ee6203063f6dcf8790c2e63f5a18663e6ee318a72c5f3c27b",
        "u.occupation": "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d",
        "README": "4883b8cf340ed0059971b33f56ad3adc88a40792108ebca3d24aafc4c82e8b52",
    }, parsed=("u.data", "u.item", "u.genre", "u.user")),
    "ml-1m": _zip("ml-1m", {
        "movies.dat": "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9",
        "users.dat": "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3",
        "README": "2d5ddce86ccbd247207456165827b4b9ddf27282bca93807d4c763e28414f133",
    }, parsed=("ratings.dat", "movies.dat", "users.dat")),  # no public record of ratings.dat
    "ml-20m": _zip("ml-20m", {}, parsed=("ratings.csv", "movies.csv")),  # no record of either
}

# ml-100k's counts (u.info); the pinned member hashes make any other result a parser bug.
ML100K_COUNTS = (943, 1682, 100000)

# ml-1m README: age codes and occupation codes.
ML1M_AGE_GROUPS = {1: "Under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49",
                   50: "50-55", 56: "56+"}
ML1M_OCCUPATIONS = (
    "other or not specified", "academic/educator", "artist", "clerical/admin",
    "college/grad student", "customer service", "doctor/health care", "executive/managerial",
    "farmer", "homemaker", "K-12 student", "lawyer", "programmer", "retired",
    "sales/marketing", "scientist", "self-employed", "technician/engineer",
    "tradesman/craftsman", "unemployed", "writer",
)

_YEAR_AT_END = re.compile(r"\((\d{4})\)\s*$")


def title_year(title: str | None) -> int | None:
    """The year in parentheses at the end of a MovieLens title (``Toy Story (1995)``)."""
    if not title:
        return None
    match = _YEAR_AT_END.search(title)
    return int(match.group(1)) if match else None


# ---------------------------------------------------------------------------------- loaders
def load_ml100k(cache_dir=None, **options) -> SeqDataset:
    """MovieLens 100K with its original ids, titles, years, genres and user demographics."""
    return load_source("ml-100k", BUILD_VERSION, SOURCES["ml-100k"], _build_ml100k,
                       cache_dir, options)


def load_ml1m(cache_dir=None, **options) -> SeqDataset:
    """MovieLens 1M (all 1,000,209 ratings), movie ids renumbered densely."""
    return load_source("ml-1m", BUILD_VERSION, SOURCES["ml-1m"], _build_ml1m,
                       cache_dir, options)


def load_ml20m(cache_dir=None, **options) -> SeqDataset:
    """MovieLens 20M (20,000,263 ratings), movie ids renumbered densely."""
    return load_source("ml-20m", BUILD_VERSION, SOURCES["ml-20m"], _build_ml20m,
                       cache_dir, options)


# ---------------------------------------------------------------------------------- shared
def sequences_from_ratings(users: np.ndarray, items: np.ndarray, timestamps: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item ids in sequence order, offsets, user ids) from parallel rating arrays.

    A stable sort on (user, timestamp): equal timestamps of one user keep their file order.
    Vectorised, so ML-20M's 20M ratings need no Python loop: when user and timestamp ranges
    fit, the two keys are packed into one int64 and sorted once (about twice as fast as
    ``np.lexsort`` on 20M rows); otherwise ``np.lexsort`` (also stable) does it.
    """
    users = np.asarray(users)
    timestamps = np.asarray(timestamps, dtype=np.int64)
    if len(users) == 0:
        return (np.zeros(0, dtype=np.int32), np.zeros(1, dtype=np.int64),
                np.zeros(0, dtype=np.int64))
    t_min, t_span = int(timestamps.min()), int(timestamps.max()) - int(timestamps.min()) + 1
    u_min, u_span = int(users.min()), int(users.max()) - int(users.min()) + 1
    if u_span * t_span < 2**62:
        # Built in place: one int64 array of temporary memory, not three.
        key = users.astype(np.int64)
        key -= u_min
        key *= t_span
        key += timestamps
        key -= t_min
        order = np.argsort(key, kind="stable")
        del key
    else:
        order = np.lexsort((timestamps, users))  # the last key is the primary key
    sorted_users = users[order]
    # [n_users - 1] first row of every user but the first (a bool mask, not an int64 diff)
    starts = np.flatnonzero(sorted_users[1:] != sorted_users[:-1]) + 1
    offsets = np.concatenate(([0], starts, [len(sorted_users)])).astype(np.int64)
    user_ids = sorted_users[offsets[:-1]].astype(np.int64)
    del sorted_users
    return np.ascontiguousarray(items[order], dtype=np.int32), offsets, user_ids


def _member(archive: zipfile.ZipFile, zip_path: Path, name: str) -> bytes:
    try:
        return archive.read(name)
    except KeyError:
        raise DataFormatError(zip_path, None, f"the zip has no member {name}",
                              "delete the file from the cache and run again") from None


def _read_table(raw: bytes | io.BufferedIOBase, where: str, **kwargs) -> pd.DataFrame:
    """pandas' C parser, its errors turned into DataFormatError naming the member."""
    source = io.BytesIO(raw) if isinstance(raw, bytes) else raw
    try:
        return pd.read_csv(source, engine="c", **kwargs)
    except (ValueError, pd.errors.ParserError) as e:
        raise DataFormatError(where, None, f"cannot parse ({str(e).splitlines()[0]})",
                              "delete the downloaded zip from the cache and run again") from None


def _dense_items(movie_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dense 1-based item ids, sorted distinct movie ids): the documented renumbering.

    A lookup table over 0..max id (MovieLens ids stay below ~200k) instead of ``np.unique``,
    which would sort all 20M ratings of ML-20M once more.
    """
    movie_ids = np.asarray(movie_ids)
    if len(movie_ids) and movie_ids.min() >= 0 and movie_ids.max() < 50_000_000:
        present = np.zeros(int(movie_ids.max()) + 1, dtype=bool)
        present[movie_ids] = True
        rank = np.cumsum(present, dtype=np.int32)  # rank[m] = 1-based rank of movie m
        return rank[movie_ids], np.flatnonzero(present)
    distinct, inverse = np.unique(movie_ids, return_inverse=True)
    return (inverse + 1).astype(np.int32), distinct


def _info(name: str, id_rule: str, notes: dict | None = None) -> dict:
    source = SOURCES[name]
    remote = source.files[0]
    return {
        "source": f"MovieLens {name[3:].upper()} (GroupLens)",
        "files": [{"filename": remote.filename, "url": remote.url, "sha256": None,
                   "verified_members": sorted(remote.members)}],
        "licence": source.licence,
        "citation": source.citation,
        "order": TIE_RULE,
        "ids": id_rule,
        "interaction": "every rating, whatever its value",
        **(notes or {}),
    }


def _movie_frame(movie_ids: np.ndarray, titles: dict[int, str], genres: dict[int, list[str]],
                 n_ratings: np.ndarray) -> dict[str, list]:
    title_list = [titles.get(int(m)) for m in movie_ids]
    return {
        "movielens_movie_id": [int(m) for m in movie_ids],
        "title": title_list,
        "year": pd.array([title_year(t) for t in title_list], dtype="Int64"),
        "genres": [genres.get(int(m), []) for m in movie_ids],
        "n_ratings": n_ratings.astype(np.int64),
    }


# ---------------------------------------------------------------------------------- ml-100k
def _build_ml100k(paths: dict[str, Path]) -> SeqDataset:
    zip_path = paths["ml-100k.zip"]
    with zipfile.ZipFile(zip_path) as archive:
        ratings = _read_table(_member(archive, zip_path, "ml-100k/u.data"),
                              f"{zip_path}:ml-100k/u.data", sep="\t", header=None,
                              names=["user", "item", "rating", "timestamp"],
                              dtype={"user": np.int64, "item": np.int64, "rating": np.int64,
                                     "timestamp": np.int64})
        item_text = _member(archive, zip_path, "ml-100k/u.item").decode("latin-1")
        genre_text = _member(archive, zip_path, "ml-100k/u.genre").decode("latin-1")
        user_text = _member(archive, zip_path, "ml-100k/u.user").decode("latin-1")
    users, items, ts = (ratings[c].to_numpy() for c in ("user", "item", "timestamp"))
    item_ids, offsets, user_ids = sequences_from_ratings(users, items, ts)
    n_items = int(items.max())

    genre_names = {}
    for line in genre_text.splitlines():
        if line.strip():
            name, _, index = line.partition("|")
            genre_names[int(index)] = name
    rows: dict[int, tuple] = {}
    where = f"{zip_path}:ml-100k/u.item"
    for lineno, line in enumerate(item_text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) != 5 + len(genre_names):
            raise DataFormatError(where, lineno, f"{len(fields)} fields, expected "
                                  f"{5 + len(genre_names)}", "delete the zip and run again")
        flags = fields[5:]
        genres = [genre_names[k] for k, flag in enumerate(flags) if flag == "1"]
        rows[int(fields[0])] = (fields[1], fields[2] or None, fields[4] or None, genres)
    popularity = np.bincount(items, minlength=n_items + 1)[1:]
    movie_ids = np.arange(1, n_items + 1)
    frame = _movie_frame(movie_ids, {k: v[0] for k, v in rows.items()},
                         {k: v[3] for k, v in rows.items()}, popularity)
    del frame["movielens_movie_id"]  # ids are kept: item_id is the MovieLens id
    frame["release_date"] = [rows.get(int(m), (None,) * 4)[1] for m in movie_ids]
    frame["imdb_url"] = [rows.get(int(m), (None,) * 4)[2] for m in movie_ids]
    items_frame = pd.DataFrame(frame, index=pd.RangeIndex(1, n_items + 1, name="item_id"))

    user_rows = [line.split("|") for line in user_text.splitlines() if line.strip()]
    users_frame = pd.DataFrame(
        {"age": [int(r[1]) for r in user_rows], "gender": [r[2] for r in user_rows],
         "occupation": [r[3] for r in user_rows], "zip": [r[4] for r in user_rows]},
        index=pd.Index([int(r[0]) for r in user_rows], name="user_id"),
    )
    got = (len(user_ids), n_items, len(item_ids))
    if got != ML100K_COUNTS:
        raise DataFormatError(zip_path, None, f"users/items/ratings {got}, expected "
                              f"{ML100K_COUNTS}", "delete the zip from the cache and retry")
    info = _info("ml-100k", "MovieLens user and movie ids kept (1..943, 1..1682)")
    return SeqDataset("ml-100k", item_ids, offsets, n_items, items_frame, user_ids,
                      users=users_frame, info=info)


# ---------------------------------------------------------------------------------- ml-1m
def _dat_table(raw: bytes, where: str, names: list[str], dtype=None) -> pd.DataFrame:
    """Parse a ``::``-separated ML-1M file with the C parser.

    ``::`` becomes a tab first (no field contains a tab), which is ~20x faster than pandas'
    Python engine on a multi-character separator.
    """
    return _read_table(raw.replace(b"::", b"\t"), where, sep="\t", header=None, names=names,
                       dtype=dtype, encoding="latin-1", quoting=3, keep_default_na=False)


def _build_ml1m(paths: dict[str, Path]) -> SeqDataset:
    zip_path = paths["ml-1m.zip"]
    with zipfile.ZipFile(zip_path) as archive:
        ratings = _dat_table(_member(archive, zip_path, "ml-1m/ratings.dat"),
                             f"{zip_path}:ml-1m/ratings.dat",
                             ["user", "movie", "rating", "timestamp"],
                             dtype={"user": np.int64, "movie": np.int64, "rating": np.int64,
                                    "timestamp": np.int64})
        movies = _dat_table(_member(archive, zip_path, "ml-1m/movies.dat"),
                            f"{zip_path}:ml-1m/movies.dat", ["movie", "title", "genres"],
                            dtype={"movie": np.int64, "title": str, "genres": str})
        users = _dat_table(_member(archive, zip_path, "ml-1m/users.dat"),
                           f"{zip_path}:ml-1m/users.dat",
                           ["user", "gender", "age", "occupation", "zip"],
                           dtype={"user": np.int64, "gender": str, "age": np.int64,
                                  "occupation": np.int64, "zip": str})
    dense, movie_ids = _dense_items(ratings["movie"].to_numpy())
    item_ids, offsets, user_ids = sequences_from_ratings(
        ratings["user"].to_numpy(), dense, ratings["timestamp"].to_numpy())
    n_items = len(movie_ids)
    titles = dict(zip(movies["movie"].tolist(), movies["title"].tolist()))
    genres = {m: [g for g in s.split("|") if g]
              for m, s in zip(movies["movie"].tolist(), movies["genres"].tolist())}
    _check_known_movies(zip_path, "ml-1m/movies.dat", movie_ids, titles)
    frame = _movie_frame(movie_ids, titles, genres, np.bincount(item_ids, minlength=n_items + 1)[1:])
    items_frame = pd.DataFrame(frame, index=pd.RangeIndex(1, n_items + 1, name="item_id"))
    users_frame = pd.DataFrame(
        {"gender": users["gender"].to_numpy(), "age": users["age"].to_numpy(),
         "age_group": users["age"].map(ML1M_AGE_GROUPS).to_numpy(),
         "occupation_id": users["occupation"].to_numpy(),
         "occupation": [ML1M_OCCUPATIONS[k] if 0 <= k < len(ML1M_OCCUPATIONS) else None
                        for k in users["occupation"].tolist()],
         "zip": users["zip"].to_numpy()},
        index=pd.Index(users["user"].to_numpy(), name="user_id"),
    )
    return SeqDataset("ml-1m", item_ids, offsets, n_items, items_frame, user_ids,
                      users=users_frame, info=_info("ml-1m", DENSE_ID_RULE))


def _check_known_movies(zip_path: Path, member: str, movie_ids: np.ndarray,
                        titles: dict[int, str]) -> None:
    unknown = [int(m) for m in movie_ids if int(m) not in titles]
    if unknown:
        raise DataFormatError(
            f"{zip_path}:{member}", None,
            f"{len(unknown)} rated movie ids have no row (first: {unknown[0]})",
            "delete the downloaded zip from the cache and run again",
        )


# ---------------------------------------------------------------------------------- ml-20m
def _build_ml20m(paths: dict[str, Path]) -> SeqDataset:
    zip_path = paths["ml-20m.zip"]
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        for member in ("ml-20m/ratings.csv", "ml-20m/movies.csv"):
            if member not in names:
                raise DataFormatError(zip_path, None, f"the zip has no member {member}",
                                      "delete the file from the cache and run again")
        # Streamed from the archive: 20M rows as three numeric columns (~320 MB), no
        # decompressed copy on disk or in memory.
        with archive.open("ml-20m/ratings.csv") as f:
            ratings = _read_table(f, f"{zip_path}:ml-20m/ratings.csv",
                                  usecols=["userId", "movieId", "timestamp"],
                                  dtype={"userId": np.int32, "movieId": np.int32,
                                         "timestamp": np.int64})
        with archive.open("ml-20m/movies.csv") as f:
            movies = _read_table(f, f"{zip_path}:ml-20m/movies.csv", encoding="utf-8",
                                 dtype={"movieId": np.int64, "title": str, "genres": str},
                                 keep_default_na=False)
    for column in ("movieId", "title", "genres"):
        if column not in movies.columns:
            raise DataFormatError(f"{zip_path}:ml-20m/movies.csv", 1, f"no column {column}",
                                  "delete the downloaded zip from the cache and run again")
    dense, movie_ids = _dense_items(ratings["movieId"].to_numpy())
    users = ratings["userId"].to_numpy()
    timestamps = ratings["timestamp"].to_numpy()
    del ratings
    item_ids, offsets, user_ids = sequences_from_ratings(users, dense, timestamps)
    del users, dense, timestamps
    n_items = len(movie_ids)
    titles = dict(zip(movies["movieId"].tolist(), movies["title"].tolist()))
    genres = {m: [g for g in s.split("|") if g and g != "(no genres listed)"]
              for m, s in zip(movies["movieId"].tolist(), movies["genres"].tolist())}
    _check_known_movies(zip_path, "ml-20m/movies.csv", movie_ids, titles)
    frame = _movie_frame(movie_ids, titles, genres, np.bincount(item_ids, minlength=n_items + 1)[1:])
    items_frame = pd.DataFrame(frame, index=pd.RangeIndex(1, n_items + 1, name="item_id"))
    return SeqDataset("ml-20m", item_ids, offsets, n_items, items_frame, user_ids,
                      info=_info("ml-20m", DENSE_ID_RULE))
