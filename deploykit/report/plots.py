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


def agreement_plot(pairs) -> bytes | None:
    """Device output against desktop LiteRT output (int steps), one point per element."""
    if pairs is None:
        return None
    plt = _pyplot()
    desktop, device = pairs
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(desktop, device, s=6, alpha=0.5)
    lo, hi = float(min(desktop.min(), device.min())), float(max(desktop.max(), device.max()))
    ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8)
    ax.set_xlabel("desktop (LiteRT) output")
    ax.set_ylabel("device output")
    ax.set_title("device versus desktop")
    return _png(fig)


def confusion_plot(confusion) -> bytes | None:
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
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
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
    axes[0].stairs(us[0], us[1], fill=True)
    axes[0].set_title("inference (µs, simulated)" if simulated else "inference (µs, device timer)")
    if round_trip_us:
        axes[1].stairs(round_trip_us[0], round_trip_us[1], fill=True, color="tab:orange")
    axes[1].set_title("host round trip (µs)")
    return _png(fig)


def arena_plot(arena: dict) -> bytes | None:
    items = [(k, v) for k, v in arena.items() if isinstance(v, (int, float))]
    if not items:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 2.6))
    ax.barh([k for k, _ in items], [v for _, v in items], color="tab:green")
    for i, (_, v) in enumerate(items):
        ax.text(v, i, f" {v}", va="center", fontsize=8)
    ax.set_xlabel("bytes")
    ax.set_title("tensor arena")
    return _png(fig)
