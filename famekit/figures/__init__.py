"""Plotly views of FAME's internals: pure functions from analysis results to figures.

Every builder takes the DataFrames/arrays of :mod:`famekit.analysis` (never a model), checks
them (a :class:`~famekit.errors.ParameterError` names the argument and the analysis function
that produces it), and returns a ``plotly.graph_objects.Figure`` in the famekit style
(:mod:`famekit.figures.style`). Filters such as ``heads=`` and ``top_k=`` trim a view.

=================  =====================================================================
family             builders
=================  =====================================================================
gates              gate_summary_bar, gate_distribution, gates_by_group_heatmap,
                   gates_along_sequence_chart, gates_at_position_bar
routing            expert_load_heatmap, router_distribution_histogram, routing_entropy_bar,
                   user_routing_heatmap, expert_enrichment_heatmap
embeddings         embedding_scatter, embedding_grid
alignment          alignment_heatmap, alignment_nulls_chart
knockouts          knockout_delta_bar, knockout_heatmap
anatomy            anatomy_contributions_bar, per_head_topk_table, history_table
explorer           explorer_figures, refresh_figure; history_html, topk_html, html_table
                   (escaped HTML strings: the explorer's fallback without widgets)
recovery           recovery_bar
findings           findings_box (the computed verdicts a report page opens with)
training           read_training_history, training_curves, metrics_comparison_bar
benchmarks         read_benchmarks, results_bar, ratio_bar, speed_bars,
                   time_to_quality_curves, model_label
export             save_html, save_png, find_chromium
=================  =====================================================================

>>> from famekit import analysis as A, figures as F
>>> acts = A.collect_activations(model, dataset)
>>> fig = F.gate_summary_bar(A.gate_summary(acts))
>>> F.save_html(fig, "gates.html")          # self-contained, renders offline

plotly is an optional dependency (``pip install 'famekit[notebooks]'``).
"""

try:
    import plotly  # noqa: F401
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "famekit.figures needs plotly. Fix: pip install 'famekit[notebooks]' (or pip install "
        "plotly)"
    ) from err

from famekit.figures.alignment import alignment_heatmap, alignment_nulls_chart
from famekit.figures.anatomy import (
    anatomy_contributions_bar,
    history_table,
    per_head_topk_table,
)
from famekit.figures.benchmarks import (
    model_label,
    ratio_bar,
    read_benchmarks,
    results_bar,
    speed_bars,
    time_to_quality_curves,
)
from famekit.figures.embeddings import embedding_grid, embedding_scatter
from famekit.figures.explorer import (
    explorer_figures,
    history_html,
    html_table,
    refresh_figure,
    topk_html,
)
from famekit.figures.export import ChromiumNotFoundError, find_chromium, save_html, save_png
from famekit.figures.facets import (
    facet_alignment_grid,
    facet_knockout_heatmap,
    name_heads,
    routing_accuracy_bar,
)
from famekit.figures.findings import findings_box
from famekit.figures.gates import (
    gate_distribution,
    gate_summary_bar,
    gates_along_sequence_chart,
    gates_at_position_bar,
    gates_by_group_heatmap,
)
from famekit.figures.knockouts import knockout_delta_bar, knockout_heatmap
from famekit.figures.recovery import recovery_bar
from famekit.figures.routing import (
    expert_enrichment_heatmap,
    expert_load_heatmap,
    router_distribution_histogram,
    routing_entropy_bar,
    user_routing_heatmap,
)
from famekit.figures.style import TEMPLATE, apply_style
from famekit.figures.training import (
    metrics_comparison_bar,
    read_training_history,
    training_curves,
)

__all__ = [
    "TEMPLATE",
    "ChromiumNotFoundError",
    "alignment_heatmap",
    "alignment_nulls_chart",
    "anatomy_contributions_bar",
    "apply_style",
    "embedding_grid",
    "embedding_scatter",
    "expert_enrichment_heatmap",
    "expert_load_heatmap",
    "explorer_figures",
    "facet_alignment_grid",
    "facet_knockout_heatmap",
    "find_chromium",
    "findings_box",
    "gate_distribution",
    "gate_summary_bar",
    "gates_along_sequence_chart",
    "gates_at_position_bar",
    "gates_by_group_heatmap",
    "history_html",
    "history_table",
    "html_table",
    "knockout_delta_bar",
    "knockout_heatmap",
    "metrics_comparison_bar",
    "model_label",
    "name_heads",
    "per_head_topk_table",
    "ratio_bar",
    "read_benchmarks",
    "read_training_history",
    "recovery_bar",
    "refresh_figure",
    "results_bar",
    "router_distribution_histogram",
    "routing_accuracy_bar",
    "routing_entropy_bar",
    "save_html",
    "save_png",
    "speed_bars",
    "time_to_quality_curves",
    "topk_html",
    "training_curves",
    "user_routing_heatmap",
]
