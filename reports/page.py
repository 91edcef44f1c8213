"""One self-contained HTML page: inline styles and SVG charts, images as data URIs.

A Content-Security-Policy in the page forbids every fetch (scripts, styles,
fonts, images from anywhere but the page itself), so it opens the same
offline, from a mail attachment or an object store. The one exception is a
host named in ``img_hosts`` (signed OSS thumbnails, asked for by the user).
Every number shown carries ``data-key``, the JSON field it comes from.
"""
from html import escape

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;color:#1d2430;
padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2.2rem;border-bottom:1px solid #dde2ea;
padding-bottom:.3rem}.sub{color:#5b6576;margin-top:0}
.cards{display:flex;flex-wrap:wrap;gap:.8rem;margin:1.2rem 0}.card{background:#f4f6fa;border-radius:8px;
padding:.7rem 1rem;min-width:8.5rem}.card b{display:block;font-size:1.45rem}.card span{color:#5b6576;font-size:.85rem}
table{border-collapse:collapse;margin:.6rem 0}td,th{padding:.3rem .7rem;border-bottom:1px solid #e6e9ef;
text-align:left;vertical-align:top}th{color:#5b6576;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:flex;flex-wrap:wrap;gap:1.5rem}.charts figure{margin:0}figcaption{color:#5b6576;font-size:.85rem}
svg{max-width:100%;height:auto}.thumbs{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:1rem}
.thumbs figure{margin:0;background:#f4f6fa;border-radius:8px;padding:.5rem;font-size:.8rem;word-break:break-all}
.thumbs img{width:100%;height:auto;border-radius:4px}.old{color:#b03a2e}.new{color:#1e7d4f}
"""


def page(title: str, subtitle: str, sections: list[str], *, img_hosts: tuple[str, ...] = ()) -> str:
    images = " ".join(("data:", *img_hosts))
    policy = f"default-src 'none'; style-src 'unsafe-inline'; img-src {images}"
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{escape(policy)}">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
            f'<h1>{escape(title)}</h1><p class="sub">{escape(subtitle)}</p>{"".join(sections)}</body></html>\n')


def number(value, key: str = "") -> str:
    """How a value shows; a share (a key ending ``rate`` or ``share``) as a percentage."""
    if value is None:
        return "–"
    if key.endswith(("rate", "share")) and isinstance(value, (int, float)):
        return f"{value:.2%}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def cards(items: list[tuple[str, str, object]]) -> str:
    """(json key, caption, value) as big numbers."""
    return '<div class="cards">' + "".join(
        f'<div class="card"><b data-key="{escape(key)}">{escape(number(value, key))}</b><span>{escape(caption)}</span></div>'
        for key, caption, value in items) + "</div>"


def section(heading: str, *parts: str) -> str:
    return f"<h2>{escape(heading)}</h2>{''.join(parts)}"


def table(headers: list[str], rows: list[list], keys: list[list[str | None]] | None = None) -> str:
    """Cells are escaped; numbers align right; ``keys`` gives a cell its ``data-key``."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for r, row in enumerate(rows):
        cells = []
        for c, value in enumerate(row):
            key = keys[r][c] if keys else None
            attr = f' data-key="{escape(key)}"' if key else ""
            cls = ' class="n"' if isinstance(value, (int, float)) or value is None else ""
            cells.append(f"<td{cls}{attr}>{escape(number(value, key or ''))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>"


def charts(*figures: str) -> str:
    return f'<div class="charts">{"".join(figures)}</div>'


def paragraph(text: str) -> str:
    return f"<p>{escape(text)}</p>"
