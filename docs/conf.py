"""Sphinx configuration: API reference from numpydoc docstrings, guide pages in Markdown."""

import skcovid

project = "skcovid"
author = "skcovid developers"
copyright = "2026, skcovid developers"
release = skcovid.__version__
version = skcovid.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "generated/*.inc"]
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
myst_heading_anchors = 3
templates_path = ["_templates"]
html_theme = "pydata_sphinx_theme"
html_theme_options = {"navigation_with_keys": False}
html_title = f"skcovid {release}"


def _skip_metadata_routing(app, what, name, obj, skip, options):
    """scikit-learn generates set_*_request methods on every estimator: not skcovid's API."""
    if name.startswith("set_") and name.endswith("_request") or name == "get_metadata_routing":
        return True
    return skip


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_routing)
