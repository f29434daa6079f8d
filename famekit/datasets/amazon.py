"""Amazon review datasets (2014 release, 5-core): ``beauty``, ``sports``, ``toys``.

What they are
    The standard S3-Rec interaction files used by S3-Rec, CL4SRec, DuoRec, ICLRec, FMLP-Rec and
    most sequential-recommendation papers since: one line per user, items in chronological
    order (every review is an interaction), 1-based ids. Item and user ids are kept as S3-Rec
    numbered them, so results compare with published numbers.

    ========  =======  ======  ============  =============================================
    name      users    items   interactions  item metadata
    ========  =======  ======  ============  =============================================
    beauty    22,363   12,101  198,502       asin, title, brand, top/leaf category, categories
    sports    35,598   18,357  296,337       asin, text_id (NOT a title), brand, categories
    toys      19,412   11,924  167,597       asin, text_id, brand/categories as anonymised ids
    ========  =======  ======  ============  =============================================

Where they come from (downloaded by famekit, each file verified by the sha256 in the tables
below; commits as the provenance records give them)
    * sequences and anonymised attributes: ``RUCAIBox/CIKM2020-S3Rec`` @ ``2a81540ae186``;
    * ASINs and attribute names: the P5 datamaps (``Wenyueh/LLM-RecSys-ID`` @ ``2200ad9fef64``;
      for toys ``WangXFng/RDRec`` @ ``4055c3028d3a``, which has ASINs but no attribute names);
    * Beauty titles: ``dh-r/LLM-Sequential-Recommendation`` @ ``6464b39064f3``;
    * Sports/Toys ``text_id``: IDGenRec's machine-generated textual item ids
      (``agiresearch/IDGenRec`` @ ``a297185aa5b6``), a few words made from the title by a model.

How the joins are rebuilt (the facts come from the provenance notes of the shared data folder)
    * ``beauty``: S3-Rec numbered attributes (brand + categories below the root ``Beauty``) by
      first appearance and dropped those used < 5 times; P5's ``attributeid2num`` lists the same
      vocabulary without the cut, so S3 attribute *k* is the *k*-th P5 attribute with count >= 5
      (checked: all per-attribute counts must agree, else the build fails). Position 0 of an
      item's list is the brand unless it is one of the 6 top-level categories; the rest are
      root-to-leaf paths, each starting at a top-level category. Titles join through the ASIN.
    * ``sports``: a variant of the S3-Rec script (brand slot always present, placeholder id 23
      for no/rare brand, roots kept, strings used once dropped). S3 ids are matched to P5
      attributes by a dynamic-programming alignment of the two count sequences; the 11 S3 ids
      without a P5 counterpart carry the names the provenance inferred for them
      (:data:`SPORTS_INFERRED_NAMES`). Paths start at root categories. ``top_category`` is the
      level-1 category of the first ``Sports & Outdoors`` path.
    * ``toys``: attribute NAMES ARE NOT AVAILABLE (no fetchable datamaps with the Toys
      vocabulary). Metadata are the anonymised S3-Rec ids: ``brand`` = ``"brand#399"`` (missing
      for the placeholder id 1), ``categories`` = ``["cat#220", ...]`` (the root id 2, almost
      certainly ``Toys & Games``, left out), ``top_category`` = the first of them. ASINs come
      from RDRec's copy of P5 Toys, numbered differently: famekit matches the two numberings by
      colour refinement of the user-item sequence graph and checks that relabelling turns one
      sequence multiset into the other.

Licence in one line
    Amazon product data (J. McAuley et al., UCSD; He & McAuley WWW 2016): research use with
    citation, no explicit licence, do not republish; cite S3-Rec (Zhou et al., CIKM 2020).

Ties: the files carry no timestamps; the order is S3-Rec's (chronological, its own tie order).
"""

from __future__ import annotations

import collections
import csv
import html
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from famekit.datasets.core import SeqDataset
from famekit.datasets.fetch import (
    RemoteFile,
    Source,
    github_raw,
    load_source,
    read_json,
    read_text,
)
from famekit.datasets.files import read_sequences
from famekit.errors import DataFormatError

__all__ = [
    "BEAUTY_TOP_CATEGORIES",
    "SOURCES",
    "SPORTS_INFERRED_NAMES",
    "align_counts",
    "load_beauty",
    "load_sports",
    "load_toys",
]

# Bump when the processed form changes: cached datasets built by older code are rebuilt.
BUILD_VERSION = "amazon-1"

_S3REC = ("RUCAIBox/CIKM2020-S3Rec", "2a81540ae186")
_P5_DATAMAPS = ("Wenyueh/LLM-RecSys-ID", "2200ad9fef64")
_DHR = ("dh-r/LLM-Sequential-Recommendation", "6464b39064f3")
_IDGENREC = ("agiresearch/IDGenRec", "a297185aa5b6")
_RDREC = ("WangXFng/RDRec", "4055c3028d3a")


def _remote(filename: str, repo_commit: tuple[str, str], path: str, sha256: str,
            size: int) -> RemoteFile:
    repo, commit = repo_commit
    return RemoteFile(filename, github_raw(repo, commit, path), sha256, size,
                      origin=f"{repo} @ {commit} : {path}")


_LICENCE = ("Amazon product data (2014), J. McAuley et al., UCSD: research use with citation, "
            "no explicit licence; do not republish")
_CITATION = ("He & McAuley, WWW 2016; McAuley et al., SIGIR 2015; S3-Rec: Zhou et al., "
             "CIKM 2020")

SOURCES: dict[str, Source] = {
    "beauty": Source("beauty", (
        _remote("Beauty.txt", _S3REC, "data/Beauty.txt",
                "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8", 1090094),
        _remote("Beauty_item2attributes.json", _S3REC, "data/Beauty_item2attributes.json",
                "129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4", 305674),
        _remote("datamaps.json", _P5_DATAMAPS, "data/beauty/datamaps.json",
                "715ab04838ff1ba21238475ed453a89e8c30aa6214b904d27a79e4168fc7b612", 1835529),
        _remote("item_id_to_int.json", _DHR, "beauty/item_id_to_int.json",
                "3d1a1d362c7daeddf616057fae8fa24af9d70902fdaf4631852231a9953afa50", 243011),
        _remote("products_lookup.csv", _DHR, "beauty/products_lookup.csv",
                "65133eca0615999df67fc5b26a93a7da762e53e613a083fd6b9e37174896d128", 961053),
    ), _LICENCE + "; titles via dh-r/LLM-Sequential-Recommendation (BSD-3-Clause)", _CITATION),
    "sports": Source("sports", (
        _remote("Sports_and_Outdoors.txt", _S3REC, "data/Sports_and_Outdoors.txt",
                "2a095e0648872beb9982408958290f5d655db5be2911c3756b5446de9f0b8de2", 1707483),
        _remote("Sports_and_Outdoors_item2attributes.json", _S3REC,
                "data/Sports_and_Outdoors_item2attributes.json",
                "7fb10733ac4f1811384a52144cdefa7fcc7536fa80a7232c5da9bd789155c34b", 653780),
        _remote("datamaps.json", _P5_DATAMAPS, "data/sports/datamaps.json",
                "4a4d9785ab99a89a499f25023892a647a2280086041c9c9d7169c9dc2ee0b715", 2916593),
        _remote("idgenrec_text_ids.txt", _IDGENREC,
                "rec_datasets/Sports/item_generative_indexing_phase_0.txt",
                "710b6d9b661aebcd065b861e4076f5e3cc66bdd9735e462ca2db90d5cc951593", 845269),
    ), _LICENCE, _CITATION + "; IDGenRec: Tan et al., SIGIR 2024"),
    "toys": Source("toys", (
        _remote("Toys_and_Games.txt", _S3REC, "data/Toys_and_Games.txt",
                "176c680c688d497598c4a89a03b402c0fe78d795e5db335c2e78dd5f2d778a3f", 922166),
        _remote("Toys_and_Games_item2attributes.json", _S3REC,
                "data/Toys_and_Games_item2attributes.json",
                "d371acd25101eedac04afc727626464b7acec770c4eda708705d51eb76eb1ad0", 327536),
        _remote("idgenrec_text_ids.txt", _IDGENREC,
                "rec_datasets/Toys/item_generative_indexing_phase_0.txt",
                "bce5c0028efdb6ec87033021087c9251eb64d6dfc77d791c47837c830b9d7f19", 566953),
        _remote("p5_datamaps.json", _RDREC, "data/toys/datamaps.json",
                "a67fd09b5bbca12aea613015d9d1ed99610bb35015d3bbe8cd9e7a3eeda2c90c", 1021832),
        _remote("p5_sequential.txt", _RDREC, "data/toys/sequential.txt",
                "fa1cff57550387966440a93219753b97df62269455b3497612cdca3e8db0ceee", 921692),
    ), _LICENCE, _CITATION + "; P5 via WangXFng/RDRec; IDGenRec: Tan et al., SIGIR 2024"),
}

# (users, items, interactions) of each S3-Rec file, from the provenance notes: a build that
# disagrees has parsed something wrongly and fails instead of caching it.
EXPECTED_COUNTS = {
    "beauty": (22363, 12101, 198502),
    "sports": (35598, 18357, 296337),
    "toys": (19412, 11924, 167597),
}

# Beauty's six top-level categories (children of the root "Beauty", which S3-Rec drops).
BEAUTY_TOP_CATEGORIES = frozenset(
    {"Skin Care", "Hair Care", "Makeup", "Tools & Accessories", "Bath & Body", "Fragrance"}
)
# Beauty: S3-Rec kept attributes used at least this often.
BEAUTY_MIN_COUNT = 5

# Sports: the S3 attribute ids that have no P5 counterpart, named by the provenance notes from
# their position and children (an inference; every other name is an exact count alignment).
SPORTS_PLACEHOLDER_ID = 23
SPORTS_ROOT_NAME = "Sports & Outdoors"
SPORTS_INFERRED_NAMES = {
    2: "Sports & Outdoors",
    23: "",  # placeholder: no brand, or a brand used on a single item
    143: "Clothing, Shoes & Jewelry",
    273: "Automotive",
    835: "Toys & Games",
    851: "Cell Phones & Accessories",
    1418: "Health & Personal Care",
    1565: "Video Games",
    1761: "Movies & TV",
    1828: "Tools & Home Improvement",
    2262: "General",  # a brand: the one unused P5 string with the same count (3)
}
_SPORTS_INFERRED_BRANDS = frozenset({23, 2262})

TOYS_PLACEHOLDER_ID = 1  # "no brand / brand too rare"
TOYS_ROOT_ID = 2  # the root category, almost certainly "Toys & Games"

_WHITESPACE = re.compile(r"\s+")


def _clean(text: str) -> str:
    """HTML entities unescaped, whitespace runs collapsed to one space, ends stripped."""
    return _WHITESPACE.sub(" ", html.unescape(text)).strip()


# ---------------------------------------------------------------------------------- loaders
def load_beauty(cache_dir=None, **options) -> SeqDataset:
    """Amazon Beauty (S3-Rec ``Beauty.txt``) with titles, brands and categories."""
    return _load("beauty", _build_beauty, cache_dir, options)


def load_sports(cache_dir=None, **options) -> SeqDataset:
    """Amazon Sports_and_Outdoors with brands and categories (``text_id`` is not a title)."""
    return _load("sports", _build_sports, cache_dir, options)


def load_toys(cache_dir=None, **options) -> SeqDataset:
    """Amazon Toys_and_Games; brand/categories are anonymised ids (names unavailable)."""
    return _load("toys", _build_toys, cache_dir, options)


def _load(name: str, builder, cache_dir, options: dict[str, Any]) -> SeqDataset:
    return load_source(name, BUILD_VERSION, SOURCES[name], builder, cache_dir, options)


# ---------------------------------------------------------------------------------- helpers
def _read_s3_sequences(path: Path) -> tuple[np.ndarray, list[np.ndarray], int]:
    """(user ids, per-user item arrays, number of items) of an S3-Rec sequence file."""
    users, sequences = read_sequences(path)
    n_items = max(int(s.max()) for s in sequences)
    return users, sequences, n_items


def _check_counts(name: str, path: Path, users: np.ndarray, sequences: list[np.ndarray],
                  n_items: int) -> None:
    got = (len(users), n_items, int(sum(len(s) for s in sequences)))
    if got != EXPECTED_COUNTS[name]:
        raise DataFormatError(
            path, None,
            f"{name}: users/items/interactions {got} differ from the provenance's "
            f"{EXPECTED_COUNTS[name]}", "delete the cache entry and run again; report it if it "
            "persists",
        )


def _item_attributes(path: Path, n_items: int) -> list[list[int]]:
    """S3-Rec ``item2attributes.json`` as a list indexed by item id (index 0 unused)."""
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise DataFormatError(path, 1, "expected a JSON object {item_id: [attr_id, ...]}",
                              "delete the file from the cache and run again")
    lists: list[list[int]] = [[] for _ in range(n_items + 1)]
    for key, values in raw.items():
        item = int(key)
        if not 1 <= item <= n_items:
            raise DataFormatError(path, None, f"item id {key} outside 1..{n_items}",
                                  "delete the file from the cache and run again")
        lists[item] = [int(v) for v in values]
    return lists


def _attribute_counts(lists: list[list[int]]) -> list[int]:
    """Occurrences of each S3 attribute id 1..max (index k-1 = attribute k)."""
    counter = collections.Counter(a for values in lists for a in values)
    return [counter.get(k, 0) for k in range(1, max(counter) + 1)]


def _p5_vocabulary(datamaps: dict, path: Path) -> tuple[list[int], list[int], dict[int, str]]:
    """P5 attribute ids in id order, their counts, and their cleaned names."""
    try:
        counts = {int(k): int(v) for k, v in datamaps["attributeid2num"].items()}
        names = {int(k): _clean(v) for k, v in datamaps["id2attribute"].items()}
    except (KeyError, TypeError, ValueError) as e:
        raise DataFormatError(path, None, f"datamaps lack attributeid2num/id2attribute ({e})",
                              "delete the file from the cache and run again") from None
    ids = sorted(counts)
    return ids, [counts[i] for i in ids], names


def _asins(datamaps: dict, n_items: int, path: Path) -> list[str]:
    id2item = datamaps.get("id2item", {})
    missing = [i for i in range(1, n_items + 1) if str(i) not in id2item]
    if missing:
        raise DataFormatError(path, None, f"id2item lacks {len(missing)} item ids "
                              f"(first {missing[0]})", "delete the file and run again")
    return [id2item[str(i)] for i in range(1, n_items + 1)]


def _text_ids(path: Path) -> dict[str, str]:
    """IDGenRec's ``ASIN text id`` lines as {asin: text id}."""
    out = {}
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        asin, _, text = line.partition(" ")
        if not text:
            raise DataFormatError(path, lineno, "expected 'ASIN text id'",
                                  "delete the file from the cache and run again")
        out[asin] = text.strip()
    return out


def _dedupe(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _info(name: str, notes: dict[str, Any]) -> dict[str, Any]:
    source = SOURCES[name]
    return {
        "source": f"Amazon {name} (2014, 5-core), S3-Rec preprocessing",
        "files": [{"filename": r.filename, "url": r.url, "sha256": r.sha256,
                   "origin": r.origin} for r in source.files],
        "licence": source.licence,
        "citation": source.citation,
        "order": "chronological as in the S3-Rec file (no timestamps; S3-Rec's tie order)",
        "ids": "item and user ids as in the S3-Rec file (1-based)",
        **notes,
    }


def _finish(name: str, path: Path, users, sequences, n_items, rows: dict[str, list],
            notes: dict[str, Any]) -> SeqDataset:
    _check_counts(name, path, users, sequences, n_items)
    index = pd.RangeIndex(1, n_items + 1, name="item_id")
    items = pd.DataFrame(rows, index=index)
    return SeqDataset.from_sequences(name, sequences, n_items, items, users,
                                     info=_info(name, notes))


# ---------------------------------------------------------------------------------- beauty
def beauty_attribute_names(datamaps: dict, lists: list[list[int]], path: Path) -> list[str]:
    """Names of S3 attribute ids 1..K (index k-1): the k-th P5 attribute used >= 5 times."""
    p5_ids, p5_counts, p5_names = _p5_vocabulary(datamaps, path)
    kept = [(i, c) for i, c in zip(p5_ids, p5_counts) if c >= BEAUTY_MIN_COUNT]
    s3_counts = _attribute_counts(lists)
    if [c for _, c in kept] != s3_counts:
        raise DataFormatError(
            path, None, "P5 attribute counts (>= 5) do not line up with the S3-Rec attribute "
            "counts, so the attribute names cannot be joined",
            "check that the source files are the pinned versions (delete the cache, retry)",
        )
    return [p5_names[i] for i, _ in kept]


def _split_paths(categories: list[str], is_root) -> list[list[str]]:
    """Split a flat category list into root-to-leaf paths, each starting where ``is_root``."""
    paths: list[list[str]] = []
    for position, value in enumerate(categories):
        if not paths or is_root(position, value):
            paths.append([value])
        else:
            paths[-1].append(value)
    return paths


def _build_beauty(paths: dict[str, Path]) -> SeqDataset:
    seq_path = paths["Beauty.txt"]
    users, sequences, n_items = _read_s3_sequences(seq_path)
    datamaps = read_json(paths["datamaps.json"])
    lists = _item_attributes(paths["Beauty_item2attributes.json"], n_items)
    names = beauty_attribute_names(datamaps, lists, paths["datamaps.json"])
    asins = _asins(datamaps, n_items, paths["datamaps.json"])
    titles = _beauty_titles(paths["item_id_to_int.json"], paths["products_lookup.csv"])

    rows: dict[str, list] = {k: [] for k in (
        "asin", "title", "brand", "top_category", "leaf_category", "categories",
        "category_paths", "s3_attribute_ids")}
    for item in range(1, n_items + 1):
        attrs = lists[item]
        labels = [names[a - 1] for a in attrs]
        brand = None
        if labels and labels[0] not in BEAUTY_TOP_CATEGORIES:
            brand, labels = labels[0] or None, labels[1:]  # "" = an empty brand string
        cat_paths = _split_paths(labels, lambda _, v: v in BEAUTY_TOP_CATEGORIES)
        asin = asins[item - 1]
        rows["asin"].append(asin)
        rows["title"].append(titles.get(asin) or None)
        rows["brand"].append(brand)
        rows["top_category"].append(cat_paths[0][0] if cat_paths else None)
        rows["leaf_category"].append(cat_paths[0][-1] if cat_paths else None)
        rows["categories"].append(_dedupe(labels))
        rows["category_paths"].append(" | ".join(" > ".join(p) for p in cat_paths) or None)
        rows["s3_attribute_ids"].append(attrs)
    notes = {
        "metadata": "title (7 items have none), brand (only brands on >= 5 items survive "
                    "S3-Rec's cut; 'Unknown' is Amazon's placeholder), top/leaf category, "
                    "categories below the root 'Beauty'",
    }
    return _finish("beauty", seq_path, users, sequences, n_items, rows, notes)


def _beauty_titles(id_map_path: Path, lookup_path: Path) -> dict[str, str]:
    """{ASIN: cleaned title} through dh-r's ``global_product_id``."""
    id_map = read_json(id_map_path)
    reader = csv.reader(io.StringIO(read_text(lookup_path), newline=""))
    header = next(reader, [])
    if header[1:3] != ["global_product_id", "name"]:
        raise DataFormatError(lookup_path, 1, f"unexpected header {header[:3]}",
                              "delete the file from the cache and run again")
    by_id: dict[int, str] = {}
    for lineno, row in enumerate(reader, start=2):
        if len(row) < 3:
            raise DataFormatError(lookup_path, lineno, "expected 3 fields",
                                  "delete the file from the cache and run again")
        by_id[int(row[1])] = _clean(row[2])
    return {asin: by_id.get(int(gid), "") for asin, gid in id_map.items()}


# ---------------------------------------------------------------------------------- sports
def align_counts(s3_counts: list[int], p5_counts: list[int]) -> list[int | None]:
    """Align two attribute-count sequences; return, for each S3 index, its P5 index or None.

    Both vocabularies number the same strings in the same first-appearance order, but S3 has
    extra entries (roots, a placeholder) and lacks some of P5's. A global alignment with
    costs: equal counts 0, S3 count above P5 count 1 (a string that is also a root category
    collects the root occurrences too), an unmatched entry on either side 1; S3 below P5 is
    impossible. Each row of the dynamic programme is computed with numpy (the run of
    "skip P5" moves is a running minimum), so 2,300 x 2,300 takes ~0.1 s.
    """
    s3 = np.asarray(s3_counts, dtype=np.int64)
    p5 = np.asarray(p5_counts, dtype=np.int64)
    n, m = len(s3), len(p5)
    inf = np.int64(1) << 40
    steps = np.arange(m + 1, dtype=np.int64)
    cost = steps.copy()  # row 0: skip the first j P5 entries
    moves = np.zeros((n + 1, m + 1), dtype=np.int8)  # 0 = match, 1 = skip S3, 2 = skip P5
    moves[0, 1:] = 2
    for i in range(1, n + 1):
        match = np.where(s3[i - 1] == p5, 0, np.where(s3[i - 1] > p5, 1, inf))
        diagonal = np.full(m + 1, inf, dtype=np.int64)
        diagonal[1:] = cost[:-1] + match
        up = cost + 1
        best = np.minimum(diagonal, up)
        came = np.where(diagonal <= up, 0, 1).astype(np.int8)
        # left moves: cost[j] = min over k <= j of best[k] + (j - k)
        left = np.minimum.accumulate(best - steps) + steps
        moves[i] = np.where(left < best, 2, came)
        cost = left
    out: list[int | None] = [None] * n
    i, j = n, m
    while i > 0 or j > 0:
        move = moves[i, j]
        if move == 0:
            out[i - 1] = j - 1
            i, j = i - 1, j - 1
        elif move == 1:
            i -= 1
        else:
            j -= 1
    return out


def sports_attribute_names(datamaps: dict, lists: list[list[int]], path: Path
                           ) -> tuple[list[str], frozenset[int], frozenset[int]]:
    """Names of S3 attribute ids 1..K, plus the root ids and the position-1-only root ids.

    Roots are the inferred top-level trees; ``Electronics`` and ``Patio, Lawn & Garden`` are
    also ordinary subcategories, aligned to P5 with a higher S3 count: they start a path only
    as an item's first category.
    """
    p5_ids, p5_counts, p5_names = _p5_vocabulary(datamaps, path)
    usable = [(i, c) for i, c in zip(p5_ids, p5_counts) if c >= 2]  # S3 dropped count-1 strings
    s3_counts = _attribute_counts(lists)
    alignment = align_counts(s3_counts, [c for _, c in usable])
    unaligned = {k for k, a in enumerate(alignment, start=1) if a is None}
    if unaligned != set(SPORTS_INFERRED_NAMES):
        raise DataFormatError(
            path, None, f"the count alignment leaves S3 ids {sorted(unaligned)[:12]} unnamed, "
            f"the provenance expects {sorted(SPORTS_INFERRED_NAMES)}",
            "check that the source files are the pinned versions (delete the cache, retry)",
        )
    names, shared_roots = [], set()
    for k, a in enumerate(alignment, start=1):
        if a is None:
            names.append(SPORTS_INFERRED_NAMES[k])
            continue
        p5_id, p5_count = usable[a]
        names.append(p5_names[p5_id])
        if s3_counts[k - 1] > p5_count:
            shared_roots.add(k)
    roots = frozenset(set(SPORTS_INFERRED_NAMES) - _SPORTS_INFERRED_BRANDS)
    return names, roots, frozenset(shared_roots)


def _build_sports(paths: dict[str, Path]) -> SeqDataset:
    seq_path = paths["Sports_and_Outdoors.txt"]
    users, sequences, n_items = _read_s3_sequences(seq_path)
    datamaps = read_json(paths["datamaps.json"])
    lists = _item_attributes(paths["Sports_and_Outdoors_item2attributes.json"], n_items)
    names, roots, shared_roots = sports_attribute_names(datamaps, lists, paths["datamaps.json"])
    asins = _asins(datamaps, n_items, paths["datamaps.json"])
    text_ids = _text_ids(paths["idgenrec_text_ids.txt"])

    rows: dict[str, list] = {k: [] for k in (
        "asin", "text_id", "brand", "top_category", "leaf_category", "categories",
        "category_paths", "s3_attribute_ids")}
    for item in range(1, n_items + 1):
        attrs = lists[item]
        brand_id, category_ids = attrs[0], attrs[1:]
        brand = None if brand_id == SPORTS_PLACEHOLDER_ID else (names[brand_id - 1] or None)
        id_paths = _split_paths(
            category_ids,
            lambda pos, a: a in roots or (a in shared_roots and pos == 0),
        )
        sports_path = next((p for p in id_paths if names[p[0] - 1] == SPORTS_ROOT_NAME), None)
        if sports_path is None:
            top = leaf = None
        else:
            top = names[sports_path[1] - 1] if len(sports_path) > 1 else SPORTS_ROOT_NAME
            leaf = names[sports_path[-1] - 1]
        labels = [names[a - 1] for a in category_ids]
        asin = asins[item - 1]
        rows["asin"].append(asin)
        rows["text_id"].append(text_ids.get(asin))
        rows["brand"].append(brand)
        rows["top_category"].append(top)
        rows["leaf_category"].append(leaf)
        rows["categories"].append(_dedupe([v for v in labels if v != SPORTS_ROOT_NAME]))
        rows["category_paths"].append(
            " | ".join(" > ".join(names[a - 1] for a in p) for p in id_paths) or None)
        rows["s3_attribute_ids"].append(attrs)
    notes = {
        "metadata": "brand (brands on a single item are a placeholder: missing), top/leaf "
                    "category of the first 'Sports & Outdoors' path, categories (root left "
                    "out). text_id is IDGenRec's machine-generated textual id, NOT a title",
        "inferred_names": {str(k): v for k, v in SPORTS_INFERRED_NAMES.items() if v},
    }
    return _finish("sports", seq_path, users, sequences, n_items, rows, notes)


# ---------------------------------------------------------------------------------- toys
def match_numberings(first: list[np.ndarray], second: list[np.ndarray], max_rounds: int = 8
                     ) -> dict[int, int] | None:
    """Match the item ids of two numberings of the same sequence data, or return ``None``.

    Colour refinement: an item's colour is refined from the colours of the users holding it
    and its positions in their sequences; a user's colour is the sequence of its items'
    colours. Colours are computed with the same function on both sides, so equal colours mean
    "indistinguishable so far". When every item has a unique colour on both sides and the two
    colour sets agree, the colours define the bijection; it is then checked by relabelling.
    """
    colours = [{int(i): 0 for s in seqs for i in s} for seqs in (first, second)]
    if len(colours[0]) != len(colours[1]):
        return None
    for _ in range(max_rounds):
        colours = [_refine(seqs, col) for seqs, col in zip((first, second), colours)]
        if all(len(set(c.values())) == len(c) for c in colours):
            break
    else:
        return None
    by_colour = {c: item for item, c in colours[1].items()}
    mapping = {item: by_colour.get(c) for item, c in colours[0].items()}
    if any(v is None for v in mapping.values()):
        return None
    relabelled = collections.Counter(tuple(mapping[int(i)] for i in s) for s in first)
    if relabelled != collections.Counter(tuple(int(i) for i in s) for s in second):
        return None
    return mapping


def _refine(sequences: list[np.ndarray], colour: dict[int, int]) -> dict[int, int]:
    # Python's hash of a tuple of ints does not depend on PYTHONHASHSEED, so both sides (and
    # every run) agree; a collision could only merge colours, which the final check catches.
    user_colour = [hash(tuple(colour[int(i)] for i in s)) for s in sequences]
    seen: dict[int, list[tuple[int, int]]] = collections.defaultdict(list)
    for u, s in enumerate(sequences):
        for position, i in enumerate(s):
            seen[int(i)].append((user_colour[u], position))
    return {i: hash((colour[i], tuple(sorted(v)))) for i, v in seen.items()}


def _build_toys(paths: dict[str, Path]) -> SeqDataset:
    seq_path = paths["Toys_and_Games.txt"]
    users, sequences, n_items = _read_s3_sequences(seq_path)
    lists = _item_attributes(paths["Toys_and_Games_item2attributes.json"], n_items)
    _, p5_sequences = read_sequences(paths["p5_sequential.txt"])
    mapping = match_numberings(sequences, p5_sequences)
    if mapping is None:
        raise DataFormatError(
            paths["p5_sequential.txt"], None,
            "the P5 copy of Toys could not be matched item by item to the S3-Rec file",
            "check that the source files are the pinned versions (delete the cache, retry)",
        )
    datamaps = read_json(paths["p5_datamaps.json"])
    p5_asins = datamaps.get("id2item", {})
    text_ids = _text_ids(paths["idgenrec_text_ids.txt"])

    rows: dict[str, list] = {k: [] for k in (
        "asin", "text_id", "p5_item_id", "brand", "top_category", "categories",
        "s3_attribute_ids")}
    for item in range(1, n_items + 1):
        attrs = lists[item]
        brand_id, category_ids = (attrs[0], attrs[1:]) if attrs else (None, [])
        categories = _dedupe([f"cat#{a}" for a in category_ids if a != TOYS_ROOT_ID])
        p5_item = mapping.get(item)
        asin = p5_asins.get(str(p5_item)) if p5_item is not None else None
        rows["asin"].append(asin)
        rows["text_id"].append(text_ids.get(asin) if asin else None)
        rows["p5_item_id"].append(p5_item)
        rows["brand"].append(None if brand_id in (None, TOYS_PLACEHOLDER_ID)
                             else f"brand#{brand_id}")
        rows["top_category"].append(categories[0] if categories else None)
        rows["categories"].append(categories)
        rows["s3_attribute_ids"].append(attrs)
    notes = {
        "metadata": "ANONYMISED: brand = 'brand#<S3 attribute id>' (missing for the "
                    "placeholder id 1), categories = ['cat#<id>', ...] without the root id 2, "
                    "top_category = first of them; attribute NAMES are not available. "
                    "text_id is IDGenRec's machine-generated textual id, NOT a title",
    }
    return _finish("toys", seq_path, users, sequences, n_items, rows, notes)
