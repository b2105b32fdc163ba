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
    report = {"task": "regression", "samples": int(len(y)), "quantized_vs_target": errors(quant_pred, y)}
    if float_pred is not None:
        report["float_vs_target"] = errors(float_pred, y)
        report["quantized_vs_float"] = errors(quant_pred, float_pred)
    return report


def classification_report(y, float_pred, quant_pred) -> dict:
    true = labels(y)
    classes = int(quant_pred.reshape(len(quant_pred), -1).shape[1])
    q = quant_pred.reshape(len(quant_pred), -1).argmax(1)
    report = {"task": "classification", "samples": int(len(y)), "classes": classes,
              "quantized_accuracy": float((q == true).mean()),
              "confusion_quantized": confusion(true, q, classes)}
    if float_pred is not None:
        f = float_pred.reshape(len(float_pred), -1).argmax(1)
        report.update({"float_accuracy": float((f == true).mean()),
                       "top1_agreement": float((f == q).mean()),
                       "confusion_float": confusion(true, f, classes)})
    return report


def compare(task: str, y, float_pred, quant_pred) -> dict:
    """The report for `task`; predictions are float arrays (dequantized where needed)."""
    if task == "classification":
        return classification_report(y, float_pred, quant_pred)
    return regression_report(y, float_pred, quant_pred)


def _integral(a: np.ndarray) -> bool:
    return np.issubdtype(a.dtype, np.integer) or bool(np.all(np.mod(a, 1) == 0))
