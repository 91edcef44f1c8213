"""The reports' charts, drawn by matplotlib as inline SVG: text as paths, no font or file to fetch."""
import io
import re

import matplotlib

matplotlib.use("Agg")  # no display; SVG output needs none
import matplotlib.pyplot as plt  # noqa: E402 -- after the backend is chosen

plt.rcParams.update({"svg.fonttype": "path", "font.size": 9, "axes.spines.top": False,
                     "axes.spines.right": False, "svg.hashsalt": "visionfleet"})  # the same data, the same SVG
_XML_HEAD = re.compile(r"^<\?xml[^>]*>\s*(<!DOCTYPE[^>]*>\s*)?", re.S)


def _svg(fig) -> str:
    out = io.StringIO()
    fig.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return _XML_HEAD.sub("", out.getvalue())  # an element to put in the page, not a document


def heatmap(rows: list[str], columns: list[str], matrix: list[list[int]], *, xlabel: str, ylabel: str) -> str:
    size = max(4.0, 0.45 * len(columns) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="viridis")
    ax.set_xticks(range(len(columns)), [_short(c) for c in columns], rotation=60, ha="right")
    ax.set_yticks(range(len(rows)), [_short(c) for c in rows])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, n in enumerate(row):
            if n:
                ax.text(j, i, str(n), ha="center", va="center", fontsize=7, color="black" if n > peak / 2 else "white")
    fig.colorbar(image, ax=ax, shrink=0.8, label="images")
    return _svg(fig)


def bars(labels: list[str], values: list[float], *, xlabel: str, color: str = "#4c72b0") -> str:
    """Horizontal bars, the first label on top."""
    fig, ax = plt.subplots(figsize=(6, max(1.5, 0.3 * len(labels) + 0.8)))
    ax.barh(range(len(labels)), values, color=color)
    ax.set_yticks(range(len(labels)), [_short(label) for label in labels])
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    return _svg(fig)


def columns(labels: list[str], values: list[float], *, ylabel: str) -> str:
    fig, ax = plt.subplots(figsize=(6, 2.6))
    ax.bar(range(len(labels)), values, color="#dd8452")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_ylabel(ylabel)
    return _svg(fig)


def line(xs: list[float], ys: list[float], *, xlabel: str, ylabel: str, mean: float | None = None,
         mean_label: str = "") -> str:
    """Steps from each x to the next (``ys[i]`` over ``xs[i]..xs[i+1]``); ``mean`` as a dashed level."""
    fig, ax = plt.subplots(figsize=(7, 2.6))
    ax.plot(xs, ys, drawstyle="steps-post", color="#55a868")
    ax.fill_between(xs, ys, step="post", alpha=0.25, color="#55a868")
    if mean is not None:
        ax.axhline(mean, color="#4c72b0", linestyle="--", linewidth=1, label=mean_label)
        ax.legend(loc="lower right", frameon=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if xs[-1] > xs[0]:
        ax.set_xlim(xs[0], xs[-1])  # the run's span, start to end: no margin that reads as time
    ax.set_ylim(bottom=0)
    return _svg(fig)


def _short(label: str, most: int = 28) -> str:
    return label if len(label) <= most else label[:most - 1] + "…"
