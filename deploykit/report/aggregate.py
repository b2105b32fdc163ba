"""The figures of a report aggregated row by row, in memory that does not grow with the run.

Rows arrive one at a time (read back from results.jsonl); `RowAggregator` keeps running
sums, a confusion matrix, the first failures and the first plot points, and a block of
at most BLOCK rows it folds into the sums with numpy. Figures that need every value
(exact latency percentiles, histograms) come from `latency_columns`, a second pass that
keeps one float per sample and figure, not the rows.
"""

from __future__ import annotations

import heapq
from typing import Any, TypedDict

import numpy as np

from deploykit.model import metrics
from deploykit.model.quantization import dequantize, to_float
from deploykit.model.reference import Agreement

BLOCK = 4096          # rows folded into the sums at once
KEEP_FAILURES = 100   # failures listed in the report (lowest sample indices)
KEEP_POINTS = 2000    # device-versus-desktop pairs kept for the plots (lowest sample indices)
LATENCY = ("cycles", "us", "round_trip_us")


class Smallest:
    """The k entries of lowest key seen so far, in constant memory."""

    def __init__(self, k: int):
        self.k = k
        self._heap: list[tuple[int, int, Any]] = []   # (-key, key, value): a max-heap on key

    def would_keep(self, key: int) -> bool:
        return len(self._heap) < self.k or key < -self._heap[0][0]

    def bound(self) -> float:
        """Keys at or above this are not kept (infinity until k entries are held)."""
        return -self._heap[0][0] if len(self._heap) >= self.k else float("inf")

    def add(self, key: int, value) -> None:
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, (-key, key, value))
        elif key < -self._heap[0][0]:
            heapq.heapreplace(self._heap, (-key, key, value))

    def items(self) -> list:
        """(key, value) pairs by key."""
        return sorted((key, value) for _, key, value in self._heap)


class AgreementSums:
    """deploykit.model.reference.agreement() folded block by block: the same figures."""

    def __init__(self, scale: float, zero_point: int):
        self.scale, self.zp = scale, zero_point
        self.rows = self.exact = self.elements = self.max_steps = 0
        self.sum_steps = self.sum_abs = self.sum_sq = self.dot = self.na2 = self.nb2 = 0.0
        self.quantized: bool | None = None   # known once the first block is in

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        """Fold device outputs `a` and reference outputs `b` (same shape and dtype) in."""
        rows = len(a)
        self.quantized = bool(np.issubdtype(a.dtype, np.integer) and self.scale)
        if self.quantized:
            steps = np.abs(a.astype(np.int64) - b.astype(np.int64))
            self.max_steps = max(self.max_steps, int(steps.max(initial=0)))
            self.sum_steps += float(steps.sum())
            fa, fb = dequantize(a, self.scale, self.zp), dequantize(b, self.scale, self.zp)
        else:
            fa, fb = a, b
        fa, fb = fa.reshape(rows, -1).astype(np.float64), fb.reshape(rows, -1).astype(np.float64)
        diff = fa - fb
        self.rows += rows
        self.exact += int((a.reshape(rows, -1) == b.reshape(rows, -1)).all(axis=1).sum())
        self.elements += diff.size
        self.sum_abs += float(np.abs(diff).sum())
        self.sum_sq += float((diff ** 2).sum())
        self.dot += float(np.dot(fa.ravel(), fb.ravel()))
        self.na2 += float(np.dot(fa.ravel(), fa.ravel()))
        self.nb2 += float(np.dot(fb.ravel(), fb.ravel()))

    def result(self) -> Agreement | dict:
        """The figures of reference.agreement(); {} before any row."""
        if not self.rows:
            return {}
        n = max(self.elements, 1)
        return {"samples": self.rows, "exact_fraction": self.exact / self.rows,
                "max_abs_steps": self.max_steps if self.quantized else None,
                "mean_abs_steps": self.sum_steps / n if self.quantized else None,
                "mae": self.sum_abs / n, "rmse": float(np.sqrt(self.sum_sq / n)), "cosine": self._cosine()}

    def _cosine(self) -> float:
        na, nb = np.sqrt(self.na2), np.sqrt(self.nb2)
        if na == 0 or nb == 0:
            return 1.0 if na == nb else 0.0
        return float(self.dot / (na * nb))


class AccuracySums:
    """Accuracy of one model's predictions against the labels, folded block by block."""

    def __init__(self, task: str, classes: int):
        self.task, self.classes = task, classes
        self.rows = self.correct = self.agree = self.elements = 0
        self.sum_abs = self.sum_sq = self.max_abs = 0.0
        self.confusion = np.zeros((classes, classes), dtype=np.int64) if task == "classification" else None
        self.with_desktop = False
        self.differs = Smallest(KEEP_FAILURES)   # samples whose top-1 differs from the desktop's
        # per-output sums (regression), sized at the first row
        self.out_abs: np.ndarray | None = None
        self.out_sq: np.ndarray | None = None
        self.out_max: np.ndarray | None = None

    def add(self, y: np.ndarray, pred: np.ndarray, desktop: np.ndarray | None, idx=None) -> None:
        """Fold float predictions `pred` for labels `y` in (desktop: its top-1 to agree with;
        idx: the sample indices, to list those whose top-1 differs)."""
        self.rows += len(pred)
        if self.task == "classification":
            true, top1 = metrics.labels(y), pred.reshape(len(pred), -1).argmax(1)
            self.correct += int((top1 == true).sum())
            assert self.confusion is not None  # made for classification
            np.add.at(self.confusion, (true, top1), 1)
            if desktop is not None:
                self.with_desktop = True
                other = desktop.reshape(len(desktop), -1).argmax(1)
                self.agree += int((top1 == other).sum())
                for i in (np.flatnonzero(top1 != other) if idx is not None else ()):
                    if self.differs.would_keep(int(idx[i])):
                        self.differs.add(int(idx[i]), {"index": int(idx[i]), "desktop": int(other[i]),
                                                       "this": int(top1[i]), "label": int(true[i])})
            return
        diff = pred.astype(np.float64).reshape(len(pred), -1) - np.asarray(y, np.float64).reshape(len(y), -1)
        self.elements += diff.size
        self.sum_abs += float(np.abs(diff).sum())
        self.sum_sq += float((diff ** 2).sum())
        self.max_abs = max(self.max_abs, float(np.abs(diff).max(initial=0.0)))
        self._add_per_output(diff)

    def _add_per_output(self, diff: np.ndarray) -> None:
        if self.out_abs is None or self.out_sq is None or self.out_max is None:
            self.out_abs, self.out_sq = np.zeros(diff.shape[1]), np.zeros(diff.shape[1])
            self.out_max = np.zeros(diff.shape[1])
        self.out_abs += np.abs(diff).sum(0)
        self.out_sq += (diff ** 2).sum(0)
        self.out_max = np.maximum(self.out_max, np.abs(diff).max(0, initial=0.0))

    def result(self) -> dict[str, Any]:
        if self.task == "classification":
            assert self.confusion is not None  # made for classification
            out = {"accuracy": self.correct / self.rows, "confusion": self.confusion.tolist(),
                   "per_class": metrics.per_class_from_confusion(self.confusion)}
            if self.with_desktop:
                out["top1_agreement_with_desktop"] = self.agree / self.rows
                out["differs_from_desktop"] = [v for _, v in self.differs.items()]
            return out
        n = max(self.elements, 1)
        out = {"mae": self.sum_abs / n, "rmse": float(np.sqrt(self.sum_sq / n)), "max_error": self.max_abs}
        if (self.out_abs is not None and self.out_sq is not None and self.out_max is not None
                and len(self.out_abs) > 1):   # one output: the totals say it
            rows = max(self.rows, 1)
            out["per_output"] = [{"output": i, "mae": float(a / rows), "rmse": float(np.sqrt(q / rows)),
                                  "max_error": float(m)}
                                 for i, (a, q, m) in enumerate(zip(self.out_abs, self.out_sq, self.out_max,
                                                                   strict=True))]
        return out


class OutputSums:
    """One output tensor's figures in a model with several: the device against TFLM-host
    and LiteRT (agreement) and the device's and desktop's errors against the float model
    (MAE, RMSE, max abs error; the float model has no labels of its own to be scored on)."""

    def __init__(self, k: int, spec: dict, refs: dict):
        self.k, self.spec, self.refs = k, spec, refs
        self.dtype = np.dtype(spec["dtype"])
        self.shape = tuple(int(d) for d in spec["shape"][1:])
        scale, zp = float(spec.get("scale") or 0.0), int(spec.get("zero_point") or 0)
        self.agreement = {name: AgreementSums(scale, zp) for name in ("tflm_host", "desktop")
                          if refs.get(name) is not None}
        self.errors = ({name: AccuracySums("regression", 1) for name in ("device", "desktop")
                        if name == "device" or refs.get(name) is not None} if refs.get("float") is not None else {})

    def fold(self, idx: np.ndarray, values: list) -> None:
        device = np.asarray(values, dtype=self.dtype).reshape((len(idx),) + self.shape)
        for name, sums in self.agreement.items():
            sums.add(device, np.asarray(self.refs[name])[idx].reshape(device.shape).astype(device.dtype))
        if self.errors:
            target = np.asarray(self.refs["float"], np.float64)[idx].reshape(len(idx), -1)
            for name, errs in self.errors.items():
                pred = device if name == "device" else np.asarray(self.refs[name])[idx]
                errs.add(target, _as_float(pred, self.spec).reshape(len(idx), -1), None)

    def result(self) -> dict[str, Any]:
        """{output, name, agreement: {tflm_host, desktop}, vs_float: {device, desktop} or None}."""
        vs_float = {name: {k: v for k, v in sums.result().items() if k != "per_output"}
                    for name, sums in self.errors.items()} if self.errors else None
        return {"output": self.k, "name": self.spec.get("name"),
                "agreement": {name: s.result() for name, s in self.agreement.items()}, "vs_float": vs_float}


class Figures(TypedDict):
    """What RowAggregator.finish() hands the report builder."""

    samples: int
    samples_failed: int
    failures: list[dict[str, Any]]        # {"index", "error"}, lowest indices first
    agreement: dict[str, Agreement | dict]  # per reference: "tflm_host", "desktop"
    accuracy: dict[str, Any]              # {} or {"task", "float", "desktop", "device"}
    pairs: tuple[np.ndarray, np.ndarray] | None  # desktop and device values for the plots
    outputs: list[dict[str, Any]] | None  # OutputSums.result() per output, for a model with several


class RowAggregator:
    """Agreement, accuracy, failures and plot points of a run from its rows, one at a time.

    refs: {"tflm_host", "desktop", "float"} arrays over every sample of the data (or None);
    y: the labels (or None). Agreement and accuracy use the first output tensor; `outputs`
    (every output's spec, for a model with several, with refs["per_output"]) adds each
    output's own figures (OutputSums).
    """

    def __init__(self, spec: dict, refs: dict, y: np.ndarray | None, task: str | None,
                 outputs: list[dict] | None = None):
        self.spec, self.refs, self.y = spec, refs, y
        self.dtype = np.dtype(spec["dtype"])
        self.shape = tuple(int(d) for d in spec["shape"][1:])
        self.scale, self.zp = float(spec.get("scale") or 0.0), int(spec.get("zero_point") or 0)
        self.ok = self.failed = 0
        self.failures, self.pairs = Smallest(KEEP_FAILURES), Smallest(KEEP_POINTS)
        self.agreement = {name: AgreementSums(self.scale, self.zp)
                          for name in ("tflm_host", "desktop") if refs.get(name) is not None}
        # anomaly scores need the inputs: not aggregated here (see the convert report)
        self.task = task if y is not None and task in ("classification", "regression") else None
        classes = int(np.prod(self.shape)) if self.shape else 1
        self.accuracy = ({name: AccuracySums(self.task, classes) for name in ("float", "desktop", "device")
                          if name == "device" or refs.get(name) is not None} if self.task else {})
        self._idx: list[int] = []
        self._out: list = []
        per_output = refs.get("per_output") or []
        self.outputs = [OutputSums(k, o, per_output[k] if k < len(per_output) else {})
                        for k, o in enumerate(outputs or [])] if outputs and len(outputs) > 1 else []
        self._rest: list[list] = [[] for _ in self.outputs]

    def add(self, row: dict) -> None:
        index = row["index"]
        if "error" in row:
            self.failed += 1
            if self.failures.would_keep(index):
                self.failures.add(index, str(row["error"]))
            return
        self.ok += 1
        self._idx.append(index)
        self._out.append(row["outputs"][0])
        for k, values in enumerate(self._rest):
            values.append(row["outputs"][k])
        if len(self._idx) >= BLOCK:
            self._fold()

    def _fold(self) -> None:
        if not self._idx:
            return
        idx = np.asarray(self._idx, dtype=np.int64)
        device = np.asarray(self._out, dtype=self.dtype).reshape((len(idx),) + self.shape)
        for output, values in zip(self.outputs, self._rest, strict=True):
            output.fold(idx, values)
        self._idx, self._out, self._rest = [], [], [[] for _ in self.outputs]
        for name, sums in self.agreement.items():
            sums.add(device, np.asarray(self.refs[name])[idx].reshape(device.shape).astype(device.dtype))
        if self.accuracy:
            self._fold_accuracy(idx, device)
        self._keep_pairs(idx, device)

    def _fold_accuracy(self, idx: np.ndarray, device: np.ndarray) -> None:
        preds = {name: device if name == "device" else np.asarray(self.refs[name])[idx] for name in self.accuracy}
        floats = {name: _as_float(pred, self.spec) for name, pred in preds.items()}
        desktop = floats.get("desktop")
        assert self.y is not None  # accuracy is only summed against labels
        for name, sums in self.accuracy.items():
            sums.add(self.y[idx], floats[name], desktop, idx)

    def _keep_pairs(self, idx: np.ndarray, device: np.ndarray) -> None:
        desktop = self.refs.get("desktop")
        if desktop is None:
            return
        for i in np.flatnonzero(idx < self.pairs.bound()):
            ref = np.asarray(desktop[idx[i]], dtype=np.float64).ravel()
            self.pairs.add(int(idx[i]), (ref, device[i].astype(np.float64).ravel()))

    def finish(self) -> Figures:
        """samples, samples_failed, failures, agreement, accuracy and the plot points."""
        self._fold()
        accuracy: dict[str, Any] = {}
        if self.task and self.ok:
            accuracy = {"task": self.task}
            for name in ("float", "desktop", "device"):
                sums = self.accuracy.get(name)
                accuracy[name] = sums.result() if sums else None
        pairs = [value for _, value in self.pairs.items()]
        return {"samples": self.ok, "samples_failed": self.failed,
                "failures": [{"index": i, "error": e} for i, e in self.failures.items()],
                "agreement": {name: s.result() for name, s in self.agreement.items()},
                "accuracy": accuracy,
                "outputs": [o.result() for o in self.outputs] if self.outputs and self.ok else None,
                "pairs": (np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs]))
                if pairs else None}


def latency_columns(rows, count: int) -> dict[str, np.ndarray]:
    """cycles, us and round_trip_us of the successful rows: one number per sample each.

    Held compact (uint32 while every value is a 32-bit count, as the wire sends them;
    float64 with NaN for absent ones otherwise), so 10^6 samples cost about 16 MB.
    """
    cols = {name: _Column(count, np.float64 if name == "round_trip_us" else np.uint32) for name in LATENCY}
    n = 0
    for row in rows:
        if "error" in row or n >= count:
            continue
        for name in LATENCY:
            cols[name].set(n, row.get(name))
        n += 1
    return {name: col.values[:n] for name, col in cols.items()}


def anomaly_figures(rows, count: int, spec_in: dict, spec_out: dict, x: np.ndarray, y: np.ndarray,
                    refs: dict) -> dict[str, Any]:
    """ROC AUC (label 1 = anomalous) of the float model, the desktop and the device, on the
    samples the device ran: a second pass over the rows keeps one index and one score per
    sample (model.metrics.anomaly_scores: reconstruction error, or the model's own score).
    {"task": "anomaly", "float"|"desktop"|"device": {auc, samples, mean_score_normal,
    mean_score_anomalous} or None}."""
    x_float = _as_float(x, spec_in) if np.asarray(x).dtype.kind != "f" else np.asarray(x, np.float32)
    idx, device = np.zeros(count, np.int64), np.zeros(count, np.float64)
    n = 0
    dtype = np.dtype(spec_out["dtype"])
    for row in rows:
        if "error" in row or n >= count:
            continue
        i = int(row["index"])
        out = _as_float(np.asarray(row["outputs"][0], dtype=dtype)[None], spec_out)
        idx[n], device[n] = i, metrics.anomaly_scores(out, x_float[i][None])[0]
        n += 1
    idx, device = idx[:n], device[:n]
    labels = np.asarray(y).reshape(len(y), -1)[:, 0][idx]
    scores = {"device": device}
    for name in ("float", "desktop"):
        if refs.get(name) is not None:
            scores[name] = metrics.anomaly_scores(_as_float(np.asarray(refs[name])[idx], spec_out), x_float[idx])
    return {"task": "anomaly", **{name: _auc_figures(scores[name], labels) if name in scores else None
                                  for name in ("float", "desktop", "device")}}


def _auc_figures(scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    anomalous = labels.astype(bool)
    return {"auc": metrics.roc_auc(scores, anomalous), "samples": int(len(scores)),
            "mean_score_normal": float(scores[~anomalous].mean()) if (~anomalous).any() else None,
            "mean_score_anomalous": float(scores[anomalous].mean()) if anomalous.any() else None}


class _Column:
    """A preallocated column that widens to float64 the first time a value does not fit."""

    def __init__(self, n: int, dtype):
        self.values = np.zeros(n, dtype=dtype) if dtype != np.float64 else np.full(n, np.nan)

    def set(self, i: int, value) -> None:
        if self.values.dtype != np.float64 and not (type(value) is int and 0 <= value < 2 ** 32):
            self.values = self.values.astype(np.float64)
        self.values[i] = np.nan if value is None else value


def _as_float(pred: np.ndarray, spec: dict) -> np.ndarray:
    pred = np.asarray(pred)
    return pred.astype(np.float32) if pred.dtype.kind == "f" else to_float(pred, spec)
