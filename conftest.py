"""pytest settings that apply to notebooks collected by nbval (notebooks/, reports/).

`make test` runs the notebooks in lax mode (they must run without error; outputs are not
compared: the committed reports are compared by `make check-reports`, with tolerances). Should
anyone run nbval in strict mode, figures (plotly JSON), HTML renderings, widget views and images
are skipped: only text is worth comparing.
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
