"""The Learning page's HTML: warnings, charts and the table of days (pure: no Airflow, no I/O).

Self-contained: inline CSS, inline SVG and a few lines of inline script; nothing is loaded from
anywhere, not even from the api-server, so the page works offline and behind any proxy.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape
from urllib.parse import quote

from active_learning.learning_page.charts import Series, bar_chart, data_value, line_chart
from active_learning.learning_page.records import Day, LateWait

UNKNOWN = "—"
UNKNOWN_TITLE = "unknown: the task that counts it did not run"
COLORS = {
    "serving": "#1f6fb4",
    "new": "#f08c00",
    "routed": "#7b52ab",
    "labels": "#2b9348",
    "outstanding": "#c92a2a",
    "cost": "#6b4f2a",
}

STYLE = """
:root { color-scheme: light; --muted: #5c6773; --line: #d9dee3; --warn: #fff4e5; --warn-edge: #f08c00;
  --bad: #fdecec; --bad-edge: #c92a2a; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 16px 20px;
  color: #1d252c; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 20px 0 8px; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.95em; }
.lede { color: var(--muted); margin: 0 0 12px; }
.alert { border-left: 4px solid var(--warn-edge); background: var(--warn); padding: 8px 12px; margin: 8px 0;
  border-radius: 4px; }
.alert.bad { border-color: var(--bad-edge); background: var(--bad); }
.alert.ok { border-color: #2b9348; background: #ebf7ef; }
.alert ul { margin: 4px 0 0; padding-left: 20px; }
form.late { display: inline; margin-left: 8px; } form.late input { width: 4.5em; }
.charts { display: grid; gap: 12px 20px;
  grid-template-columns: repeat(auto-fit, minmax(min(420px, 100%), 1fr)); }
figure { margin: 0; } figcaption { font-weight: 600; margin-bottom: 2px; }
figcaption small { font-weight: 400; color: var(--muted); }
svg.chart { width: 100%; height: auto; display: block; }
svg .grid { stroke: var(--line); stroke-width: 1; } svg text { font-size: 11px; fill: var(--muted); }
svg text.day.empty { fill: var(--bad-edge); font-style: italic; } svg text.legend { fill: #1d252c; }
svg .point:hover, svg .bar:hover { opacity: 0.7; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
th { background: #f4f6f8; position: sticky; top: 0; }
th.text, td.text { text-align: left; } td.decision { white-space: normal; }
tr.empty td { background: #fafafa; color: var(--muted); }
.badge { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 8px; margin-left: 6px;
  background: var(--bad); color: var(--bad-edge); border: 1px solid var(--bad-edge); }
.badge.starving { background: var(--warn); color: #8a4b00; border-color: var(--warn-edge); }
"""

# Inside the Airflow UI the page is an iframe (sandboxed: no top navigation). A run link then
# navigates the UI itself, the way its router does (a history entry and a popstate event: same
# origin), instead of opening a second UI inside the frame. Opened alone, links are plain links.
SCRIPT = """
document.addEventListener("click", function (event) {
  var link = event.target.closest ? event.target.closest("a[data-ui-link]") : null;
  if (!link || window.top === window.self || event.button !== 0 || event.metaKey || event.ctrlKey ||
      event.shiftKey || event.altKey) { return; }
  try {
    var top = window.top, url = new URL(link.href);
    if (url.origin !== top.location.origin) { return; }
    var index = (top.history.state && top.history.state.idx) || 0;
    top.history.pushState({usr: null, key: Math.random().toString(36).slice(2, 10), idx: index + 1}, "",
      url.pathname + url.search + url.hash);
    top.dispatchEvent(new PopStateEvent("popstate", {state: top.history.state}));
    event.preventDefault();
  } catch (error) { /* not allowed here: the link opens in the frame */ }
});
"""


def _text(value: object) -> str:
    return escape(str(value))


def _attr(value: object) -> str:
    return escape(str(value), quote=True)


def fmt_count(value: int | None) -> str:
    return UNKNOWN if value is None else f"{value:,}"


def fmt_map(value: float | None) -> str:
    return UNKNOWN if value is None else f"{value:.3f}"


def fmt_usd(value: float | None, decimals: int = 2) -> str:
    return UNKNOWN if value is None else f"${value:,.{decimals}f}"


def run_href(ui_root: str, dag_id: str, run_id: str) -> str:
    """The run's page in the Airflow UI, from the page's own place (``ui_root``: up to the UI's root)."""
    return f"{ui_root}dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe=':+~')}"


def _cell(field: str, shown: str, value: float | int | None = None, css: str = "") -> str:
    raw = "" if value is None else f' data-value="{data_value(value)}"'
    title = f' title="{UNKNOWN_TITLE}"' if shown == UNKNOWN else ""
    klass = f' class="{css}"' if css else ""
    return f'<td data-field="{field}"{raw}{title}{klass}>{shown}</td>'


def _row(day: Day, dag_id: str, ui_root: str) -> str:
    badges = ""
    if day.empty_day:
        badges += '<span class="badge empty">empty day</span>'
    if day.starving:
        badges += '<span class="badge starving">starving</span>'
    link = (
        f'<a class="run" data-ui-link href="{_attr(run_href(ui_root, dag_id, day.run_id))}">'
        f"{_text(day.run_id)}</a>"
        if day.run_id
        else UNKNOWN
    )
    cells = [
        f'<td data-field="day" class="text">{_text(day.day)}{badges}</td>',
        f'<td data-field="run" class="text">{link}</td>',
        _cell("images", fmt_count(day.images), day.images),
        _cell("routed", fmt_count(day.routed), day.routed),
        _cell("reviewed", fmt_count(day.reviews_completed), day.reviews_completed),
        _cell("labels", fmt_count(day.labels), day.labels),
        _cell("map_new", fmt_map(day.map_new), day.map_new),
        _cell("map_serving", fmt_map(day.map_serving), day.map_serving),
        _cell("gate", _text(day.gate_decision) if day.gate_decision else UNKNOWN, css="text decision"),
        _cell("cost", fmt_usd(day.cost_total), day.cost_total),
        _cell("cost_per_label", fmt_usd(day.cost_per_label, 3), day.cost_per_label),
    ]
    css = ' class="empty"' if day.empty_day else ""
    return f'<tr data-day="{_attr(day.day)}" data-run-id="{_attr(day.run_id)}"{css}>{"".join(cells)}</tr>'


def days_table(days: Sequence[Day], dag_id: str, ui_root: str) -> str:
    """The table of days, one row each, newest last (as the charts read), each linking its run."""
    head = "".join(
        f'<th class="{"text" if name in ("Day", "Run", "Gate decision") else ""}">{name}</th>'
        for name in (
            "Day",
            "Run",
            "Images",
            "Routed",
            "Reviewed",
            "Labels",
            "mAP new",
            "mAP serving",
            "Gate decision",
            "Cost",
            "Cost / label",
        )
    )
    rows = "".join(_row(day, dag_id, ui_root) for day in days)
    # the table scrolls sideways on its own in a narrow frame, not the whole page
    return (
        f'<div class="scroll"><table id="days"><thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
    )


def starving_warning(days: Sequence[Day]) -> str:
    """The warning when the latest day's record says the loop is starving; nothing otherwise."""
    if not days or not days[-1].starving:
        return ""
    last = days[-1]
    return (
        '<div class="alert bad" id="starving" role="alert"><strong>Starving.</strong> '
        f"On {_text(last.day)} the loop routed {fmt_count(last.routed)} images to review, fewer than "
        f"its budget of {fmt_count(last.review_budget)} (<code>max_reviews</code>), while the serving "
        f"model's validation mAP ({fmt_map(last.map_serving)}) is below the target "
        "(<code>target_validation_map</code>). The model grew confident, not right: its labels dry up "
        "while it still has to learn. See the <code>threshold</code> and "
        "<code>fill_review_budget</code> settings, and whether fewer images arrived than the budget.</div>"
    )


def late_reviews(late: Sequence[LateWait], late_after_hours: float, dag_id: str, ui_root: str) -> str:
    """How many runs have waited for their reviews longer than the limit, which, and the limit's form."""
    hours = f"{late_after_hours:g}"
    form = (
        '<form class="late" method="get">'
        f'<label>limit <input type="number" name="late_after_hours" min="0" step="any" value="{hours}">'
        " h</label> <button type=submit>Apply</button></form>"
    )
    runs = "".join(
        f'<li><a data-ui-link href="{_attr(run_href(ui_root, dag_id, wait.run_id))}">{_text(wait.run_id)}</a>'
        f": {_text(wait.state)} for {wait.hours:.1f} h</li>"
        for wait in late
    )
    css = "alert" if late else "alert ok"
    noun = "run has" if len(late) == 1 else "runs have"
    return (
        f'<div class="{css}" id="late-reviews" data-count="{len(late)}" data-hours="{hours}">'
        f"<strong>Late reviews: {len(late)}</strong> {noun} waited for reviews "
        f"(<code>wait_for_human_loops</code> deferred or running) longer than {hours} h.{form}"
        f"{f'<ul>{runs}</ul>' if runs else ''}</div>"
    )


def charts(days: Sequence[Day]) -> str:
    """The four charts, one point or bar per day."""
    names = [day.day for day in days]
    empty = {day.day for day in days if day.empty_day}

    def figure(caption: str, note: str, svg: str) -> str:
        return f"<figure><figcaption>{caption} <small>{note}</small></figcaption>{svg}</figure>"

    return (
        '<section class="charts">'
        + "".join(
            (
                figure(
                    "Validation mAP",
                    "of the model trained that day and of the one serving at its end",
                    line_chart(
                        "map",
                        "Validation mAP per day",
                        names,
                        [
                            Series("new", "new model", [d.map_new for d in days], COLORS["new"], hollow=True),
                            Series(
                                "serving", "serving model", [d.map_serving for d in days], COLORS["serving"]
                            ),
                        ],
                        fmt=lambda v: f"{v:.3f}",
                        flagged=empty,
                    ),
                ),
                figure(
                    "Routed and labelled",
                    "images sent to review, and labels they gave",
                    bar_chart(
                        "counts",
                        "Images routed and labels per day",
                        names,
                        [
                            Series("routed", "routed", [d.routed for d in days], COLORS["routed"]),
                            Series("labels", "labels", [d.labels for d in days], COLORS["labels"]),
                        ],
                        flagged=empty,
                    ),
                ),
                figure(
                    "Reviews outstanding",
                    "started, neither completed nor failed when the day's wait ended",
                    bar_chart(
                        "outstanding",
                        "Reviews outstanding per day",
                        names,
                        [
                            Series(
                                "outstanding",
                                "outstanding",
                                [d.outstanding for d in days],
                                COLORS["outstanding"],
                            )
                        ],
                        flagged=empty,
                    ),
                ),
                figure(
                    "Cost per label",
                    "estimated, USD (reviews, training and transform over the day's labels)",
                    line_chart(
                        "cost_per_label",
                        "Estimated cost per label per day, USD",
                        names,
                        [
                            Series(
                                "cost_per_label",
                                "USD per label",
                                [d.cost_per_label for d in days],
                                COLORS["cost"],
                            )
                        ],
                        fmt=lambda v: f"${v:.3f}",
                        flagged=empty,
                    ),
                ),
            )
        )
        + "</section>"
    )


def render_page(
    dag_id: str,
    days: Sequence[Day],
    late: Sequence[LateWait],
    late_after_hours: float,
    now: datetime,
    ui_root: str,
) -> str:
    """The whole page.

    :param days: the loop's days, sorted by day (:func:`.records.days_from_records`).
    :param late: the runs whose review wait is late (:func:`.records.late_waits`).
    :param now: when the page was made (shown, so a stale tab says so).
    :param ui_root: the relative path from the page up to the Airflow UI's root (e.g. ``../../``).
    """
    empty_days = sum(day.empty_day for day in days)
    if days:
        lede = (
            f"{len(days)} day{'s' if len(days) != 1 else ''}, {_text(days[0].day)} to {_text(days[-1].day)}"
            + (f", {empty_days} empty (no image arrived)" if empty_days else "")
            + ". Each day is its run's <code>day_summary</code> record."
        )
        body = charts(days) + "<h2>Days</h2>" + days_table(days, dag_id, ui_root)
    else:
        lede = "No day records yet."
        body = (
            '<p id="no-days">No run of this DAG has a <code>day_summary</code> record yet: each run of '
            "an active-learning loop writes one as its last task.</p>"
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Learning · {_text(dag_id)}</title><style>{STYLE}</style></head><body>"
        f'<header><h1>Learning: <code id="dag-id">{_text(dag_id)}</code></h1>'
        f'<p class="lede">{lede} <span title="page time">As of {_text(now.strftime("%Y-%m-%d %H:%M UTC"))}.'
        "</span></p></header>"
        f"{starving_warning(days)}{late_reviews(late, late_after_hours, dag_id, ui_root)}"
        f"{body}<script>{SCRIPT}</script></body></html>"
    )
