"""Matplotlib figures of a report, as PNG bytes (Agg backend, no display needed)."""

from __future__ import annotations

import io


def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def agreement_plot(pairs, unit: str = "int8 steps") -> bytes | None:
    """Device output against desktop LiteRT output, one point per element; `unit` says in
    what the axes count (the quantized outputs' steps, e.g. "int8 steps")."""
    if pairs is None:
        return None
    plt = _pyplot()
    desktop, device = pairs
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(desktop, device, s=6, alpha=0.5)
    lo, hi = float(min(desktop.min(), device.min())), float(max(desktop.max(), device.max()))
    ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8)
    ax.set_xlabel(f"desktop (LiteRT) output ({unit})")
    ax.set_ylabel(f"device output ({unit})")
    ax.set_title("device versus desktop")
    return _png(fig)


def confusion_plot(confusion, names=None) -> bytes | None:
    """Rows true, columns predicted; ticks named by `names` (the class names) when given."""
    if not confusion:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    im = ax.imshow(confusion, cmap="Blues")
    peak = max(max(row) for row in confusion) or 1
    for i, row in enumerate(confusion):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                    color="white" if v > peak / 2 else "black")
    ticks = range(len(confusion))
    labels = list(names) if names and len(names) == len(confusion) else [str(i) for i in ticks]
    ax.set_xticks(ticks, labels, rotation=45 if max(map(len, labels)) > 3 else 0, ha="right"
                  if max(map(len, labels)) > 3 else "center")
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("confusion matrix (device)")
    fig.colorbar(im, ax=ax)
    return _png(fig)


def latency_plot(us, round_trip_us, simulated: bool = False) -> bytes | None:
    """Histograms of inference time and host round trip, each given as (counts, edges) or None."""
    if not us:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    _histogram(axes[0], us, "tab:blue")
    axes[0].set_title("inference (µs, simulated)" if simulated else "inference (µs, device timer)")
    _histogram(axes[1], round_trip_us, "tab:orange")
    axes[1].set_title("host round trip (µs)")
    return _png(fig)


def single_value(hist) -> float | None:
    """The value every sample had, when a histogram (counts, edges) holds one value only.

    np.histogram spreads values over [min, max]: distinct values fill the first and the
    last bin, so one non-empty bin means one value, the middle of its (v-0.5, v+0.5) range."""
    counts, edges = hist
    if sum(1 for c in counts if c) != 1:
        return None
    return (edges[0] + edges[-1]) / 2


def _histogram(ax, hist, color: str) -> None:
    """Bars over µs; a sentence instead of one lone bar when all samples share one value."""
    from deploykit.report.units import time_us
    if not hist:
        ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    value = single_value(hist)
    if value is not None:
        ax.text(0.5, 0.5, f"all {sum(hist[0])} samples: {time_us(value)}\n(one value, no histogram)",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    ax.stairs(hist[0], hist[1], fill=True, color=color)
    ax.set_xlabel("µs")
    ax.set_ylabel("samples")


def arena_plot(arena: dict) -> bytes | None:
    items = [(k, v) for k, v in arena.items() if isinstance(v, (int, float))]
    if not items:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 2.6))
    ax.barh([k for k, _ in items], [v for _, v in items], color="tab:green")
    for i, (_, v) in enumerate(items):
        ax.text(v, i, f" {v:,} B", va="center", fontsize=8)
    ax.set_xlabel("bytes")
    ax.set_title("tensor arena")
    return _png(fig)
