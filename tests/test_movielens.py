"""MovieLens sources: the tie rule, the dense id rule and the three file formats.

ml-1m and ml-20m are tested on small files generated here in their exact formats (zipped like
the official archives and served by the loopback mirror); ml-100k's real files come from the
shared data folder (``real_data``), as does a check of ml-1m's pinned member hashes.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mirror import build_zip

from famekit import datasets
from famekit.datasets import movielens
from famekit.errors import ChecksumError


# ------------------------------------------------------------------ tie rule and helpers
def test_sequences_sort_by_user_then_time_and_ties_keep_file_order():
    users = np.array([2, 1, 2, 1, 2, 1])
    items = np.array([10, 11, 12, 13, 14, 15])
    timestamps = np.array([5, 9, 5, 9, 1, 3])
    flat, offsets, user_ids = movielens.sequences_from_ratings(users, items, timestamps)
    assert user_ids.tolist() == [1, 2]
    assert offsets.tolist() == [0, 3, 6]
    # user 1: t=3 (15), then the tie t=9 in file order (11 before 13)
    # user 2: t=1 (14), then the tie t=5 in file order (10 before 12)
    assert flat.tolist() == [15, 11, 13, 14, 10, 12]


def test_sequences_match_a_python_stable_sort_on_random_ratings():
    rng = np.random.default_rng(3)
    n = 5000
    users = rng.integers(1, 60, n)
    items = rng.integers(1, 300, n)
    timestamps = rng.integers(0, 40, n)  # many ties
    flat, offsets, user_ids = movielens.sequences_from_ratings(users, items, timestamps)
    order = sorted(range(n), key=lambda k: (users[k], timestamps[k]))  # Python's sort is stable
    assert flat.tolist() == items[order].tolist()
    assert user_ids.tolist() == sorted(set(users.tolist()))
    assert np.diff(offsets).tolist() == [int((users == u).sum()) for u in user_ids]


def test_sequence_paths_agree_when_keys_cannot_be_packed():
    """Huge timestamp spans take the np.lexsort path; the result follows the same rule."""
    users = np.array([3, 1, 3, 1, 3])
    items = np.array([1, 2, 3, 4, 5])
    for timestamps in (np.array([7, 2, 7, 1, 0]), np.array([7, 2, 7, 1, 0]) * 2**59):
        flat, offsets, user_ids = movielens.sequences_from_ratings(users, items, timestamps)
        assert flat.tolist() == [4, 2, 5, 1, 3] and offsets.tolist() == [0, 2, 5]
        assert user_ids.tolist() == [1, 3]


@pytest.mark.parametrize("movies", [[5, 3, 5, 100], [5, 3, 5, 60_000_000]])
def test_dense_ids_follow_ascending_movie_ids(movies):
    dense, distinct = movielens._dense_items(np.array(movies))
    assert distinct.tolist() == sorted(set(movies))
    assert dense.tolist() == [2, 1, 2, 3]


@pytest.mark.parametrize("title, year", [
    ("Toy Story (1995)", 1995), ("Land Before Time III (1995) (V)", None), ("unknown", None),
    ("Babylon 5 (1994) ", 1994), ("", None), (None, None),
])
def test_title_year(title, year):
    assert movielens.title_year(title) == year


# ------------------------------------------------------------------ generated ml-1m
def _ml1m_members() -> dict[str, bytes]:
    ratings = [  # user, movie, rating, timestamp; user 2 has a tie at 978300100
        (2, 3114, 4, 978300100), (1, 1193, 5, 978300760), (2, 73, 3, 978300100),
        (1, 661, 3, 978302109), (1, 73, 4, 978301968), (3, 1193, 5, 978200000),
        (2, 661, 1, 978300050), (3, 3114, 2, 978200001),
    ]
    movies = ("73::Misérables, Les (1995)::Drama|Musical\n"
              "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
              "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
              "2000::Never Rated (1999)::Comedy\n"
              "3114::Toy Story 2 (1999)::Animation|Children's|Comedy\n")
    users = "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n"
    return {
        "ml-1m/ratings.dat": "".join(f"{u}::{m}::{r}::{t}\n" for u, m, r, t in ratings).encode(),
        "ml-1m/movies.dat": movies.encode("latin-1"),
        "ml-1m/users.dat": users.encode(),
        "ml-1m/README": b"SUMMARY\n",
    }


def _serve_zip(mirror, monkeypatch, name: str, members: dict[str, bytes], tmp_path: Path,
               pin: tuple[str, ...] = ()) -> None:
    """Zip ``members``, serve it at the official URL; ``pin`` members get their hashes pinned.
    The generated members are not GroupLens' files: their parse is under test, so the others
    are loaded unverified (the opt-in a user gives for members famekit has no hash of)."""
    monkeypatch.setenv("FAMEKIT_ALLOW_UNVERIFIED", "1")
    archive = build_zip(tmp_path / f"served-{name}.zip", members)
    source = movielens.SOURCES[name]
    mirror.add(source.files[0].url, archive)
    remote = dataclasses.replace(
        source.files[0], members={m: hashlib.sha256(members[m]).hexdigest() for m in pin})
    monkeypatch.setitem(movielens.SOURCES, name, dataclasses.replace(source, files=(remote,)))


def test_ml1m_parser_on_generated_files(mirror_env, monkeypatch, tmp_path):
    members = _ml1m_members()
    _serve_zip(mirror_env, monkeypatch, "ml-1m", members, tmp_path,
               pin=("ml-1m/movies.dat", "ml-1m/users.dat", "ml-1m/README"))
    ds = datasets.load("ml-1m", cache_dir=tmp_path / "cache", progress=False)
    # Dense ids in ascending MovieLens id order over rated movies: 73, 661, 1193, 3114.
    assert ds.items["movielens_movie_id"].tolist() == [73, 661, 1193, 3114]
    assert ds.n_items == 4 and ds.n_users == 3 and ds.n_interactions == 8
    assert ds.user_ids.tolist() == [1, 2, 3]
    dense = {73: 1, 661: 2, 1193: 3, 3114: 4}
    assert ds.sequence(0).tolist() == [dense[m] for m in (1193, 73, 661)]
    assert ds.sequence(1).tolist() == [dense[m] for m in (661, 3114, 73)]  # tie: file order
    assert ds.sequence(2).tolist() == [dense[m] for m in (1193, 3114)]
    assert ds.items.loc[1, "title"] == "Misérables, Les (1995)"  # ISO-8859-1 decoded
    assert ds.items.loc[1, "genres"] == ["Drama", "Musical"]
    assert ds.items["year"].tolist() == [1995, 1996, 1975, 1999]
    assert ds.items["n_ratings"].tolist() == [2, 2, 2, 2]
    assert ds.users.loc[2, "age_group"] == "56+" and ds.users.loc[2, "occupation"] == \
        "self-employed"
    assert "stable" in ds.info["order"] and "movielens_movie_id" in ds.info["ids"]


def test_ml1m_member_with_wrong_bytes_is_a_checksum_error(mirror_env, monkeypatch, tmp_path):
    members = _ml1m_members()
    _serve_zip(mirror_env, monkeypatch, "ml-1m", members, tmp_path,
               pin=("ml-1m/movies.dat",))
    remote = movielens.SOURCES["ml-1m"].files[0]
    wrong = dict(remote.members, **{"ml-1m/movies.dat": "f" * 64})
    monkeypatch.setitem(movielens.SOURCES, "ml-1m", dataclasses.replace(
        movielens.SOURCES["ml-1m"], files=(dataclasses.replace(remote, members=wrong),)))
    with pytest.raises(ChecksumError, match="ml-1m/movies.dat") as err:
        datasets.load("ml-1m", cache_dir=tmp_path / "cache", progress=False)
    assert "ml-1m.zip" in str(err.value)
    assert not list((tmp_path / "cache").rglob("*.zip")) and not list(tmp_path.rglob("*.part"))


# ------------------------------------------------------------------ generated ml-20m
ML20M_MOVIES = (
    "movieId,title,genres\n"
    "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
    '11,"American President, The (1995)",Comedy|Drama|Romance\n'
    "4973,\"Amelie (Fabuleux destin d'Amélie Poulain, Le) (2001)\",Comedy|Romance\n"
    "130000,Untitled Short,(no genres listed)\n"
    "131262,Never Rated (2015),Comedy\n"
)
ML20M_RATINGS = (
    "userId,movieId,rating,timestamp\n"
    "1,11,3.5,1112486027\n1,1,4.0,1112484676\n1,4973,3.5,1112486027\n"
    "7,130000,0.5,1427771900\n7,1,5.0,1112484000\n"
)


def test_ml20m_parser_on_generated_files(mirror_env, monkeypatch, tmp_path):
    members = {"ml-20m/ratings.csv": ML20M_RATINGS.encode(),
               "ml-20m/movies.csv": ML20M_MOVIES.encode(),
               "ml-20m/README.txt": b"Summary\n"}
    _serve_zip(mirror_env, monkeypatch, "ml-20m", members, tmp_path)
    ds = datasets.load("ml-20m", cache_dir=tmp_path / "cache", progress=False)
    assert ds.items["movielens_movie_id"].tolist() == [1, 11, 4973, 130000]
    assert ds.user_ids.tolist() == [1, 7]
    assert ds.sequence(0).tolist() == [1, 2, 3]  # 1 (t=...676), then the tie 11, 4973
    assert ds.sequence(1).tolist() == [1, 4]
    assert ds.items.loc[2, "title"] == "American President, The (1995)"
    assert ds.items.loc[3, "title"].startswith("Amelie (Fabuleux destin d'Amélie")
    assert ds.items.loc[4, "genres"] == [] and pd.isna(ds.items.loc[4, "year"])
    assert ds.items.loc[1, "genres"][:2] == ["Adventure", "Animation"]
    assert ds.users is None
    # The warm load returns the same data without asking the mirror.
    requests = len(mirror_env.log)
    again = datasets.load("ml-20m", cache_dir=tmp_path / "cache")
    assert again.fingerprint == ds.fingerprint and len(mirror_env.log) == requests


def test_ml20m_rating_for_a_movie_without_a_row_is_a_data_error(mirror_env, monkeypatch,
                                                              tmp_path):
    from famekit.errors import DataFormatError

    members = {"ml-20m/ratings.csv": (ML20M_RATINGS + "9,999999,1.0,1\n").encode(),
               "ml-20m/movies.csv": ML20M_MOVIES.encode()}
    _serve_zip(mirror_env, monkeypatch, "ml-20m", members, tmp_path)
    with pytest.raises(DataFormatError, match="movies.csv") as err:
        datasets.load("ml-20m", cache_dir=tmp_path / "cache", progress=False)
    assert "999999" in str(err.value)


# ------------------------------------------------------------------ real data
def _tsv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def _text(value) -> str:
    if isinstance(value, list):
        return "|".join(value)
    return "" if value is None or pd.isna(value) else str(value)


@pytest.mark.real_data
def test_ml100k_equals_shared_join(shared_data, mirror_env):
    ds = datasets.load("ml-100k", progress=False)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (943, 1682, 100000)
    lines = [[int(x) for x in line.split()]
             for line in (shared_data / "ml-100k" / "ml-100k.txt").read_text().splitlines()]
    assert ds.user_ids.tolist() == [line[0] for line in lines]
    assert all(ds.sequence(u).tolist() == line[1:] for u, line in enumerate(lines))
    reference = _tsv(shared_data / "ml-100k" / "items.tsv")
    for column in ("title", "year", "genres", "release_date", "imdb_url", "n_ratings"):
        ours = [_text(v) for v in ds.items[column].tolist()]
        assert ours == [r[column] for r in reference], column
    users = _tsv(shared_data / "ml-100k" / "users.tsv")
    assert ds.users["occupation"].tolist() == [r["occupation"] for r in users]
    assert ds.users["age"].tolist() == [int(r["age"]) for r in users]
    lengths = ds.lengths
    assert (round(lengths.mean(), 1), np.median(lengths), lengths.min(), lengths.max()) == \
        (106.0, 65, 20, 737)
    assert ds.items["year"].notna().sum() == 1680
    assert ds.items.loc[50, "title"] == "Star Wars (1977)" and ds.items.loc[50, "n_ratings"] == 583


@pytest.mark.real_data
def test_ml1m_pinned_members_accept_the_real_files(shared_data, mirror_env, tmp_path,
                                                  monkeypatch):
    """The pinned hashes of movies.dat/users.dat/README match the published bytes."""
    monkeypatch.setenv("FAMEKIT_ALLOW_UNVERIFIED", "1")  # ratings.dat is generated here
    source = shared_data / "ml-1m" / "source"
    ratings = b"1::1::5::978300760\n1::73::4::978300761\n2::3952::3::978300762\n"
    members = {"ml-1m/movies.dat": (source / "movies.dat").read_bytes(),
               "ml-1m/ratings.dat": ratings,
               "ml-1m/users.dat": (source / "users.dat").read_bytes(),
               "ml-1m/README": (source / "README").read_bytes()}
    archive = build_zip(tmp_path / "ml-1m.zip", members)
    mirror_env.add(movielens.SOURCES["ml-1m"].files[0].url, archive)
    ds = datasets.load("ml-1m", cache_dir=tmp_path / "cache", progress=False)
    assert ds.items["title"].tolist() == ["Toy Story (1995)", "Misérables, Les (1995)",
                                          "Contender, The (2000)"]
    assert ds.users.shape[0] == 6040 and ds.users.loc[1, "age_group"] == "Under 18"
