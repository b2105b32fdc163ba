"""The float-versus-quantized report: how much accuracy quantization cost, on test data.

Regression: MAE, RMSE and max abs error of each model against the targets and against
each other. Classification (argmax outputs; integer or one-hot labels): accuracy of each,
top-1 agreement, confusion matrices.
"""

from __future__ import annotations

import numpy as np

from deploykit.errors import BadInput


def infer_task(y: np.ndarray | None, output_shape: list[int]) -> str | None:
    """'classification' when outputs are per-class scores and labels are class ids or
    one-hot rows; 'regression' for any other labelled data; None without labels."""
    if y is None:
        return None
    classes = int(output_shape[-1]) if output_shape else 1
    if classes < 2:
        return "regression"
    if y.ndim == 1 and _integral(y) and y.min() >= 0 and y.max() < classes:
        return "classification"
    if y.ndim == 2 and y.shape[1] == classes and np.isin(y, (0, 1)).all() and (y.sum(1) == 1).all():
        return "classification"
    return "regression"


def check_labels(y: np.ndarray, output_shape: list[int], where) -> None:
    """BadInput unless y holds, per sample, one target per model output (regression or
    one-hot) or one class id below the number of outputs: anything else would be
    broadcast against the outputs into figures that mean nothing."""
    outputs = int(np.prod(output_shape[1:])) if len(output_shape) > 1 else 1
    per_sample = int(np.prod(y.shape[1:])) if y.ndim > 1 else 1
    if per_sample == outputs:
        return
    if y.ndim == 1 and outputs >= 2 and _integral(y):
        if y.min() >= 0 and y.max() < outputs:
            return
        raise BadInput(f"labels y in {where} run from {y.min():g} to {y.max():g} but the model has "
                       f"{outputs} classes (0..{outputs - 1}); give class ids in that range or one-hot rows")
    raise BadInput(f"labels y in {where} have {per_sample} value(s) per sample but the model gives {outputs}; "
                   "give one target per output, integer class ids or one-hot rows")


def labels(y: np.ndarray) -> np.ndarray:
    """Class ids from integer labels or one-hot rows."""
    return y.argmax(axis=1) if y.ndim == 2 else y.astype(np.int64)


def errors(pred: np.ndarray, target: np.ndarray) -> dict:
    """MAE, RMSE and max abs error between two arrays of the same number of samples."""
    diff = np.asarray(pred, np.float64).reshape(len(pred), -1) - np.asarray(target, np.float64).reshape(len(target), -1)
    return {"mae": float(np.abs(diff).mean()), "rmse": float(np.sqrt((diff ** 2).mean())),
            "max_abs": float(np.abs(diff).max())}


def confusion(true: np.ndarray, pred: np.ndarray, classes: int) -> list[list[int]]:
    """Rows: true class, columns: predicted class."""
    m = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(m, (true, pred), 1)
    return m.tolist()


def regression_report(y, float_pred, quant_pred) -> dict:
    report = {"task": "regression", "samples": int(len(y)), "quantized_vs_target": errors(quant_pred, y),
              "per_output_quantized": per_output_errors(quant_pred, y)}
    if float_pred is not None:
        report["float_vs_target"] = errors(float_pred, y)
        report["per_output_float"] = per_output_errors(float_pred, y)
        report["quantized_vs_float"] = errors(quant_pred, float_pred)
    return report


def classification_report(y, float_pred, quant_pred) -> dict:
    true = labels(y)
    classes = int(quant_pred.reshape(len(quant_pred), -1).shape[1])
    q = quant_pred.reshape(len(quant_pred), -1).argmax(1)
    report = {"task": "classification", "samples": int(len(y)), "classes": classes,
              "quantized_accuracy": float((q == true).mean()),
              "confusion_quantized": confusion(true, q, classes),
              "per_class_quantized": per_class(true, q, classes)}
    if float_pred is not None:
        f = float_pred.reshape(len(float_pred), -1).argmax(1)
        report.update({"float_accuracy": float((f == true).mean()),
                       "top1_agreement": float((f == q).mean()),
                       "confusion_float": confusion(true, f, classes),
                       "per_class_float": per_class(true, f, classes),
                       "differs_from_float": [int(i) for i in np.flatnonzero(f != q)]})
    return report


TASK_CHOICES = ("classification", "regression", "anomaly", "none")


def compare(task: str, y, float_pred, quant_pred, x=None) -> dict:
    """The report for `task`; predictions are float arrays (dequantized where needed)."""
    if task == "none" or y is None:
        return agreement_report(float_pred, quant_pred, len(quant_pred))
    if task == "anomaly":
        return anomaly_report(y, x, float_pred, quant_pred)
    if task == "classification":
        return classification_report(y, float_pred, quant_pred)
    return regression_report(y, float_pred, quant_pred)


def _integral(a: np.ndarray) -> bool:
    return np.issubdtype(a.dtype, np.integer) or bool(np.all(np.mod(a, 1) == 0))


AGREEMENT_ONLY = "no labels: agreement only (float against quantized; no accuracy, no error against targets)"


def per_class(true: np.ndarray, pred: np.ndarray, classes: int) -> list[dict]:
    """Precision, recall and F1 per class of true against predicted class ids."""
    return per_class_from_confusion(confusion(true, pred, classes))


def per_class_from_confusion(matrix) -> list[dict]:
    """Precision, recall and F1 per class from a confusion matrix (rows true, columns
    predicted); a class never predicted (or never present) gets 0, not a division by zero."""
    m = np.asarray(matrix, np.float64)
    classes = len(m)
    tp, predicted, actual = np.diag(m), m.sum(0), m.sum(1)
    rows = []
    for c in range(classes):
        p = tp[c] / predicted[c] if predicted[c] else 0.0
        r = tp[c] / actual[c] if actual[c] else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        rows.append({"class": c, "precision": float(p), "recall": float(r), "f1": float(f1),
                     "support": int(actual[c])})
    return rows


def roc_auc(scores, labels_) -> float | None:
    """ROC AUC by the rank (Mann-Whitney) formula, tied scores given their mean rank;
    label 1 = anomalous (positive). None when one of the two classes is absent."""
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels_).ravel().astype(bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    _, start, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    mean_rank = start + (counts + 1) / 2.0          # 1-based mean rank of each tie group
    ranks[order] = np.repeat(mean_rank, counts)
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def per_output_errors(pred, target) -> list[dict]:
    """MAE, RMSE and max abs error of each output (column) separately."""
    diff = np.asarray(pred, np.float64).reshape(len(pred), -1) - np.asarray(target, np.float64).reshape(len(target), -1)
    return [{"output": i, "mae": float(np.abs(d).mean()), "rmse": float(np.sqrt((d ** 2).mean())),
             "max_abs": float(np.abs(d).max())} for i, d in enumerate(diff.T)]


def anomaly_scores(pred, x=None) -> np.ndarray:
    """Per-sample score: the mean squared reconstruction error when the output has the
    input's shape (an autoencoder), else the model's own output (one score per sample)."""
    p = np.asarray(pred, np.float64).reshape(len(pred), -1)
    if x is not None:
        xs = np.asarray(x, np.float64).reshape(len(x), -1)
        if xs.shape == p.shape:
            return ((p - xs) ** 2).mean(1)
    return p.mean(1)


def anomaly_report(y, x, float_pred, quant_pred) -> dict:
    """Score per sample and ROC AUC against y (1 = anomalous) for float and quantized."""
    q = anomaly_scores(quant_pred, x)
    report = {"task": "anomaly", "samples": int(len(y)), "quantized_scores": q.tolist(),
              "quantized_auc": roc_auc(q, y)}
    if float_pred is not None:
        f = anomaly_scores(float_pred, x)
        report.update({"float_scores": f.tolist(), "float_auc": roc_auc(f, y)})
    return report


def agreement_report(float_pred, quant_pred, samples: int) -> dict:
    """Without labels only agreement between float and quantized can be measured."""
    report = {"task": "none", "samples": int(samples), "note": AGREEMENT_ONLY}
    if float_pred is not None:
        q = np.asarray(quant_pred).reshape(len(quant_pred), -1)
        f = np.asarray(float_pred).reshape(len(float_pred), -1)
        report["quantized_vs_float"] = errors(q, f)
        if q.shape[1] >= 2:
            report["top1_agreement"] = float((q.argmax(1) == f.argmax(1)).mean())
    return report


def check_class_names(names: list[str] | None, classes: int, where: str = "--class-names") -> None:
    """BadInput naming both counts when the names do not match the model's classes."""
    if names is not None and len(names) != classes:
        raise BadInput(f"{where} gives {len(names)} class name(s) but the model has {classes} classes; "
                       f"give exactly {classes} names")


def parse_class_names(value: str | None) -> list[str] | None:
    """`a,b,c` or the path of a labels file (one name per line)."""
    from pathlib import Path
    if not value:
        return None
    path = Path(value)
    if path.is_file():
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        names = [n.strip() for n in value.split(",")]
    if not names or not all(names):
        raise BadInput(f"--class-names {value!r} holds an empty name; give a,b,c or a file with one name per line")
    return names
