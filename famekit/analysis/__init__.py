"""Looking inside FAME: plain functions over a loaded run and its dataset that return
DataFrames or arrays (never figures; :mod:`famekit.figures` draws them).

* :mod:`~famekit.analysis.activations` - collect gates and router probabilities of many users;
* :mod:`~famekit.analysis.gates` - per-user, per-head and per-group gate weights;
* :mod:`~famekit.analysis.routing` - router distributions, expert load, entropy, enrichment;
* :mod:`~famekit.analysis.embeddings` - per-head item sub-embeddings, kNN, cached UMAP;
* :mod:`~famekit.analysis.alignment` - the facet alignment matrix with its two nulls;
* :mod:`~famekit.analysis.anatomy` - one user's recommendations decomposed by head;
* :mod:`~famekit.analysis.user_view` - one user's routing, gates, history and top-k (the
  explorer's data);
* :mod:`~famekit.analysis.knockouts` - causal head / expert interventions;
* :mod:`~famekit.analysis.recovery` - planted ground truth recovery (synthetic world);
* :mod:`~famekit.analysis.oracle` - a FAME whose heads carry facets by construction (the
  positive control);
* :mod:`~famekit.analysis.facet_heads` - FAME+ runs read by driving facet (gates, knockouts);
* :mod:`~famekit.analysis.metadata` - item and user labels from metadata;
* :mod:`~famekit.analysis.stats` - Holm correction, bootstrap intervals, permutation tests;
* :mod:`~famekit.analysis.findings` - the verdicts each report page opens with.
"""

from famekit.analysis.activations import Activations, collect_activations
from famekit.analysis.alignment import (
    agreement_with_nulls,
    alignment_matrix,
    chance_corrected,
    facet_margins,
    head_specialisation,
    knn_agreement,
)
from famekit.analysis.anatomy import Anatomy, head_scores, recommendation_anatomy
from famekit.analysis.embeddings import cosine_knn, head_embeddings, head_layouts, umap_layout
from famekit.analysis.facet_heads import (
    accuracy_table,
    facet_knockouts,
    gates_by_driving_facet,
)
from famekit.analysis.gates import (
    GateGroups,
    gate_group_test,
    gate_summary,
    gates_along_sequence,
    gates_by_group,
    user_gates,
)
from famekit.analysis.knockouts import expert_forcing_table, head_knockout_table
from famekit.analysis.metadata import item_labels, label_fields, user_majority_labels
from famekit.analysis.oracle import oracle_model
from famekit.analysis.recovery import (
    driving_facet_accuracy,
    facet_recovery,
    facet_routing_accuracy,
    head_facet_map,
    interest_expert_nmi,
    normalized_mutual_information,
)
from famekit.analysis.routing import (
    expert_enrichment,
    expert_load,
    router_distribution,
    routing_entropy,
    user_routing,
)
from famekit.analysis.user_view import UserView, topk_lists, user_table

__all__ = [
    "Activations",
    "Anatomy",
    "GateGroups",
    "UserView",
    "accuracy_table",
    "agreement_with_nulls",
    "alignment_matrix",
    "chance_corrected",
    "collect_activations",
    "cosine_knn",
    "driving_facet_accuracy",
    "expert_enrichment",
    "expert_forcing_table",
    "expert_load",
    "facet_knockouts",
    "facet_margins",
    "facet_recovery",
    "facet_routing_accuracy",
    "gate_group_test",
    "gate_summary",
    "gates_along_sequence",
    "gates_by_driving_facet",
    "gates_by_group",
    "head_embeddings",
    "head_facet_map",
    "head_knockout_table",
    "head_layouts",
    "head_scores",
    "head_specialisation",
    "interest_expert_nmi",
    "item_labels",
    "knn_agreement",
    "label_fields",
    "normalized_mutual_information",
    "oracle_model",
    "recommendation_anatomy",
    "router_distribution",
    "routing_entropy",
    "topk_lists",
    "umap_layout",
    "user_gates",
    "user_majority_labels",
    "user_routing",
    "user_table",
]
