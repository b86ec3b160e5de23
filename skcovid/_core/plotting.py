"""matplotlib, imported only where a plot is drawn (it is an optional extra)."""


def require_matplotlib():
    """Return matplotlib (with ``matplotlib.figure`` loaded), or say how to install it."""
    try:
        import matplotlib  # optional: the plot extra
        import matplotlib.figure  # noqa: F401 (optional: the plot extra)
    except ImportError as exc:
        raise ImportError(
            "Plots need matplotlib: pip install \"skcovid[plot]\" (or pip install matplotlib)."
        ) from exc
    return matplotlib
