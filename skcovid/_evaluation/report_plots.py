"""The figures of :class:`skcovid.report.EvaluationReport`, drawn with scikit-learn's displays."""

import numpy as np
from sklearn.calibration import CalibrationDisplay
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay

from skcovid._core.plotting import require_matplotlib
from skcovid._evaluation.report_text import interval


def learning_curves(report):
    """Loss and accuracy per epoch, training and validation; None without a history."""
    if not report.history:
        return None
    Figure = require_matplotlib().figure.Figure
    from matplotlib.ticker import MaxNLocator  # optional: the plot extra

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = np.arange(1, len(report.history) + 1)
    for ax, metric, title in ((ax_loss, "loss", "Loss (cross-entropy)"),
                              (ax_acc, "acc", "Accuracy")):
        for split, style in (("train", "o-"), ("valid", "s--")):
            key = f"{split}_{metric}"
            values = [row.get(key, np.nan) for row in report.history]
            if not np.all(np.isnan(values)):
                label = "training" if split == "train" else "validation"
                ax.plot(epochs, values, style, label=label, markersize=3)
        if report.pruned_at_epoch:
            ax.axvline(report.pruned_at_epoch + 0.5, color="grey", linestyle=":",
                       label="pruned, then fine-tuned")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_acc.set_ylim(min(0.4, ax_acc.get_ylim()[0]), 1.01)
    fig.suptitle("Learning curves")
    return fig


def roc_curve(report):
    """The ROC curve with the AUC and its interval, the operating point and the target points."""
    Figure = require_matplotlib().figure.Figure
    fig = Figure(figsize=(5.6, 5.6), layout="constrained")
    ax = fig.subplots()
    auc = report.metrics["roc_auc"]["value"]
    display = RocCurveDisplay.from_predictions(
        report.y_true == report.pos_label, report.score, pos_label=True, ax=ax,
        plot_chance_level=True, curve_kwargs={"linewidth": 2},
    )
    display.line_.set_label(
        f"ROC curve: AUC {auc:.3f}, {round(100 * report.confidence_level)}% CI "
        f"{interval(report, 'roc_auc', '{:.3f}')}")
    sens, spec = report.metrics["sensitivity"]["value"], report.metrics["specificity"]["value"]
    ax.plot([1 - spec], [sens], "o", color="crimson", markersize=8,
            label=f"operating point: sensitivity {sens:.3f}, specificity {spec:.3f}")
    for point, marker in zip(report.operating_points, "^v<>"):
        s, p = point["sensitivity"]["value"], point["specificity"]["value"]
        if np.isfinite(s):
            ax.plot([1 - p], [s], marker, markersize=6, linestyle="none",
                    label=f"{point['name']}: sens. {s:.3f}, spec. {p:.3f}")
    ax.set_xlabel(f"False positive rate (1 - specificity; {report.neg_label} called {report.pos_label})")
    ax.set_ylabel(f"True positive rate (sensitivity; {report.pos_label} found)")
    ax.set_title(f"ROC curve, positive class {report.pos_label!r}")
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def confusion_matrix(report):
    """Counts and row-normalised rates, side by side."""
    Figure = require_matplotlib().figure.Figure
    fig = Figure(figsize=(10.5, 4.4), layout="constrained")
    ax_counts, ax_rates = fig.subplots(1, 2)
    names = [str(c) for c in report.labels]
    ConfusionMatrixDisplay(report.confusion_matrix, display_labels=names).plot(
        ax=ax_counts, cmap="Blues", colorbar=False, values_format="d")
    ax_counts.set_title("Counts")
    rows = report.confusion_matrix.sum(axis=1, keepdims=True)
    rates = np.divide(report.confusion_matrix, rows, out=np.zeros((2, 2)), where=rows > 0)
    ConfusionMatrixDisplay(rates, display_labels=names).plot(
        ax=ax_rates, cmap="Blues", colorbar=False, values_format=".1%", im_kw={"vmin": 0, "vmax": 1})
    ax_rates.set_title("Share of each true class")
    for ax in (ax_counts, ax_rates):
        ax.set_xlabel("Predicted class")
        ax.set_ylabel("True class")
    fig.suptitle(f"Confusion matrix ({len(report.y_true)} images)")
    return fig


def reliability_diagram(report):
    """scikit-learn's CalibrationDisplay over the ECE's bins, above a histogram of the probabilities."""
    Figure = require_matplotlib().figure.Figure
    fig = Figure(figsize=(5.6, 7.0), layout="constrained")
    ax_curve, ax_hist = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    n_bins = report.calibration["n_bins"]
    is_pos = report.y_true == report.pos_label
    brier, ece = report.calibration["brier"], report.calibration["ece"]
    CalibrationDisplay.from_predictions(
        is_pos, report.score, n_bins=n_bins, strategy="uniform", pos_label=True, ax=ax_curve,
        name=f"Brier {brier['value']:.3f} {interval(report, 'brier', '{:.3f}', report.calibration)}, "
             f"ECE {ece['value']:.3f} {interval(report, 'ece', '{:.3f}', report.calibration)}",
        marker="o", linewidth=2)
    ax_curve.set_xlabel("")
    ax_curve.set_ylabel(f"Share of {report.pos_label} in the bin (observed frequency)")
    ax_curve.set_title(f"Reliability diagram ({n_bins} bins of equal width)")
    ax_curve.legend(loc="upper left", fontsize=8)
    ax_curve.grid(alpha=0.3)
    edges = np.linspace(0, 1, n_bins + 1)
    for label, mask in ((report.pos_label, is_pos), (report.neg_label, ~is_pos)):
        ax_hist.hist(report.score[mask], bins=edges, alpha=0.6, label=str(label))
    ax_hist.set_xlabel(f"Predicted probability of {report.pos_label}")
    ax_hist.set_ylabel("images")
    ax_hist.legend(fontsize=8)
    return fig
