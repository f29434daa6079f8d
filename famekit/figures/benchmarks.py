"""Benchmark views: the reproduction table and the speed comparison.

Inputs are the files ``benchmarks/reproduce.py`` and ``benchmarks/speed.py`` write under
``reports/benchmarks/``: ``results.csv`` (one row per dataset and model: ``<metric>_mean`` and
``<metric>_std`` over seeds) and ``speed.json``. :func:`read_benchmarks` reads both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from famekit.errors import DataFormatError, ParameterError
from famekit.figures.checks import read_csv_file, require_frame
from famekit.figures.style import apply_style, legend_below
from famekit.figures.training import FALLBACK_COLORS, MODEL_COLORS
from famekit.fileio import read_json

__all__ = ["model_label", "ratio_bar", "read_benchmarks", "results_bar", "speed_bars",
           "time_to_quality_curves"]

LABELS = {"fame": "FAME", "sasrec": "SASRec", "popularity": "popularity",
          "recbole-sasrec": "RecBole SASRec"}
COLORS = {**MODEL_COLORS, "RecBole SASRec": "#009E73"}


def model_label(name: str) -> str:
    """Display name of a benchmark model: ``fame:router=uniform`` -> ``FAME router=uniform``."""
    kind, _, spec = str(name).partition(":")
    label = LABELS.get(kind, kind)
    return f"{label} {spec.replace(',', ' ')}" if spec else label


def _color(label: str, index: int) -> str:
    return COLORS.get(label, FALLBACK_COLORS[index % len(FALLBACK_COLORS)])


def read_benchmarks(folder) -> tuple[pd.DataFrame, dict | None]:
    """(``results.csv`` as a DataFrame, ``speed.json`` as a dict or None) of ``folder``."""
    folder = Path(folder)
    path = folder / "results.csv"
    results = read_csv_file(
        path, "run benchmarks/reproduce.py (it writes results.csv under reports/benchmarks/), "
        "or pass the folder that holds it", "rebuild it: benchmarks/reproduce.py --table-only")
    require_frame(results, str(path), ["dataset", "model", "NDCG@10_mean"],
                  "benchmarks/reproduce.py --table-only")
    speed_path = folder / "speed.json"
    speed = None
    if speed_path.is_file():
        speed = read_json(speed_path, fix="re-run benchmarks/speed.py", error=DataFormatError)
    return results, speed


def results_bar(results: pd.DataFrame, *, metric: str = "NDCG@10", models=None,
                datasets=None, title: str | None = None, height: int = 460) -> go.Figure:
    """Grouped bars of ``metric`` per dataset (x) and model (colour); error bars = std over
    seeds (none for a single seed); the number of seeds is in the hover text."""
    column = f"{metric}_mean"
    require_frame(results, "results", ["dataset", "model", column],
                  "famekit.figures.read_benchmarks(folder)[0]")
    frame = results
    if models is not None:
        frame = frame[frame["model"].isin(list(models))]
    if datasets is not None:
        frame = frame[frame["dataset"].isin(list(datasets))]
    if frame.empty:
        raise ParameterError(
            f"no rows left for models={models} datasets={datasets}. Fix: choose from models "
            f"{sorted(results['model'].unique())} and datasets "
            f"{sorted(results['dataset'].unique())}"
        )
    order = list(dict.fromkeys(frame["dataset"]))
    fig = go.Figure()
    for i, model in enumerate(dict.fromkeys(frame["model"])):
        rows = frame[frame["model"] == model].set_index("dataset").reindex(order)
        label = model_label(model)
        std = rows.get(f"{metric}_std", pd.Series(np.nan, index=rows.index)).fillna(0.0)
        seeds = rows.get("seeds", pd.Series("", index=rows.index)).fillna("").astype(str)
        fig.add_trace(go.Bar(
            x=order, y=rows[column], name=label, marker_color=_color(label, i),
            error_y={"type": "data", "array": std.to_numpy(), "visible": True},
            customdata=np.stack([std.to_numpy(), seeds.to_numpy()], axis=1),
            hovertemplate=(f"{label}<br>%{{x}}: {metric} %{{y:.4f}} ± %{{customdata[0]:.4f}}"
                           "<br>seeds %{customdata[1]}<extra></extra>"),
        ))
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text=f"test {metric} (0-1)", rangemode="tozero")
    fig.update_xaxes(title_text="dataset")
    legend_below(fig)
    return apply_style(fig, title or f"Test {metric} by dataset and model",
                       "full ranking, history excluded; bars = mean over seeds, whiskers = std",
                       height=height)


def ratio_bar(results: pd.DataFrame, *, numerator: str = "fame", denominator: str = "sasrec",
              metric: str = "NDCG@10", target: float | None = 1.05, title: str | None = None,
              height: int = 380) -> go.Figure:
    """``numerator`` / ``denominator`` of ``metric`` per dataset, with a dashed target line."""
    column = f"{metric}_mean"
    require_frame(results, "results", ["dataset", "model", column],
                  "famekit.figures.read_benchmarks(folder)[0]")
    table = results.pivot_table(index="dataset", columns="model", values=column, sort=False)
    for name in (numerator, denominator):
        if name not in table.columns:
            raise ParameterError(f"model {name!r} is not in the results. Fix: choose from "
                                 f"{sorted(table.columns)}")
    ratio = (table[numerator] / table[denominator]).dropna()
    colors = ["#0072B2" if target is None or r >= target else "#8C8C8C" for r in ratio]
    fig = go.Figure(go.Bar(x=list(ratio.index), y=ratio.to_numpy(), marker_color=colors,
                           text=[f"{r:.3f}" for r in ratio], textposition="outside",
                           hovertemplate="%{x}: %{y:.3f}<extra></extra>"))
    fig.add_hline(y=1.0, line={"color": "#000000", "width": 1})
    if target is not None:
        fig.add_hline(y=target, line={"color": "#D55E00", "dash": "dash"},
                      annotation_text=f"target {target:g}", annotation_position="top left")
    fig.update_yaxes(title_text=f"{metric} ratio", range=[0, max(1.2, float(ratio.max()) + 0.1)
                                                          if len(ratio) else 1.2])
    fig.update_xaxes(title_text="dataset")
    return apply_style(fig, title or f"{model_label(numerator)} / {model_label(denominator)}",
                       f"test {metric}, means over seeds", height=height)


def _speed_summary(speed: dict) -> dict:
    if not isinstance(speed, dict) or "systems" not in speed:
        raise ParameterError(
            "speed must be the dict of reports/benchmarks/speed.json. "
            "Fix: pass famekit.figures.read_benchmarks(folder)[1]"
        )
    return speed.get("converged") or speed


def speed_bars(speed: dict, *, title: str | None = None, height: int = 420) -> go.Figure:
    """Panels per system: training seconds per epoch; wall seconds (training + validation) to
    reach RecBole SASRec's best validation NDCG@10; and, when the report has it, to the
    common target (the lowest best of the systems, which every one reaches). Converged runs
    are used if the report has them."""
    summary = _speed_summary(speed)
    systems = summary["systems"]
    labels = [model_label(s) for s in systems]
    colors = [_color(label, i) for i, label in enumerate(labels)]
    panels = [("time_to_recbole_best", "s to RecBole's best valid NDCG@10")]
    if "time_to_common_target" in summary:
        panels.append(("time_to_common_target", "s to the common target"))
    fig = make_subplots(rows=1, cols=1 + len(panels), horizontal_spacing=0.1,
                        subplot_titles=("train s per epoch", *(t for _, t in panels)))
    epoch_s = [systems[s]["epoch_seconds_mean"] for s in systems]
    fig.add_trace(go.Bar(x=labels, y=epoch_s, marker_color=colors, showlegend=False,
                         text=[f"{v:.0f}" for v in epoch_s], textposition="outside",
                         hovertemplate="%{x}: %{y:.1f} s/epoch<extra></extra>"), row=1, col=1)
    for col, (key, _) in enumerate(panels, start=2):
        reach = summary.get(key, {})
        seconds = [(reach.get(s) or {}).get("seconds") for s in systems]
        fig.add_trace(go.Bar(
            x=labels, y=[v if v is not None else 0.0 for v in seconds], marker_color=colors,
            showlegend=False, textposition="outside",
            text=[f"{v:.0f}" if v is not None else "not reached" for v in seconds],
            hovertemplate="%{x}: %{y:.0f} s<extra></extra>"), row=1, col=col)
    fig.update_yaxes(title_text="seconds", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(rangemode="tozero")
    parts = []
    if summary.get("recbole_best_valid_NDCG@10") is not None:
        parts.append(f"RecBole's best valid NDCG@10 {summary['recbole_best_valid_NDCG@10']:.4f}")
    if summary.get("common_target_valid_NDCG@10") is not None:
        parts.append(f"common target {summary['common_target_valid_NDCG@10']:.4f}")
    return apply_style(fig, title or "Speed on the same machine", "; ".join(parts) or None,
                       height=height, top_extra=28)


def time_to_quality_curves(histories: dict, *, target: float | None = None,
                           title: str | None = None, height: int = 440) -> go.Figure:
    """Validation NDCG@10 against cumulative wall seconds, one line per system.

    ``histories``: ``{system: [{"cumulative_seconds", "valid_NDCG@10", "epoch"}, ...]}`` as in
    speed.json's ``converged_histories``; ``target`` draws RecBole's best as a dashed line.
    """
    if not isinstance(histories, dict) or not histories:
        raise ParameterError("histories must be a non-empty dict {system: [epoch rows]}. "
                             "Fix: pass speed['converged_histories']")
    fig = go.Figure()
    for i, (system, rows) in enumerate(histories.items()):
        label = model_label(system)
        x = [float(r["cumulative_seconds"]) / 60 for r in rows]
        y = [float(r["valid_NDCG@10"]) for r in rows]
        fig.add_trace(go.Scatter(
            x=x, y=y, mode="lines+markers", name=label, marker={"size": 4},
            line={"color": _color(label, i)}, customdata=[r.get("epoch") for r in rows],
            hovertemplate=(f"{label}<br>epoch %{{customdata}}: %{{y:.4f}} after "
                           "%{x:.1f} min<extra></extra>")))
    if target is not None:
        fig.add_hline(y=target, line={"color": "#000000", "dash": "dash"},
                      annotation_text="RecBole's best", annotation_position="bottom right")
    fig.update_xaxes(title_text="wall minutes (training + validation)", rangemode="tozero")
    fig.update_yaxes(title_text="valid NDCG@10 (0-1)", rangemode="tozero")
    legend_below(fig)
    return apply_style(fig, title or "Validation NDCG@10 over wall time", height=height)
