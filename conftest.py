"""pytest settings that apply to notebooks collected by nbval (notebooks/, reports/).

nbval compares a re-executed notebook's outputs with the stored ones. Only deterministic text
is compared: figures (plotly JSON), HTML renderings, widget views and images are skipped; text
outputs pass through the sanitizers in tests/nbval_sanitize.cfg (timestamps, ids, tqdm).
"""

SKIPPED_MIMETYPES = (
    "text/html",
    "application/javascript",
    "application/vnd.plotly.v1+json",
    "application/vnd.jupyter.widget-view+json",
    "image/png",
)


def pytest_collectstart(collector):
    if getattr(collector, "path", None) is not None and collector.path.suffix == ".ipynb":
        collector.skip_compare += SKIPPED_MIMETYPES
