"""Charts drawn on the server as inline SVG: nothing to download, no script, no CDN, and
readable with JavaScript off. Every label is escaped (room names come from the chat)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

PALETTE = ("#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#2c7a7b", "#975a16")
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 640, 200, 40, 40, 10


def _short(column: str) -> str:
    """`2024-05-02` as `05-02`; other labels as they are."""
    return column[5:] if len(column) == 10 and column[4] == "-" else column


def stacked_bars(title: str, columns: Sequence[str], series: Mapping[str, Sequence[int]]) -> Markup:
    """One bar per column, stacked by series, with a legend; `series` values align with
    `columns`."""
    totals = [sum(values[i] for values in series.values()) for i in range(len(columns))]
    peak = max([*totals, 1])
    plot_w, plot_h = WIDTH - LEFT - 10, HEIGHT - BOTTOM - TOP
    step = plot_w / max(len(columns), 1)
    bar = max(step * 0.7, 1.0)
    parts = [
        Markup(
            '<svg class="chart" role="img" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg">'
        ).format(w=WIDTH, h=HEIGHT + 20 * ((len(series) + 3) // 4)),
        Markup("<title>{}</title>").format(title),
        Markup('<text x="0" y="{y}" class="axis">{peak}</text>').format(y=TOP + 8, peak=peak),
        Markup('<text x="0" y="{y}" class="axis">0</text>').format(y=TOP + plot_h),
    ]
    names = list(series)
    for i, column in enumerate(columns):
        x = LEFT + i * step
        y = float(TOP + plot_h)
        for k, name in enumerate(names):
            value = series[name][i]
            if not value:
                continue
            h = plot_h * value / peak
            y -= h
            parts.append(
                Markup(
                    '<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{c}">'
                    "<title>{label}: {v}</title></rect>"
                ).format(
                    x=x,
                    y=y,
                    w=bar,
                    h=h,
                    c=PALETTE[k % len(PALETTE)],
                    label=f"{column} {name}",
                    v=value,
                )
            )
        if len(columns) <= 16 or i % max(len(columns) // 8, 1) == 0:
            parts.append(
                Markup('<text x="{x:.1f}" y="{y}" class="axis">{t}</text>').format(
                    x=x, y=TOP + plot_h + 14, t=_short(column)
                )
            )
    for k, name in enumerate(names):
        lx = LEFT + (k % 4) * 150
        ly = HEIGHT - 10 + 20 * (k // 4)
        parts.append(
            Markup(
                '<rect x="{x}" y="{y}" width="10" height="10" fill="{c}"/>'
                '<text x="{tx}" y="{ty}" class="legend">{n}</text>'
            ).format(
                x=lx, y=ly - 9, c=PALETTE[k % len(PALETTE)], tx=lx + 14, ty=ly, n=escape(name[:24])
            )
        )
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)
