"""Small charts as server-side SVG: pure functions from data and translated labels to markup.

No chart library and no script: the markup is drawn here, so it prints, works offline and
reads without JavaScript. Every chart carries its numbers as text beside the bars and a
<title>/<desc> for screen readers; the page shows the same figures as a table too.
Colours keep 4.5:1 against white (text) and 3:1 for the bars, and every bar has its label,
so nothing is told by colour alone.
"""

from collections.abc import Callable
from dataclasses import dataclass

from markupsafe import Markup, escape

INK = "#1b1f24"
TRACK = "#e3e6ea"
TRACK_EDGE = "#6b737c"
# dark enough for 3:1 against white (WCAG 1.4.11) and distinct also in greyscale print
STATUS_COLOURS = {
    "invited": "#5c6670",
    "consented": "#2b4f86",
    "interviewed": "#1f5f4a",
    "withdrawn": "#8a1c1c",
    "planned": "#5c6670",
    "in_progress": "#2b4f86",
    "paused": "#8a5a00",
    "completed": "#1f5f4a",
    "stopped": "#8a1c1c",
}
DEFAULT_COLOUR = "#1f5f4a"

FONT_SIZE = 15
ROW = 30
BAR = 20
GAP_LABEL = 8
VALUE_ROOM = 64
# a generous average advance of DejaVu Sans (the page font) at FONT_SIZE: labels must fit
CHAR_WIDTH = 9.2


@dataclass(frozen=True)
class Bar:
    """One bar: its code (for the colour), its translated label and its value."""

    key: str
    label: str
    value: int


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _label_width(labels) -> float:
    longest = max((len(str(label)) for label in labels), default=0)
    return min(max(longest * CHAR_WIDTH + 4, 60), 280)


def _open_svg(id_prefix: str, title: str, desc: str, width: float, height: float) -> list[str]:
    title_id, desc_id = f"{id_prefix}-title", f"{id_prefix}-desc"
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'aria-labelledby="{escape(title_id)} {escape(desc_id)}" '
        f'viewBox="0 0 {_num(width)} {_num(height)}" width="{_num(width)}" '
        f'height="{_num(height)}" font-size="{FONT_SIZE}" '
        f'preserveAspectRatio="xMinYMin meet">',
        f'<title id="{escape(title_id)}">{escape(title)}</title>',
        f'<desc id="{escape(desc_id)}">{escape(desc)}</desc>',
    ]


def bar_chart(
    bars: list[Bar],
    *,
    title: str,
    id_prefix: str,
    width: float = 480,
    desc: str | None = None,
    scale_max: int | None = None,
) -> Markup:
    """Return a horizontal bar chart with a label before and the number after every bar.

    `scale_max` gives charts shown side by side (small multiples) one common scale.
    """
    label_w = _label_width(b.label for b in bars)
    plot_w = max(width - label_w - GAP_LABEL - VALUE_ROOM, 40)
    top = max([b.value for b in bars] + [scale_max or 0])
    height = max(len(bars), 1) * ROW + 4
    if desc is None:
        desc = "; ".join(f"{b.label}: {b.value}" for b in bars)
    parts = _open_svg(id_prefix, title, desc, width, height)
    for i, b in enumerate(bars):
        y = 2 + i * ROW
        mid = y + ROW / 2
        bar_w = plot_w * b.value / top if top else 0
        x0 = label_w + GAP_LABEL
        colour = STATUS_COLOURS.get(b.key, DEFAULT_COLOUR)
        parts.append(
            f'<text x="{_num(label_w)}" y="{_num(mid)}" text-anchor="end" '
            f'dominant-baseline="central" fill="{INK}">{escape(b.label)}</text>'
        )
        # a hairline baseline keeps a zero visible as "nothing" rather than a missing row
        parts.append(
            f'<line x1="{_num(x0)}" y1="{_num(y + 3)}" x2="{_num(x0)}" '
            f'y2="{_num(y + ROW - 3)}" stroke="{TRACK_EDGE}" stroke-width="1"/>'
        )
        if bar_w > 0:
            parts.append(
                f'<rect x="{_num(x0)}" y="{_num(mid - BAR / 2)}" width="{_num(bar_w)}" '
                f'height="{BAR}" fill="{colour}"/>'
            )
        parts.append(
            f'<text x="{_num(x0 + bar_w + 6)}" y="{_num(mid)}" dominant-baseline="central" '
            f'font-weight="bold" fill="{INK}">{b.value}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def share_chart(
    items: list[tuple[str, int]],
    total: int,
    *,
    title: str,
    id_prefix: str,
    value_text: Callable[[int, int], str],
    width: float = 480,
    desc: str | None = None,
) -> Markup:
    """Return one bar per item showing how many of `total` said yes, e.g. consent items.

    `value_text(given, total)` writes the translated number after each bar ("3 of 5").
    """
    label_w = _label_width(label for label, _ in items)
    value_room = max(len(value_text(total, total)) * CHAR_WIDTH, VALUE_ROOM)
    plot_w = max(width - label_w - GAP_LABEL * 2 - value_room, 40)
    height = max(len(items), 1) * ROW + 4
    if desc is None:
        desc = "; ".join(f"{label}: {value_text(given, total)}" for label, given in items)
    parts = _open_svg(id_prefix, title, desc, width, height)
    x0 = label_w + GAP_LABEL
    for i, (label, given) in enumerate(items):
        y = 2 + i * ROW
        mid = y + ROW / 2
        filled = plot_w * given / total if total else 0
        parts.append(
            f'<text x="{_num(label_w)}" y="{_num(mid)}" text-anchor="end" '
            f'dominant-baseline="central" fill="{INK}">{escape(label)}</text>'
        )
        # the whole track is "all consents"; its edge shows where 100 % lies
        parts.append(
            f'<rect x="{_num(x0)}" y="{_num(mid - BAR / 2)}" width="{_num(plot_w)}" '
            f'height="{BAR}" fill="{TRACK}" stroke="{TRACK_EDGE}" stroke-width="1"/>'
        )
        if filled > 0:
            parts.append(
                f'<rect x="{_num(x0)}" y="{_num(mid - BAR / 2)}" width="{_num(filled)}" '
                f'height="{BAR}" fill="{DEFAULT_COLOUR}"/>'
            )
        value = value_text(given, total)
        parts.append(
            f'<text x="{_num(x0 + plot_w + GAP_LABEL)}" y="{_num(mid)}" '
            f'dominant-baseline="central" font-weight="bold" fill="{INK}">{escape(value)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
