"""Training views: learning curves from a run's ``metrics.csv`` and a model comparison.

``metrics.csv`` (written by :mod:`famekit.training`, one row per epoch) has ``epoch``,
``train_loss`` and ``valid_<metric>`` columns; validation cells are empty in epochs without
an evaluation. :func:`read_training_history` reads it; the views take the DataFrames.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from famekit.errors import DataFormatError, ParameterError
from famekit.figures.checks import read_csv_file, require_frame
from famekit.figures.style import apply_style
from famekit.runs import RunDir

__all__ = ["metrics_comparison_bar", "read_training_history", "training_curves"]

# Fixed colours for the usual models; others take the template's colour sequence.
MODEL_COLORS = {"FAME": "#0072B2", "SASRec": "#E69F00", "popularity": "#8C8C8C"}
FALLBACK_COLORS = ("#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#B8A200", "#000000")


def read_training_history(path) -> pd.DataFrame:
    """The per-epoch history of a run: ``path`` is a run directory or its ``metrics.csv``."""
    path = Path(path)
    csv_path = RunDir(path).history_csv if path.is_dir() else path
    history = read_csv_file(
        csv_path, "pass a run directory written by famekit train (it holds metrics.csv once an "
        "epoch has finished) or the path of its metrics.csv",
        "re-run or resume the training that writes it")
    missing = [c for c in ("epoch", "train_loss") if c not in history.columns]
    if missing:
        raise DataFormatError(csv_path, 1, f"the header lacks {missing}",
                              "pass the metrics.csv of a famekit run")
    return history


def _model_color(name: str, index: int) -> str:
    return MODEL_COLORS.get(name, FALLBACK_COLORS[index % len(FALLBACK_COLORS)])


def _as_runs(histories) -> dict[str, pd.DataFrame]:
    if isinstance(histories, pd.DataFrame):
        return {"run": histories}
    if isinstance(histories, Mapping) and histories:
        return dict(histories)
    raise ParameterError(
        f"histories must be a DataFrame or a non-empty dict {{label: DataFrame}}, got "
        f"{type(histories).__name__}. Fix: pass read_training_history(run_dir) (or a dict "
        "of them, e.g. {'FAME': ..., 'SASRec': ...})"
    )


def training_curves(histories, *, metric: str = "NDCG@10", title: str | None = None,
                    height: int = 520) -> go.Figure:
    """Two panels over epochs: training loss (top) and validation ``metric`` (bottom), one
    colour per run; a star marks each run's best validation epoch.

    ``histories``: :func:`read_training_history` of one run, or ``{label: history}``.
    """
    runs = _as_runs(histories)
    column = f"valid_{metric}"
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=("training loss", f"validation {metric}"))
    for i, (label, history) in enumerate(runs.items()):
        require_frame(history, f"histories[{label!r}]", ["epoch", "train_loss", column],
                      "famekit.figures.read_training_history(run_dir)")
        colour = _model_color(str(label), i)
        fig.add_trace(go.Scatter(
            x=history["epoch"], y=history["train_loss"], mode="lines+markers", name=str(label),
            legendgroup=str(label), line={"color": colour}, marker={"size": 5},
            hovertemplate=f"{label}<br>epoch %{{x}}: loss %{{y:.4f}}<extra></extra>",
        ), row=1, col=1)
        valid = history[["epoch", column]].dropna()
        fig.add_trace(go.Scatter(
            x=valid["epoch"], y=valid[column], mode="lines+markers", name=str(label),
            legendgroup=str(label), showlegend=False, line={"color": colour},
            marker={"size": 5},
            hovertemplate=f"{label}<br>epoch %{{x}}: {metric} %{{y:.4f}}<extra></extra>",
        ), row=2, col=1)
        if len(valid):
            best = valid.loc[valid[column].idxmax()]
            fig.add_trace(go.Scatter(
                x=[best["epoch"]], y=[best[column]], mode="markers", legendgroup=str(label),
                showlegend=False, marker={"symbol": "star", "size": 14, "color": colour,
                                          "line": {"color": "#000000", "width": 1}},
                hovertemplate=f"{label}: best epoch %{{x}}, {metric} %{{y:.4f}}"
                              "<extra></extra>",
            ), row=2, col=1)
    fig.update_yaxes(title_text="cross-entropy (nats)", row=1, col=1)
    fig.update_yaxes(title_text=f"{metric} (0-1)", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title_text="epoch", row=2, col=1)
    last = max(float(h["epoch"].max()) for h in runs.values())
    fig.update_xaxes(tick0=1, dtick=max(1, int(np.ceil(last / 10))))  # whole epochs only
    return apply_style(fig, title or "Training curves", "\u2605 = best validation epoch",
                       height=height, top_extra=28)


def _as_results(results) -> pd.DataFrame:
    if isinstance(results, pd.DataFrame):
        frame = results.set_index("model") if "model" in results.columns else results
    elif isinstance(results, Mapping) and results:
        bad = [k for k, v in results.items() if not isinstance(v, Mapping)]
        if bad:
            raise ParameterError(
                f"results[{bad[0]!r}] must be a dict of metrics (as famekit.evaluation."
                "evaluate returns). Fix: pass {'FAME': evaluate(fame, ds), ...}"
            )
        frame = pd.DataFrame.from_dict(dict(results), orient="index")
    else:
        raise ParameterError(
            f"results must be a dict {{model: metrics dict}} or a DataFrame (one row per "
            f"model), got {type(results).__name__}. Fix: pass {{'FAME': evaluate(fame, ds), "
            "'SASRec': evaluate(sasrec, ds), 'popularity': evaluate(Popularity.fit(ds), ds)}"
        )
    return frame


def metrics_comparison_bar(results, *, metrics=("HR@10", "NDCG@10"), title: str | None = None,
                           height: int = 420) -> go.Figure:
    """Grouped bars: each metric (x) for each model (colour), values printed on the bars.

    ``results``: ``{"FAME": metrics, "SASRec": metrics, "popularity": metrics}`` with the
    dicts of :func:`famekit.evaluation.evaluate`, or a DataFrame indexed by model.
    """
    frame = _as_results(results)
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    missing = [m for m in metrics if m not in frame.columns]
    if missing or not metrics:
        raise ParameterError(
            f"metrics {missing or metrics} are not in the results (they have "
            f"{list(frame.columns)[:12]}). Fix: choose from those, e.g. metrics=('HR@10', "
            "'NDCG@10')"
        )
    fig = go.Figure()
    for i, (model, row) in enumerate(frame.iterrows()):
        values = row[metrics].to_numpy(dtype=float)
        fig.add_trace(go.Bar(
            x=metrics, y=values, name=str(model), marker_color=_model_color(str(model), i),
            text=[f"{v:.4f}" if np.isfinite(v) else "n/a" for v in values],
            textposition="outside",
            hovertemplate=f"{model}<br>%{{x}} = %{{y:.4f}}<extra></extra>",
        ))
    fig.update_yaxes(title_text="metric value (0-1)", rangemode="tozero")
    fig.update_xaxes(title_text="metric (full ranking, leave-one-out test)")
    fig.update_layout(barmode="group")
    users = frame["users"].dropna().unique() if "users" in frame.columns else []
    subtitle = f"{int(users[0])} test users" if len(users) == 1 else None
    return apply_style(fig, title or "Model comparison", subtitle, height=height)
