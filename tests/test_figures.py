"""Figure builders on the analyses of a tiny trained FAME run, their input checks, and export.

One tiny run per module (a few seconds); UMAP is never fitted here (layouts are random arrays:
the builders only draw what they are given).
"""

import math
import re
import struct

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from famekit import analysis as A
from famekit import figures as F
from famekit.baselines import Popularity
from famekit.checkpoints import load_run
from famekit.errors import DataFormatError, FamekitError, ParameterError
from famekit.evaluation import evaluate
from famekit.figures.export import PNG_MAGIC, ChromiumNotFoundError

H, N = 4, 3  # heads and experts of the tiny run (conftest.py: tiny_fame_run)


@pytest.fixture(scope="module")
def world(tiny_world):
    return tiny_world


@pytest.fixture(scope="module")
def run_dir(tiny_fame_run):
    assert (tiny_fame_run.n_heads, tiny_fame_run.n_experts) == (H, N)
    return tiny_fame_run.path


@pytest.fixture(scope="module")
def fame(world, run_dir):
    return load_run(run_dir, dataset=world).model


@pytest.fixture(scope="module")
def acts(fame, world):
    return A.collect_activations(fame, world, batch_size=64)


@pytest.fixture(scope="module")
def user(acts):
    return int(acts.users[2])


@pytest.fixture(scope="module")
def alignment(fame, world):
    return A.alignment_matrix(fame, world, n_random_inits=1)


def _traces(fig, kind):
    return [t for t in fig.data if t.type == kind]


# ---------------------------------------------------------------------------------- gates
def test_gate_summary_and_distribution(acts):
    summary = A.gate_summary(acts)
    fig = F.gate_summary_bar(summary)
    bars = _traces(fig, "bar")
    assert isinstance(fig, go.Figure) and len(bars) == 2
    assert list(bars[0].x) == [f"head {h}" for h in range(H)]
    assert np.allclose(bars[0].y, summary["mean_gate"]) and np.allclose(bars[1].y,
                                                                        summary["top_head_share"])
    assert np.allclose(bars[0].error_y.array, summary["std_gate"])
    assert fig.layout.yaxis.title.text == "gate weight (0-1)"
    # the uniform level 1/H is drawn in both panels
    assert [s.y0 for s in fig.layout.shapes] == [pytest.approx(1 / H)] * 2
    assert list(F.gate_summary_bar(summary, heads=[2, 0]).data[0].x) == ["head 2", "head 0"]
    with pytest.raises(ParameterError, match=r"heads=\[7\].*choose from \[0, 1, 2, 3\]"):
        F.gate_summary_bar(summary, heads=[7])
    with pytest.raises(ParameterError, match="summary lacks the column.*gate_summary"):
        F.gate_summary_bar(summary.drop(columns="std_gate"))

    users = A.user_gates(acts)
    boxes = F.gate_distribution(users)
    assert [t.type for t in boxes.data] == ["box"] * H
    assert np.allclose(boxes.data[1].y, users["head 1"])
    violins = F.gate_distribution(users, kind="violin", heads=[1, 3])
    assert [t.name for t in violins.data] == ["head 1", "head 3"]
    assert {t.type for t in violins.data} == {"violin"}
    with pytest.raises(ParameterError, match="kind='bar'"):
        F.gate_distribution(users, kind="bar")
    with pytest.raises(ParameterError, match="no 'head <h>' columns"):
        F.gate_distribution(users[["user", "top_head"]])


def test_gates_by_group_and_along_sequence(acts, world, user):
    groups = A.user_majority_labels(world, "genre", [world.sequence(u)[:-1] for u in acts.users])
    by_group = A.gates_by_group(acts, groups, min_users=1)
    fig = F.gates_by_group_heatmap(by_group)
    (heat,) = fig.data
    n_groups = by_group["group"].nunique()
    assert np.asarray(heat.z).shape == (min(15, n_groups), H)
    top2 = F.gates_by_group_heatmap(by_group, top_k=2, heads=[0, 3]).data[0]
    assert np.asarray(top2.z).shape == (2, 2) and list(top2.x) == ["head 0", "head 3"]
    largest = by_group.groupby("group")["users"].max().idxmax()
    assert top2.y[0].startswith(f"{largest} (")
    with pytest.raises(ParameterError, match="top_k=0"):
        F.gates_by_group_heatmap(by_group, top_k=0)

    along = A.gates_along_sequence(acts, user)
    chart = F.gates_along_sequence_chart(along, items=world.items, position=1)
    assert [t.name for t in chart.data] == [f"head {h}" for h in range(H)]
    assert np.allclose(chart.data[2].y, along["head 2"])
    assert chart.layout.shapes[0].x0 == 1  # the marked position
    first_title = world.items.at[int(along["item"].iloc[0]), "title"]
    assert first_title in chart.data[0].text[0]  # item titles on hover
    stacked = F.gates_along_sequence_chart(along, stacked=True)
    assert {t.stackgroup for t in stacked.data} == {"gates"}
    with pytest.raises(ParameterError, match="position=999"):
        F.gates_along_sequence_chart(along, position=999)

    bar = F.gates_at_position_bar(along, 1, items=world.items)
    assert np.allclose(bar.data[0].y, along.loc[1, [f"head {h}" for h in range(H)]].astype(float))
    default = F.gates_at_position_bar(along)  # the last position by default
    assert np.allclose(default.data[0].y,
                       along.iloc[-1][[f"head {h}" for h in range(H)]].astype(float))


# ---------------------------------------------------------------------------------- routing
def test_expert_load_distribution_and_entropy(acts):
    load = A.expert_load(acts)
    fig = F.expert_load_heatmap(load)
    soft, hard = fig.data
    assert np.asarray(soft.z).shape == (H, N)
    expected = load.pivot(index="head", columns="expert", values="top_share").to_numpy()
    assert np.allclose(hard.z, expected)
    assert np.asarray(F.expert_load_heatmap(load, heads=[1]).data[0].z).shape == (1, N)

    dist = A.router_distribution(acts, bins=10)
    hist = F.router_distribution_histogram(dist)
    assert len(hist.data) == H * N and {t.type for t in hist.data} == {"scatter"}
    # outlines, not overlaid translucent bars that blend four experts into one colour
    assert hist.layout.barmode != "overlay" and all(t.opacity in (None, 1) for t in hist.data)
    assert sum(t.showlegend for t in hist.data) == N  # one legend entry per expert
    some = F.router_distribution_histogram(dist, heads=[0, 1], experts=[2])
    assert [t.name for t in some.data] == ["expert 2", "expert 2"]
    assert np.isclose(np.sum(some.data[0].y), 1.0)
    with pytest.raises(ParameterError, match="experts=.*expert 5"):
        F.router_distribution_histogram(dist, experts=[5])

    ent = A.routing_entropy(acts)
    bars = F.routing_entropy_bar(ent)
    assert np.allclose(bars.data[0].y, ent["mean_entropy"])
    assert bars.layout.shapes[0].y0 == pytest.approx(math.log(N))  # the log N maximum
    assert bars.layout.yaxis.title.text == "entropy (nats)"


def test_user_routing_and_enrichment(acts, world, user):
    routing = A.user_routing(acts, user, head=2)
    fig = F.user_routing_heatmap(routing, items=world.items, head=2, position=0)
    (heat,) = fig.data
    experts = [f"expert {e}" for e in range(N)]
    assert np.allclose(heat.z, routing[experts].to_numpy().T)  # experts x positions
    assert list(heat.y) == experts and "head 2" in fig.layout.title.text
    title = world.items.at[int(routing["item"].iloc[0]), "title"]
    assert title in heat.customdata[0][0]
    assert fig.layout.shapes[0].x0 == -0.5
    with pytest.raises(ParameterError, match="no 'expert <e>' columns"):
        F.user_routing_heatmap(routing.drop(columns=experts))

    labels = A.item_labels(world, "genre")
    enrichment = A.expert_enrichment(acts, labels, min_count=5)
    fig = F.expert_enrichment_heatmap(enrichment, 1, top_labels=3, field="genre")
    (heat,) = fig.data
    part = enrichment[enrichment["head"] == 1]
    top = part.groupby("label")["positions"].max().sort_values(ascending=False).index[:3]
    lift = part.pivot(index="label", columns="expert", values="lift").loc[top].to_numpy()
    assert np.allclose(heat.customdata, lift)
    assert np.allclose(heat.z, np.log2(np.clip(lift, 2.0 ** -4, None)))  # diverging around 1x
    assert heat.zmid == 0 and heat.zmin == -heat.zmax
    assert "lift over base rate (x)" in heat.colorbar.title.text
    with pytest.raises(ParameterError, match="head 9 does not exist"):
        F.expert_enrichment_heatmap(enrichment, 9)
    with pytest.raises(ParameterError, match="single head"):
        F.expert_enrichment_heatmap(enrichment, [0, 1])


# ---------------------------------------------------------------------------------- embeddings
def test_embedding_scatter_and_grid(world):
    rng = np.random.default_rng(0)
    V = world.n_items
    layouts = {h: rng.normal(size=(V, 2)) for h in range(H)}
    layouts["full"] = rng.normal(size=(V, 2))
    labels = A.item_labels(world, "brand").copy()
    labels[5] = None  # one item without a brand
    fig = F.embedding_scatter(layouts[0], labels, items=world.items, top_n=3, field="brand")
    names = [t.name for t in fig.data]
    assert names[0] == "missing" and names[-1] == "other" and len(names) == 5
    assert sum(len(t.x) for t in fig.data) == V
    missing = fig.data[0]
    assert len(missing.x) == 1 and np.allclose([missing.x[0], missing.y[0]], layouts[0][4])
    assert world.items.at[5, "title"] in missing.text[0]
    counts = pd.Series([v for v in labels[1:] if v is not None]).value_counts()
    assert names[1] == counts.index[0] and len(fig.data[1].x) == counts.iloc[0]
    assert len(F.embedding_scatter(layouts[0]).data) == 1  # no labels: one colour

    grid = F.embedding_grid(layouts, labels, items=world.items, top_n=3, field="brand")
    assert len(grid.data) == 5 * 5  # 5 panels x 5 categories
    colour = {(t.name, t.xaxis): t.marker.color for t in grid.data}
    for name in names:  # a label keeps its colour in every panel
        assert len({c for (n, _), c in colour.items() if n == name}) == 1
    assert sum(t.showlegend for t in grid.data) == 5
    assert len(F.embedding_grid(layouts, keys=["full", 1]).data) == 2
    few = F.embedding_grid(layouts, labels, items=world.items, max_points=20, keys=[0, "full"])
    shown = [t for t in few.data if t.xaxis == "x"]
    assert sum(len(t.x) for t in shown) == 20
    first = {(round(x, 5), round(y, 5)) for t in shown for x, y in zip(t.x, t.y)}
    assert first <= {(round(x, 5), round(y, 5)) for x, y in layouts[0]}  # real points, no copies
    titles = [text for t in shown for text in t.text]
    for t in shown:  # the hover text still belongs to the point drawn
        for x, y, text in zip(t.x, t.y, t.text):
            row = int(np.flatnonzero(np.isclose(layouts[0][:, 0], x)
                                     & np.isclose(layouts[0][:, 1], y))[0])
            assert world.items.at[row + 1, "title"] in text
    assert len(titles) == 20
    with pytest.raises(ParameterError, match=f"{V + 1} \\(one per item id"):
        F.embedding_scatter(layouts[0], labels[:-3])
    with pytest.raises(ParameterError, match=r"layout must be a float array \[V, 2\]"):
        F.embedding_scatter(np.zeros((V, 3)))
    with pytest.raises(ParameterError, match="keys=.*'umap'"):
        F.embedding_grid(layouts, keys=["umap"])


# ---------------------------------------------------------------------------------- alignment
def test_alignment_views(alignment):
    fields = list(dict.fromkeys(alignment["field"]))
    fig = F.alignment_heatmap(alignment)
    (heat,) = fig.data
    assert list(heat.y) == [f"head {h}" for h in range(H)] + ["full"]
    assert list(heat.x) == fields
    cell = alignment.set_index(["embedding", "field"]).loc[("head 1", fields[0]), "agreement"]
    assert heat.z[1][0] == pytest.approx(cell)
    marked = alignment.copy()
    marked.loc[(marked["embedding"] == "head 2") & (marked["field"] == fields[1]),
               "aligned"] = True
    text = F.alignment_heatmap(marked).data[0].text
    assert "\u2605" in text[2][1] and "\u2605" not in text[0][0]
    lift = F.alignment_heatmap(alignment, value="lift", include_full=False).data[0]
    assert len(lift.y) == H and lift.zmid == 0
    with pytest.raises(ParameterError, match="value='z'"):
        F.alignment_heatmap(alignment, value="z")

    nulls = F.alignment_nulls_chart(alignment, fields=fields[:2])
    assert len(nulls.data) == 2 * 3  # per field: agreement bars, null band, random-init ticks
    agreement, band, random_init = nulls.data[:3]
    part = alignment[alignment["field"] == fields[0]]
    assert np.allclose(agreement.y, part["agreement"])
    assert np.allclose(band.base, part["perm_mean"] - 2 * part["perm_std"])
    assert np.allclose(band.y, 4 * part["perm_std"])
    assert np.allclose(random_init.y, part["random_init"])
    with pytest.raises(ParameterError, match="alignment lacks the column.*alignment_matrix"):
        F.alignment_nulls_chart(alignment.drop(columns="perm_std"))
    with pytest.raises(ParameterError, match="fields=.*'colour'"):
        F.alignment_nulls_chart(alignment, fields=["colour"])


# ---------------------------------------------------------------------------------- knockouts
def test_knockout_views(fame, world):
    table = A.head_knockout_table(fame, world, A.item_labels(world, "genre"), max_users=80)
    fig = F.knockout_delta_bar(table)
    assert [t.name.split()[0] for t in fig.data] == ["HR@10", "NDCG@10"]
    removed = [f"remove head {h}" for h in range(H)]
    assert list(fig.data[0].x) == removed
    everyone = table[table["group"] == "all"].set_index("intervention")
    assert np.allclose(fig.data[1].y, everyone.loc[removed, "delta NDCG@10"])
    whiskers = fig.data[1].error_y  # the paired interval, drawn around each bar
    assert np.allclose(np.asarray(fig.data[1].y) + np.asarray(whiskers.array),
                       everyone.loc[removed, "delta NDCG@10 high"])
    assert np.allclose(np.asarray(fig.data[1].y) - np.asarray(whiskers.arrayminus),
                       everyone.loc[removed, "delta NDCG@10 low"])
    assert "bootstrap interval" in fig.layout.title.text
    bare = F.knockout_delta_bar(table.drop(columns=[c for c in table if c.endswith(("low",
                                                                                    "high"))]))
    assert bare.data[0].error_y.array is None and "bootstrap" not in bare.layout.title.text
    relative = F.knockout_delta_bar(table, relative=True, metrics="HR@10")
    assert np.allclose(relative.data[0].y, 100 * everyone.loc[removed, "relative HR@10"],
                       equal_nan=True)

    heat = F.knockout_heatmap(table, top_k=3).data[0]
    assert list(heat.y) == removed
    assert heat.x[0].startswith("all") and len(heat.x) == 4
    assert heat.zmid == 0
    assert np.allclose(np.asarray(heat.z, dtype=float)[:, 0],
                       100 * everyone.loc[removed, "relative NDCG@10"], equal_nan=True)
    with pytest.raises(ParameterError, match="'MRR'.*no 'delta MRR' column"):
        F.knockout_delta_bar(table, metrics=["MRR"])
    with pytest.raises(ParameterError, match="group='Nonexistent'"):
        F.knockout_delta_bar(table, group="Nonexistent")


# ---------------------------------------------------------------------------------- anatomy
def test_anatomy_views(fame, world, user):
    anatomy = A.recommendation_anatomy(fame, world, user, k=6)
    fig = F.anatomy_contributions_bar(anatomy)
    bars, (total,) = _traces(fig, "bar"), _traces(fig, "scatter")
    assert len(bars) == H and fig.layout.barmode == "relative"
    stacked = np.sum([np.asarray(b.x) for b in bars], axis=0)
    assert np.allclose(stacked, anatomy.fused["score"], atol=1e-5)  # contributions add up
    assert np.allclose(total.x, anatomy.fused["score"])
    assert anatomy.fused["title"].iloc[0][:20] in bars[0].y[0]
    assert f"gate {anatomy.gates[0]:.2f}" in bars[0].name
    with_target = A.Anatomy(**{**anatomy.__dict__, "target": int(anatomy.fused["item"].iloc[1])})
    assert "\u2605" in F.anatomy_contributions_bar(with_target).data[0].y[1]
    assert len(F.anatomy_contributions_bar(anatomy.fused, heads=[1]).data) == 2
    with pytest.raises(ParameterError, match="anatomy must be"):
        F.anatomy_contributions_bar({"fused": 1})

    table = F.per_head_topk_table(anatomy)
    (tab,) = table.data
    assert len(tab.header.values) == 2 + H  # rank, fused, one column per head
    assert len(tab.cells.values[0]) == 6
    top_item = anatomy.per_head[3]["title"].iloc[0]
    assert tab.cells.values[2 + 3][0].startswith(top_item[:20])
    assert len(F.per_head_topk_table(anatomy.per_head, heads=[0], top_k=2).data[0]
               .cells.values[1]) == 2

    history = F.history_table(anatomy, position=len(anatomy.history) - 1, last=5)
    (tab,) = history.data
    assert list(tab.cells.values[0]) == list(anatomy.history["position"].iloc[-5:])
    assert tab.cells.fill.color[0][-1] != tab.cells.fill.color[0][0]  # highlighted row
    with pytest.raises(ParameterError, match="position=0 is not among"):
        F.history_table(anatomy, position=0, last=5)


# ---------------------------------------------------------------------------------- recovery
def test_recovery_bar(acts, world, alignment):
    facets = A.facet_recovery(alignment, world)
    head_facet = A.head_facet_map(alignment, world)
    driving = A.driving_facet_accuracy(acts, world, head_facet)
    nmi = A.interest_expert_nmi(acts, world, head_facet)
    fig = F.recovery_bar(facets, driving, nmi)
    assert len(fig.data) == 6 and [t.name for t in fig.data[:2]] == ["measured", "chance level"]
    assert np.allclose(fig.data[0].y, facets["agreement"])
    assert np.allclose(fig.data[1].y, facets["chance"])
    assert fig.data[2].y[0] == pytest.approx(driving["accuracy"])
    assert np.allclose(fig.data[5].y, nmi["chance"])
    assert len(F.recovery_bar(driving=driving).data) == 2
    with pytest.raises(ParameterError, match="at least one of"):
        F.recovery_bar()
    with pytest.raises(ParameterError, match="driving must be"):
        F.recovery_bar(driving={"accuracy": 0.5})


# ---------------------------------------------------------------------------------- training
def test_training_views(run_dir, fame, world, tmp_path):
    history = F.read_training_history(run_dir)
    assert list(history["epoch"]) == [1, 2]
    fig = F.training_curves({"FAME": history, "SASRec": history.assign(
        train_loss=history["train_loss"] + 0.5)})
    loss = [t for t in fig.data if t.yaxis == "y"]
    assert [t.name for t in loss] == ["FAME", "SASRec"]
    assert np.allclose(loss[0].y, history["train_loss"])
    valid = [t for t in fig.data if t.yaxis == "y2" and t.mode == "lines+markers"]
    assert np.allclose(valid[0].y, history["valid_NDCG@10"])
    star = next(t for t in fig.data if t.marker.symbol == "star")
    assert star.x[0] == history.loc[history["valid_NDCG@10"].idxmax(), "epoch"]
    assert fig.layout.yaxis.title.text == "cross-entropy (nats)"
    assert len(F.training_curves(history, metric="HR@10").data) == 3
    with pytest.raises(ParameterError, match="valid_HR@3"):
        F.training_curves(history, metric="HR@3")
    with pytest.raises(ParameterError, match="does not exist.*run directory"):
        F.read_training_history(tmp_path)
    broken = tmp_path / "metrics.csv"
    broken.write_text("step,loss\n1,2\n")
    with pytest.raises(DataFormatError, match=r"metrics.csv, line 1: the header lacks"):
        F.read_training_history(broken)

    results = {"FAME": evaluate(fame, world, progress=False),
               "popularity": evaluate(Popularity.fit(world), world, progress=False)}
    compare = F.metrics_comparison_bar(results)
    assert [t.name for t in compare.data] == ["FAME", "popularity"]
    assert list(compare.data[0].x) == ["HR@10", "NDCG@10"]
    assert compare.data[1].y[1] == pytest.approx(results["popularity"]["NDCG@10"])
    frame = pd.DataFrame(results).T.rename_axis("model").reset_index()
    assert np.allclose(F.metrics_comparison_bar(frame, metrics="MRR").data[0].y,
                       [results["FAME"]["MRR"]])
    with pytest.raises(ParameterError, match=r"metrics \['HR@7'\]"):
        F.metrics_comparison_bar(results, metrics=["HR@7"])


# ---------------------------------------------------------------------------------- export
def test_save_html_self_contained_cdn_and_bare(acts, tmp_path):
    fig = F.gate_summary_bar(A.gate_summary(acts), title="export round trip")
    path = F.save_html(fig, tmp_path / "sub" / "gates.html")
    text = path.read_text(encoding="utf-8")
    assert len(text) > 1_000_000 and "Plotly.newPlot" in text  # plotly.js is embedded
    assert not re.search(r"<script[^>]*src=\"https?://", text)  # nothing loaded from a CDN
    assert "export round trip" in text
    assert [p.name for p in path.parent.iterdir()] == ["gates.html"]  # no temp file left
    cdn = F.save_html(fig, tmp_path / "cdn.html", include_plotlyjs="cdn").read_text()
    assert re.search(r"<script[^>]*src=\"https://cdn\.plot\.ly/", cdn) and len(cdn) < 200_000
    bare = F.save_html(fig, tmp_path / "bare.html", include_plotlyjs=False).read_text()
    assert "cdn.plot.ly" not in bare and "Plotly.newPlot" in bare
    with pytest.raises(ParameterError, match="include_plotlyjs='directory'"):
        F.save_html(fig, tmp_path / "x.html", include_plotlyjs="directory")
    with pytest.raises(ParameterError, match="fig must be a plotly Figure"):
        F.save_html({"data": []}, tmp_path / "x.html")


def test_png_export_says_what_to_install_without_chromium(tmp_path, monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-browser"))
    assert F.find_chromium() is None
    with pytest.raises(ChromiumNotFoundError, match="apt-get install chromium") as err:
        F.save_png(go.Figure(), tmp_path / "x.png")
    assert isinstance(err.value, FamekitError) and not (tmp_path / "x.png").exists()
    with pytest.raises(ParameterError, match="scale=0"):
        F.save_png(go.Figure(), tmp_path / "x.png", scale=0)


@pytest.mark.browser
def test_png_export_with_chromium(acts, tmp_path):
    if F.find_chromium() is None:
        pytest.skip("no Chromium found: install it with `apt-get install chromium` to test "
                    "PNG export (kaleido never downloads a browser here)")
    fig = F.routing_entropy_bar(A.routing_entropy(acts))
    path = F.save_png(fig, tmp_path / "entropy.png", width=400, height=300, scale=2)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (800, 600)
