"""One test per class of figure slip a reader found on the reports (issue: "figures without
slips"). Each reads the figure's JSON, so it fails on the slip, not on a pixel."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from famekit import analysis as A
from famekit import figures as F

CHAR_PX = 7.5  # a 14 px axis title's average character width, generously small
TITLE_FONT_PX = 14


def _plot_height(fig) -> float:
    margin = fig.layout.margin
    return fig.layout.height - (margin.t or 0) - (margin.b or 0)


def _vertical_titles_fit(fig) -> None:
    """A vertical axis title longer than the plot area runs into the figure's title."""
    for name in [k for k in fig.layout.to_plotly_json() if k.startswith("yaxis")]:
        title = (fig.layout[name].title.text or "")
        assert len(title) * CHAR_PX <= _plot_height(fig), (name, title, _plot_height(fig))


def test_vertical_axis_titles_fit_beside_their_plot():
    base = {"intervention": ["none", "remove head 0", "remove head 1"], "group": "all",
            "users": 100, "HR@10": [0.2, 0.1, 0.19], "NDCG@10": [0.1, 0.05, 0.09]}
    table = pd.DataFrame(base)
    for metric in ("HR@10", "NDCG@10"):
        table[f"delta {metric}"] = table[metric] - table[metric][0]
        table[f"relative {metric}"] = table[f"delta {metric}"] / table[metric][0]
    for relative in (False, True):
        _vertical_titles_fit(F.knockout_delta_bar(table, relative=relative))


def test_knockout_cells_never_read_minus_zero_and_forcing_has_its_own_title():
    rows = []
    for label, value in (("none", 0.100), ("head 0 -> expert 1", 0.09997),
                         ("head 0 -> expert 2", 0.0700)):
        rows.append({"intervention": label, "group": "all", "users": 10, "NDCG@10": value})
    table = pd.DataFrame(rows)
    table["delta NDCG@10"] = table["NDCG@10"] - 0.1
    table["relative NDCG@10"] = table["delta NDCG@10"] / 0.1
    fig = F.knockout_heatmap(table)
    cells = [t for row in fig.data[0].text for t in row]
    assert "-0%" not in cells and "−0%" not in cells and "0%" in cells and "-30%" in cells
    assert fig.layout.title.text.startswith("Expert forcing")
    table["intervention"] = table["intervention"].str.replace(r"head 0 -> expert", "remove head",
                                                              regex=True)
    assert F.knockout_heatmap(table).layout.title.text.startswith("Knockouts")


def test_routing_heatmap_has_whole_ticks_and_a_caption_that_matches_its_axes():
    routing = pd.DataFrame({"position": np.arange(4), "item": [1, 2, 3, 4],
                            "expert 0": [0.5, 0.2, 0.1, 0.9], "expert 1": [0.5, 0.8, 0.9, 0.1]})
    fig = F.user_routing_heatmap(routing)
    assert fig.layout.xaxis.tickmode == "linear" and fig.layout.xaxis.dtick == 1
    assert fig.layout.xaxis.tick0 == 0
    rows_axis = fig.layout.yaxis.title.text  # the heatmap's rows
    columns_axis = fig.layout.xaxis.title.text
    caption = fig.layout.title.text
    assert f"rows: {rows_axis}s" in caption and f"columns: {columns_axis.split()[0]}s" in caption
    long = pd.DataFrame({"position": np.arange(200), "item": np.arange(1, 201),
                         "expert 0": 0.5, "expert 1": 0.5})
    assert F.user_routing_heatmap(long).layout.xaxis.dtick == 10  # whole steps, <= 20 ticks


def test_routing_heatmap_names_each_position_by_its_items_title():
    routing = pd.DataFrame({"position": np.arange(3), "item": [1, 2, 3],
                            "expert 0": [0.5, 0.2, 0.1], "expert 1": [0.5, 0.8, 0.9]})
    items = pd.DataFrame({"title": ["Lip balm", "A very long shampoo title for dry hair", ""]},
                         index=pd.RangeIndex(1, 4, name="item_id"))
    plain = F.user_routing_heatmap(routing, height=300)
    titled = F.user_routing_heatmap(routing, items=items, height=300)
    axis = titled.layout.xaxis
    assert list(axis.tickvals) == [0, 1, 2] and axis.tickangle == -45 and axis.automargin
    assert list(axis.ticktext) == ["0 · Lip balm", "1 · A very long shampoo t…", "2 · item 3"]
    assert titled.layout.height == plain.layout.height + 110  # room for the angled titles
    assert axis.title.text == plain.layout.xaxis.title.text
    many = pd.DataFrame({"position": np.arange(80), "item": np.ones(80, int),
                         "expert 0": 0.5, "expert 1": 0.5})
    assert F.user_routing_heatmap(many, items=items).layout.xaxis.ticktext is None  # too many


def test_an_ordinal_field_keeps_its_order_and_other_points_name_their_value():
    labels = np.array([None, "premium", "budget", "luxury", "mid-range", "budget"], dtype=object)
    fig = F.embedding_scatter(np.random.default_rng(0).random((5, 2)), labels, field="price_tier")
    assert [t.name for t in fig.data] == ["budget", "mid-range", "premium", "luxury"]
    lightness = [sum(int(c) for c in t.marker.color[4:-1].split(",")) for t in fig.data]
    assert lightness == sorted(lightness, reverse=True)  # cheap = light, dear = dark
    brands = np.array([None] + [f"brand {i}" for i in range(12)], dtype=object)
    fig = F.embedding_scatter(np.random.default_rng(0).random((12, 2)), brands, field="brand",
                              top_n=3)
    other = [t for t in fig.data if t.name == "other"][0]
    assert all("brand: brand " in text and "brand: other" not in text for text in other.text)


def test_gates_by_group_show_the_group_effect_not_the_head_effect():
    by_group = pd.DataFrame({"group": ["a"] * 2 + ["b"] * 2, "head": [0, 1, 0, 1],
                             "mean_gate": [0.70, 0.30, 0.60, 0.40], "users": [30, 30, 10, 10]})
    fig = F.gates_by_group_heatmap(by_group)
    z = np.asarray(fig.data[0].z, dtype=float)
    weights = np.array([30, 10])
    assert np.allclose(weights @ z, 0.0)  # each head's weighted mean taken out
    assert fig.data[0].zmid == 0.0 and z[0, 0] == pytest.approx(0.025)
    raw = F.gates_by_group_heatmap(by_group, centred=False)
    assert np.allclose(np.asarray(raw.data[0].z, dtype=float), [[0.7, 0.3], [0.6, 0.4]])


def test_gate_group_test_reads_a_planted_group_effect():
    from famekit.analysis.activations import Activations

    rng = np.random.default_rng(0)
    users = 300
    groups = np.repeat(np.array(["genre", "brand", "price_tier"], dtype=object), users // 3)
    head0 = np.where(groups == "genre", 0.6, 0.4) + rng.normal(0, 0.02, users)
    gates = np.stack([head0, 1 - head0], axis=1).astype(np.float32)  # [U, 2], one position each
    acts = Activations(users=np.arange(users), offsets=np.arange(users + 1),
                       items=np.ones(users, dtype=np.int64),
                       flat_index=np.zeros(users, dtype=np.int64), gates=gates,
                       router=np.full((users, 2, 2), 0.5, dtype=np.float32), head_repr=None,
                       targets=np.ones(users, dtype=np.int64), split="test")
    found = A.gate_group_test(acts, groups, n_permutations=199, n_boot=200)
    assert found.tests["differs"].all() and (found.tests["eta_squared"] > 0.9).all()
    cell = found.cells.set_index(["group", "head"])
    assert cell.loc[("genre", 0), "ci_low"] > cell.loc[("brand", 0), "ci_high"]
    flat = A.gate_group_test(acts, rng.permutation(groups), n_permutations=199, n_boot=200)
    assert not flat.tests["differs"].any()
