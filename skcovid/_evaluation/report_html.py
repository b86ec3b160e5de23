"""The ``index.html`` of :class:`skcovid.report.EvaluationReport`."""

import datetime
import html

from skcovid._evaluation.report_text import interval, metric_title
from skcovid._evaluation.scoring import METRICS
from skcovid._version import __version__


def _calibration_section(report, pct):
    """Tables of the Brier score and ECE and of the operating points, with their intervals."""
    esc = html.escape
    cal = report.calibration
    rows = "".join(
        f"<tr><td>{title}</td><td>{cal[name]['value']:.4f}</td><td>{esc(interval(report, name, scores=cal))}</td></tr>"
        for name, title in (("brier", "Brier score"),
                            ("ece", f"Expected calibration error ({cal['n_bins']} bins)")))
    points = "".join(
        f"<tr><td>{esc(point['name'])}</td><td>{point['sensitivity']['value']:.4f}</td>"
        f"<td>{esc(interval(report, 'sensitivity', scores=point))}</td><td>{point['specificity']['value']:.4f}</td>"
        f"<td>{esc(interval(report, 'specificity', scores=point))}</td><td>{point['threshold']:.4f}</td></tr>"
        for point in report.operating_points)
    return (
        f"<h2>Calibration</h2><table><tr><th>Score (lower is better)</th><th>Value</th><th>{pct}% CI</th></tr>"
        f"{rows}</table><p>The Brier score is the mean squared difference between the predicted "
        f"probability of {esc(str(report.pos_label))} and the outcome (1 or 0). The expected calibration "
        "error puts the probabilities in bins of equal width and averages, weighted by the bins' sizes, "
        "the absolute difference between each bin's share of positives and its mean probability.</p>"
        + ("" if report.temperature is None else
           f"<p>The model's probabilities are scaled by its temperature, {report.temperature:.4f}, fitted on "
           "its validation split (temperature scaling; 1 leaves them as the network gives them).</p>")
        + "<h2>Operating points</h2><table><tr><th>Rule</th><th>Sensitivity</th><th>CI</th>"
        f"<th>Specificity</th><th>CI</th><th>Threshold</th></tr>{points}</table><p>Over the thresholds of "
        "the ROC curve (a slice is called positive when its probability is at least the threshold): the "
        "highest sensitivity among those whose specificity is at least the target (on a tie, the highest "
        "specificity), and the other way round. The intervals choose the threshold again in each "
        "resample.</p>")


def render(report, files):
    """The page, linking ``files`` (kind to file name) and showing the plots among them."""
    esc = html.escape
    pct = round(100 * report.confidence_level)
    rows = "".join(
        f"<tr><td>{esc(metric_title(report, n))}</td><td>{report.metrics[n]['value']:.4f}</td>"
        f"<td>{esc(interval(report, n))}</td></tr>" for n in METRICS)
    (tp, fn), (fp, tn) = report.confusion_matrix
    pos, neg = esc(str(report.pos_label)), esc(str(report.neg_label))
    counts = ", ".join(f"{esc(str(k))}: {v}" for k, v in report.class_counts.items())
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>skcovid evaluation report</title><style>",
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}",
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.3em .8em}",
        "th{background:#eef}img{max-width:100%;border:1px solid #ddd;margin:.5em 0}",
        "pre{background:#f6f6f6;padding:1em;overflow-x:auto}</style></head><body>",
        "<h1>Evaluation report</h1>",
        f"<p>{len(report.y_true)} held-out images ({counts}). Positive class: <b>{pos}</b>. "
        f"Confidence intervals: {pct}% percentile bootstrap over {report.n_bootstraps} "
        "resamples of these images. Images from one patient are not independent, so with "
        "slice-level splits the intervals are optimistic.</p>",
        f"<h2>Metrics</h2><table><tr><th>Metric</th><th>Value</th><th>{pct}% CI</th></tr>"
        f"{rows}</table>",
        "<h2>Confusion matrix</h2><table><tr><th>true \\ predicted</th>"
        f"<th>{pos}</th><th>{neg}</th></tr><tr><th>{pos}</th><td>{tp} (true positive)</td>"
        f"<td>{fn} (missed)</td></tr><tr><th>{neg}</th><td>{fp} (false alarm)</td>"
        f"<td>{tn} (true negative)</td></tr></table>",
    ]
    parts.append(_calibration_section(report, pct))
    for kind, caption in (("confusion_matrix", "Confusion matrix"),
                          ("roc_curve", "ROC curve"),
                          ("reliability_diagram", "Reliability diagram"),
                          ("learning_curves", "Learning curves")):
        if kind in files:
            parts.append(f"<h2>{caption}</h2><img src='{esc(files[kind])}' alt='{caption}'>")
    if report.pruning:
        p = report.pruning
        parts.append(
            "<h2>Pruning</h2><table><tr><th></th><th>before</th><th>after</th>"
            "<th>reduction</th></tr>"
            f"<tr><td>parameters (non-zero)</td><td>{p['n_params_before']:,}</td>"
            f"<td>{p['n_nonzero_params']:,}</td><td>{p['params_reduction']:.2%}</td></tr>"
            f"<tr><td>FLOPs per image</td><td>{p['flops_before']:,}</td><td>{p['flops']:,}</td>"
            f"<td>{p['flops_reduction']:.2%}</td></tr>"
            f"<tr><td>model size (bytes)</td><td>{p['model_size_bytes_before']:,}</td>"
            f"<td>{p['model_size_bytes']:,}</td><td>{p['size_reduction']:.2%}</td></tr></table>")
    parts.append(f"<h2>Classification report</h2><pre>{esc(report.classification_report())}</pre>")
    if report.model:
        parts.append(f"<h2>Model</h2><pre>{esc(report.model)}</pre>")
    parts.append(
        f"<p><small>skcovid {esc(__version__)}, "
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC. Files: "
        + ", ".join(f"<a href='{esc(n)}'>{esc(n)}</a>" for n in files.values())
        + "</small></p></body></html>")
    return "\n".join(parts)
