"""Server-side SVG pictures of a run: the task graph and the timeline.

Each function returns one complete ``<svg>`` element as a string, meant to be embedded inline
in an HTML page (so there is no XML declaration). The page has a strict Content-Security-Policy,
so the pictures carry no ``<script>``, no event handler attributes and no ``style=`` attributes;
they are styled by the page's CSS through class names. Every class name comes from a fixed
allow-list below, never from data, and everything that does come from data (ids, titles,
labels, states) is escaped with :func:`html.escape`, so a task titled
``<script>alert(1)</script>`` shows as that text and nothing more. Characters XML forbids
(control characters other than tab and newlines) are replaced by U+FFFD so the output also
parses as XML. Neutral ``fill``/``stroke`` presentation attributes keep a picture legible
without any CSS; any CSS rule on the classes overrides them.

Classes the page's CSS can style:

* Root ``<svg>``: ``dag`` (the full graph), ``dag-summary`` (the graph folded by level),
  ``timeline`` (the Gantt chart), ``empty`` (the small "no tasks" / "nothing has run yet"
  pictures).
* States, on graph nodes, timeline lanes and summary bars: ``state-pending``,
  ``state-running``, ``state-waiting``, ``state-completed``, ``state-failed``,
  ``state-skipped``. A state outside :data:`STATES` renders as ``state-pending``.
* Graph: ``node`` (a ``<g>`` holding a ``rect`` and two ``text``: ``label`` for the title,
  ``task-id`` for the id; it carries ``data-task`` with the escaped id so a script can recolour
  it live), ``critical`` (on nodes and edges of the critical path), ``selected`` (on the
  selected node, or in the summary on the level that holds it), ``edge`` (a ``<path>``).
* Summary: ``level`` (a ``<g>`` per level column; ``more`` is added on the column folding the
  levels past the last one drawn), ``box`` (the column's frame), ``label``, ``count`` (the
  ``n tasks`` line), ``bar`` with a state class (one stacked segment per state), ``heading``
  (the "critical path" title), ``critical`` (each linked id of the path), ``more`` (the
  ``… N more`` line).
* Timeline: ``axis`` (tick labels), ``tick`` (tick lines), ``phase`` (a phase's bar),
  ``phase-label``, ``lane`` with a state class (a ``<g>`` per task, with ``data-task``),
  ``label`` (the task's linked label), ``bar`` with ``attempt-completed``, ``attempt-failed``,
  ``attempt-running``, ``attempt-interrupted`` or ``attempt-other`` (one per attempt),
  ``wait`` with ``wait-backoff``, ``wait-decision`` or ``wait-other`` (one per wait),
  ``more`` (``… and N more tasks``), ``note`` (``N tasks have not run``).
"""

from __future__ import annotations

import html
import math
import re
import statistics
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "ATTEMPT_OUTCOMES",
    "STATES",
    "WAIT_KINDS",
    "Attempt",
    "Node",
    "Phase",
    "Row",
    "Wait",
    "critical_path",
    "dag_svg",
    "levels",
    "timeline_svg",
]

#: Task states that have a CSS class; anything else renders as ``pending``.
STATES = ("pending", "running", "waiting", "completed", "failed", "skipped")
#: Attempt outcomes that have a CSS class; anything else renders as ``attempt-other``.
ATTEMPT_OUTCOMES = ("completed", "failed", "running", "interrupted")
#: Wait kinds that have a CSS class; anything else renders as ``wait-other``.
WAIT_KINDS = ("backoff", "decision")


@dataclass(frozen=True)
class Node:
    """A task in the graph: what it is, where it stands, what it waits for."""

    id: str
    title: str
    state: str
    depends_on: tuple[str, ...]
    duration_ms: float | None = None  # measured, when the task ran


@dataclass(frozen=True)
class Attempt:
    """One try at a task, in unix seconds; ``end`` is None while it still runs."""

    number: int
    start: float
    end: float | None
    outcome: str  # completed | failed | running | interrupted
    node: str | None = None  # the cluster node it ran on


@dataclass(frozen=True)
class Wait:
    """A stretch a task spent waiting (a retry backoff or a decision); ``end`` None while open."""

    kind: str  # backoff | decision
    start: float
    end: float | None


@dataclass(frozen=True)
class Row:
    """One task's line on the timeline: its attempts and its waits."""

    id: str
    title: str
    state: str
    attempts: tuple[Attempt, ...]
    waits: tuple[Wait, ...]


@dataclass(frozen=True)
class Phase:
    """A stage of the run as a whole (gate, bootstrap, plan, ...); ``end`` None while open."""

    label: str
    start: float
    end: float | None


# --------------------------------------------------------------------------- text and numbers

_SVG_NS = "http://www.w3.org/2000/svg"
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_STATE_SET = frozenset(STATES)
_STATE_INDEX = {state: k for k, state in enumerate(STATES)}


def _esc(text: str) -> str:
    """Text from data made safe for an attribute value or element content (and valid XML)."""
    return html.escape(_XML_FORBIDDEN.sub("\ufffd", text), quote=True)


def _clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, with an ellipsis when something was cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def _num(x: float) -> str:
    """A coordinate with one decimal at most, so the SVG stays small."""
    s = f"{x:.1f}"
    if s.endswith(".0"):
        s = s[:-2]
    return "0" if s == "-0" else s


def _state(state: str) -> str:
    """The state's class suffix: the state itself when allowed, else ``pending``."""
    return state if state in _STATE_SET else "pending"


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _svg_open(width: float, height: float, label: str, css_class: str) -> str:
    """The root element's start tag: explicit size, matching viewBox, an accessible name."""
    w, h = _num(width), _num(height)
    return (
        f'<svg xmlns="{_SVG_NS}" class="{css_class}" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        f'role="img" aria-label="{_esc(label)}" font-family="sans-serif" font-size="12">'
    )


def _message_svg(message: str) -> str:
    """A small picture that says one thing, for when there is nothing to draw."""
    return (
        _svg_open(240, 40, message, "empty")
        + f'<text class="label" x="10" y="24" fill="#666">{_esc(message)}</text></svg>'
    )


# --------------------------------------------------------------------------- the graph


@dataclass
class _Graph:
    """The plan as index lists: unique nodes in plan order, known edges, a topological order.

    ``order`` holds the nodes Kahn's algorithm reached (the acyclic part); ``cyclic`` the rest,
    the nodes on a cycle or behind one.
    """

    nodes: list[Node]
    deps: list[list[int]]
    children: list[list[int]]
    order: list[int]
    cyclic: list[int]


def _graph(nodes: Sequence[Node]) -> _Graph:
    """Index the plan once; a repeated id keeps its first node, unknown dependencies drop out."""
    unique: list[Node] = []
    index: dict[str, int] = {}
    for node in nodes:
        if node.id not in index:
            index[node.id] = len(unique)
            unique.append(node)
    n = len(unique)
    deps: list[list[int]] = [[] for _ in range(n)]
    children: list[list[int]] = [[] for _ in range(n)]
    indegree = [0] * n
    for i, node in enumerate(unique):
        mine = deps[i]
        for name in node.depends_on:
            j = index.get(name)
            if j is not None and j not in mine:
                mine.append(j)
                children[j].append(i)
                indegree[i] += 1
    queue = deque(i for i in range(n) if indegree[i] == 0)
    order: list[int] = []
    while queue:
        u = queue.popleft()
        order.append(u)
        for c in children[u]:
            indegree[c] -= 1
            if indegree[c] == 0:
                queue.append(c)
    cyclic = [i for i in range(n) if indegree[i] > 0]
    return _Graph(unique, deps, children, order, cyclic)


def _level_list(g: _Graph) -> list[int]:
    """Longest-chain depth of each node; nodes on or behind a cycle go one past the deepest."""
    level = [0] * len(g.nodes)
    for u in g.order:
        below = level[u] + 1
        for c in g.children[u]:
            if level[c] < below:
                level[c] = below
    if g.cyclic:
        past = max((level[u] for u in g.order), default=-1) + 1
        for u in g.cyclic:
            level[u] = past
    return level


def _weights(g: _Graph) -> list[float]:
    """Each node's weight: its measured duration, else the median of the known ones, else 1."""
    known = [d for d in (node.duration_ms for node in g.nodes) if d is not None and math.isfinite(d) and d >= 0]
    default = float(statistics.median(known)) if known else 1.0
    return [
        float(d) if d is not None and math.isfinite(d) and d >= 0 else default
        for d in (node.duration_ms for node in g.nodes)
    ]


def _critical_indices(g: _Graph) -> list[int]:
    """The heaviest root-to-sink chain of the acyclic part, as indices.

    Paths compare by total weight, then by number of nodes (so zero weights still favour the
    longer chain); equal paths resolve to the predecessor and sink earliest in plan order.
    """
    if not g.order:
        return []
    weight = _weights(g)
    n = len(g.nodes)
    best_w = [0.0] * n
    best_h = [0] * n
    pred = [-1] * n
    for u in g.order:
        best_w[u] += weight[u]
        best_h[u] += 1
        here = (best_w[u], best_h[u])
        for c in g.children[u]:
            # best_w/best_h of c hold the best over its predecessors until c itself is reached.
            there = (best_w[c], best_h[c])
            if pred[c] == -1 or here > there or (here == there and u < pred[c]):
                best_w[c], best_h[c], pred[c] = here[0], here[1], u
    sink = min(g.order, key=lambda u: (-best_w[u], -best_h[u], u))
    path = [sink]
    while pred[path[-1]] != -1:
        path.append(pred[path[-1]])
    path.reverse()
    return path


def levels(nodes: Sequence[Node]) -> dict[str, int]:
    """The level of each node: the length of the longest dependency chain above it.

    Roots are level 0; dependencies that name no node are ignored. Nodes on a cycle, or that
    depend on one, all get one level past the deepest acyclic node, so a broken plan still
    draws. Iterative and linear in nodes plus edges.
    """
    g = _graph(nodes)
    return {node.id: lv for node, lv in zip(g.nodes, _level_list(g), strict=True)}


def critical_path(nodes: Sequence[Node]) -> list[str]:
    """The ids of the heaviest dependency chain, from a root to a sink.

    A node weighs its ``duration_ms`` when measured, else the median of the measured ones, else
    1; ties go to plan order. Nodes on or behind a cycle are left out. Linear in nodes plus
    edges, iterative.
    """
    g = _graph(nodes)
    return [g.nodes[i].id for i in _critical_indices(g)]


# --------------------------------------------------------------------------- the full graph

_NODE_W = 170
_NODE_H = 34
_H_GAP = 50
_V_GAP = 12
_MARGIN = 10
_TITLE_CHARS = 22
_ID_CHARS = 28


def _columns(g: _Graph, level: list[int]) -> tuple[list[list[int]], list[int]]:
    """Nodes per level column, each ordered by one barycentre pass, and each node's row.

    A node's key is the mean row of its dependencies in earlier columns (its own plan-order
    position in the column when it has none there); ties go to plan order.
    """
    columns: list[list[int]] = [[] for _ in range(max(level) + 1)]
    for i, lv in enumerate(level):
        columns[lv].append(i)
    row = [0] * len(g.nodes)
    for c, column in enumerate(columns):
        if c:
            keys: dict[int, tuple[float, int]] = {}
            for k, i in enumerate(column):
                above = [row[j] for j in g.deps[i] if level[j] < c]
                keys[i] = (sum(above) / len(above) if above else float(k), i)
            column.sort(key=keys.__getitem__)
        for r, i in enumerate(column):
            row[i] = r
    return columns, row


def _edge(x1: float, y1: float, x2: float, y2: float, critical: bool) -> str:
    """A cubic Bézier from a dependency's right side to its dependent's left side."""
    dx = max(abs(x2 - x1) / 2, 20.0)
    cls = "edge critical" if critical else "edge"
    return (
        f'<path class="{cls}" d="M{_num(x1)} {_num(y1)}C{_num(x1 + dx)} {_num(y1)} '
        f'{_num(x2 - dx)} {_num(y2)} {_num(x2)} {_num(y2)}" fill="none" stroke="#999"/>'
    )


def _node(node: Node, x: float, y: float, link: str, extra: str) -> str:
    """One linked node box: title and id lines, the full description as a tooltip."""
    state = _state(node.state)
    tid = _esc(node.id)
    label = _esc(_clip(node.title or node.id, _TITLE_CHARS))
    return (
        f'<a href="{_esc(link)}"><g class="node state-{state}{extra}" data-task="{tid}">'
        f"<title>{tid}: {_esc(node.title)} ({_esc(node.state)})</title>"
        f'<rect x="{_num(x)}" y="{_num(y)}" width="{_NODE_W}" height="{_NODE_H}" rx="4" fill="#fff" stroke="#888"/>'
        f'<text class="label" x="{_num(x + 8)}" y="{_num(y + 15)}">{label}</text>'
        f'<text class="task-id" x="{_num(x + 8)}" y="{_num(y + 28)}" font-size="10" fill="#666">'
        f"{_esc(_clip(node.id, _ID_CHARS))}</text></g></a>"
    )


def _full_svg(g: _Graph, level: list[int], path: list[int], href: Callable[[str], str], selected: str | None) -> str:
    """Every node and edge, laid out left to right by level."""
    columns, row = _columns(g, level)
    xs = [_MARGIN + lv * (_NODE_W + _H_GAP) for lv in level]
    ys = [_MARGIN + r * (_NODE_H + _V_GAP) for r in row]
    tallest = max(len(column) for column in columns)
    width = 2 * _MARGIN + len(columns) * _NODE_W + (len(columns) - 1) * _H_GAP
    height = 2 * _MARGIN + tallest * _NODE_H + (tallest - 1) * _V_GAP
    on_path = set(path)
    path_edges = set(zip(path, path[1:], strict=False))
    label = f"Task graph: {_plural(len(g.nodes), 'task', 'tasks')} in {_plural(len(columns), 'level', 'levels')}"
    out = [_svg_open(width, height, label, "dag")]
    later: list[str] = []  # critical edges, drawn after the others so they stay on top
    half = _NODE_H / 2
    for i, deps in enumerate(g.deps):
        for j in deps:
            critical = (j, i) in path_edges
            (later if critical else out).append(_edge(xs[j] + _NODE_W, ys[j] + half, xs[i], ys[i] + half, critical))
    out.extend(later)
    for i, node in enumerate(g.nodes):
        extra = (" critical" if i in on_path else "") + (" selected" if node.id == selected else "")
        out.append(_node(node, xs[i], ys[i], href(node.id), extra))
    out.append("</svg>")
    return "".join(out)


# --------------------------------------------------------------------------- the summary

_LEVEL_W = 120
_LEVEL_GAP = 16
_LEVEL_H = 64
_MAX_LEVEL_COLUMNS = 200
_PATH_SHOWN = 30
_LINE_H = 16
_PATH_CHARS = 80


def _level_column(x: float, heading: str, counts: list[int], selected: bool, more: bool) -> str:
    """One summary column: its heading, its task count and a stacked bar of its states."""
    total = sum(counts)
    cls = "level" + (" more" if more else "") + (" selected" if selected else "")
    parts = [
        f'<g class="{cls}"><rect class="box" x="{_num(x)}" y="{_MARGIN}" width="{_LEVEL_W}" height="{_LEVEL_H}" '
        f'rx="4" fill="#fff" stroke="#888"/>'
        f'<text class="label" x="{_num(x + 8)}" y="{_MARGIN + 18}">{heading}</text>'
        f'<text class="count" x="{_num(x + 8)}" y="{_MARGIN + 34}" fill="#666">{_plural(total, "task", "tasks")}</text>'
    ]
    bar_w = _LEVEL_W - 16
    left = x + 8
    for state, count in zip(STATES, counts, strict=True):
        if count:
            w = bar_w * count / total
            parts.append(
                f'<rect class="bar state-{state}" x="{_num(left)}" y="{_MARGIN + 44}" width="{_num(w)}" '
                f'height="10" fill="#bbb"><title>{state}: {count}</title></rect>'
            )
            left += w
    parts.append("</g>")
    return "".join(parts)


def _summary_svg(g: _Graph, level: list[int], path: list[int], href: Callable[[str], str], selected: str | None) -> str:
    """The graph folded by level: a column of state counts per level, then the critical path."""
    n_levels = max(level) + 1
    drawn = n_levels if n_levels <= _MAX_LEVEL_COLUMNS else _MAX_LEVEL_COLUMNS - 1
    counts = [[0] * len(STATES) for _ in range(drawn + (1 if drawn < n_levels else 0))]
    selected_column = -1
    for i, node in enumerate(g.nodes):
        column = min(level[i], drawn)
        counts[column][_STATE_INDEX[_state(node.state)]] += 1
        if node.id == selected:
            selected_column = column
    label = f"Task graph summary: {_plural(len(g.nodes), 'task', 'tasks')} in {_plural(n_levels, 'level', 'levels')}"
    out: list[str] = []
    for c, column_counts in enumerate(counts):
        x = _MARGIN + c * (_LEVEL_W + _LEVEL_GAP)
        folded = c == drawn
        heading = f"{n_levels - drawn} more levels" if folded else f"level {c}"
        out.append(_level_column(x, heading, column_counts, c == selected_column, folded))
    y = _MARGIN + _LEVEL_H + 28
    if path:
        out.append(
            f'<text class="heading" x="{_MARGIN}" y="{y}">critical path: {_plural(len(path), "task", "tasks")}</text>'
        )
    else:
        out.append(f'<text class="heading" x="{_MARGIN}" y="{y}">no critical path: every task is on a cycle</text>')
    for k, i in enumerate(path[:_PATH_SHOWN]):
        node = g.nodes[i]
        y += _LINE_H
        text = _esc(_clip(f"{k + 1}. {node.id}: {node.title}", _PATH_CHARS))
        out.append(
            f'<a href="{_esc(href(node.id))}"><text class="critical" x="{_MARGIN + 8}" y="{y}">{text}</text></a>'
        )
    if len(path) > _PATH_SHOWN:
        y += _LINE_H
        out.append(f'<text class="more" x="{_MARGIN + 8}" y="{y}" fill="#666">… {len(path) - _PATH_SHOWN} more</text>')
    width = max(2 * _MARGIN + len(counts) * (_LEVEL_W + _LEVEL_GAP) - _LEVEL_GAP, 600)
    return _svg_open(width, y + _MARGIN, label, "dag-summary") + "".join(out) + "</svg>"


def dag_svg(nodes: Sequence[Node], *, href: Callable[[str], str], limit: int = 400, selected: str | None = None) -> str:
    """The task graph as an inline SVG: left to right by level, the critical path marked.

    Each node links to ``href(id)`` and carries ``data-task`` with its escaped id; ``selected``
    names the node to mark. Past ``limit`` nodes the picture is a summary instead: one column
    per level with its state counts, then the critical path as a list of links.
    """
    g = _graph(nodes)
    if not g.nodes:
        return _message_svg("no tasks")
    level = _level_list(g)
    path = _critical_indices(g)
    if len(g.nodes) > limit:
        return _summary_svg(g, level, path, href, selected)
    return _full_svg(g, level, path, href, selected)


# --------------------------------------------------------------------------- the timeline

_LABEL_W = 190
_PLOT_W = 900
_RIGHT_PAD = 30
_AXIS_H = 24
_LANE_H = 20
_BAR_H = 14
_WAIT_H = 6
_MIN_BAR_W = 2.0
_LABEL_CHARS = 30
_MAX_TICKS = 10
_TARGET_TICKS = 8


def _nice_steps() -> tuple[float, ...]:
    """Tick intervals that land on round numbers of seconds, minutes, hours or days."""
    small = [m * 10.0**k for k in range(-3, 1) for m in (1, 2, 5)]
    clock = [10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200]
    days = [86400.0 * m * 10**k for k in range(7) for m in (1, 2, 5)]
    return tuple(float(s) for s in (*small, *clock, *days))


_STEPS = _nice_steps()


def _tick_step(span: float) -> float:
    """The nice interval that puts closest to eight ticks across ``span`` (the larger on a tie)."""
    if span / _STEPS[-1] > _MAX_TICKS:
        return span / _TARGET_TICKS
    return min(_STEPS, key=lambda step: (abs(_tick_count(span, step) - _TARGET_TICKS), -step))


def _tick_count(span: float, step: float) -> int:
    """How many ticks, the one at 0 included, fit across ``span`` (a rounding error short counts)."""
    return math.floor(span / step * (1 + 1e-9)) + 1


def _tick_label(seconds: float) -> str:
    """A tick's offset from the start: ``0 s``, ``30 s``, ``2 min``, ``1 h 30 min``, ``2 d``."""
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        m, s = divmod(round(seconds), 60)
        return f"{m} min {s} s" if s else f"{m} min"
    if seconds < 86400:
        h, m = divmod(round(seconds / 60), 60)
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(round(seconds / 3600), 24)
    return f"{d} d {h} h" if h else f"{d} d"


def _duration(seconds: float) -> str:
    """A length of time for a tooltip: ``3.2 s``, ``40 s``, ``2 min 5 s``, ``1 h 3 min``."""
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    if round(seconds) < 60:
        return f"{round(seconds)} s"
    if round(seconds) < 3600:
        m, s = divmod(round(seconds), 60)
        return f"{m} min {s} s" if s else f"{m} min"
    h, m = divmod(round(seconds / 60), 60)
    return f"{h} h {m} min" if m else f"{h} h"


def _span(start: float, end: float | None, now: float) -> tuple[float, float] | None:
    """An interval with open ends closed at ``now``; None when its start is not a real time."""
    if not math.isfinite(start):
        return None
    stop = now if end is None else end
    if not math.isfinite(stop) or stop < start:
        stop = start
    return start, stop


def _bounds(rows: Iterable[Row], phases: Iterable[Phase], now: float) -> tuple[float, float] | None:
    """The earliest start and latest end over everything drawable, or None when nothing is."""
    spans: list[tuple[float, float] | None] = [_span(p.start, p.end, now) for p in phases]
    for row in rows:
        spans.extend(_span(a.start, a.end, now) for a in row.attempts)
        spans.extend(_span(w.start, w.end, now) for w in row.waits)
    real = [s for s in spans if s is not None]
    if not real:
        return None
    return min(s[0] for s in real), max(s[1] for s in real)


@dataclass(frozen=True)
class _Scale:
    """Maps unix seconds to x pixels in the plot area."""

    t0: float
    span: float

    def x(self, t: float) -> float:
        return _LABEL_W + (t - self.t0) * _PLOT_W / self.span

    def bar(self, start: float, stop: float) -> tuple[str, str]:
        """The x and width attributes of a bar, at least ``_MIN_BAR_W`` wide."""
        x = self.x(start)
        return _num(x), _num(max(self.x(stop) - x, _MIN_BAR_W))


def _ticks(scale: _Scale, height: float) -> list[str]:
    """Vertical tick lines across the chart and their labels along the top."""
    step = _tick_step(scale.span)
    out: list[str] = []
    for i in range(_tick_count(scale.span, step)):
        x = _num(scale.x(scale.t0 + i * step))
        out.append(f'<line class="tick" x1="{x}" y1="{_AXIS_H - 4}" x2="{x}" y2="{_num(height)}" stroke="#eee"/>')
        out.append(
            f'<text class="axis" x="{x}" y="{_AXIS_H - 8}" text-anchor="middle" fill="#666">{_tick_label(i * step)}</text>'
        )
        i += 1
    return out


def _wait_text(kind: str, seconds: float) -> str:
    if kind == "backoff":
        return f"backoff {_duration(seconds)}"
    if kind == "decision":
        return f"waiting for a decision {_duration(seconds)}"
    return f"{_esc(kind)} {_duration(seconds)}"


def _lane(row: Row, y: float, scale: _Scale, now: float, link: str) -> str:
    """One task's lane: its linked label, a bar per attempt and a thinner bar per wait."""
    tid = _esc(row.id)
    label = _esc(_clip(f"{row.id} {row.title}" if row.title else row.id, _LABEL_CHARS))
    parts = [
        f'<g class="lane state-{_state(row.state)}" data-task="{tid}">'
        f'<a href="{_esc(link)}"><text class="label" x="{_MARGIN}" y="{_num(y + 14)}">{label}'
        f"<title>{tid}: {_esc(row.title)} ({_esc(row.state)})</title></text></a>"
    ]
    for w in row.waits:
        span = _span(w.start, w.end, now)
        if span is not None:
            x, width = scale.bar(*span)
            cls = w.kind if w.kind in WAIT_KINDS else "other"
            tip = _wait_text(w.kind, span[1] - span[0]) + (" so far" if w.end is None else "")
            parts.append(
                f'<rect class="wait wait-{cls}" x="{x}" y="{_num(y + (_LANE_H - _WAIT_H) / 2)}" width="{width}" '
                f'height="{_WAIT_H}" fill="#ccc"><title>{tip}</title></rect>'
            )
    for a in row.attempts:
        span = _span(a.start, a.end, now)
        if span is not None:
            x, width = scale.bar(*span)
            cls = a.outcome if a.outcome in ATTEMPT_OUTCOMES else "other"
            where = f" on node {_esc(a.node[:12])}" if a.node else ""
            tip = f"attempt {a.number}{where}: {_esc(a.outcome)}, {_duration(span[1] - span[0])}"
            tip += " so far" if a.end is None else ""
            parts.append(
                f'<rect class="bar attempt-{cls}" x="{x}" y="{_num(y + (_LANE_H - _BAR_H) / 2)}" width="{width}" '
                f'height="{_BAR_H}" fill="#888"><title>{tip}</title></rect>'
            )
    parts.append("</g>")
    return "".join(parts)


def _phase(phase: Phase, y: float, scale: _Scale, now: float) -> str:
    """One phase's lane: its label on the left, its bar on the time axis."""
    span = _span(phase.start, phase.end, now)
    if span is None:
        return ""
    x, width = scale.bar(*span)
    label = _esc(phase.label)
    tip = f"{label}: {_duration(span[1] - span[0])}" + (" so far" if phase.end is None else "")
    return (
        f'<text class="phase-label" x="{_MARGIN}" y="{_num(y + 14)}" fill="#666">{_esc(_clip(phase.label, _LABEL_CHARS))}</text>'
        f'<rect class="phase" x="{x}" y="{_num(y + (_LANE_H - _BAR_H) / 2)}" width="{width}" height="{_BAR_H}" '
        f'fill="#ddd"><title>{tip}</title></rect>'
    )


def timeline_svg(
    rows: Sequence[Row], phases: Sequence[Phase], *, now: float, href: Callable[[str], str], limit: int = 300
) -> str:
    """The run as a Gantt chart: the phases on top, then a lane per task that has run.

    Open attempts, waits and phases extend to ``now``. Tasks that never ran are left out and
    counted in a note; past ``limit`` drawable tasks the rest are counted in a last line.
    """
    active = [row for row in rows if row.attempts or row.waits]
    never_ran = len(rows) - len(active)
    bounds = _bounds(active, phases, now)
    if bounds is None:
        return _message_svg("nothing has run yet")
    t0, t1 = bounds
    scale = _Scale(t0, t1 - t0 if t1 > t0 else 1.0)
    shown = active[: max(limit, 0)]
    hidden = len(active) - len(shown)
    drawn_phases = [p for p in phases if math.isfinite(p.start)]
    notes = (1 if hidden else 0) + (1 if never_ran else 0)
    lanes_bottom = _AXIS_H + (len(drawn_phases) + len(shown)) * _LANE_H
    height = lanes_bottom + notes * _LANE_H + _MARGIN
    width = _LABEL_W + _PLOT_W + _RIGHT_PAD
    label = f"Timeline: {_plural(len(shown), 'task', 'tasks')}"
    out = [_svg_open(width, height, label, "timeline")]
    out.extend(_ticks(scale, lanes_bottom))
    y = float(_AXIS_H)
    for phase in drawn_phases:
        out.append(_phase(phase, y, scale, now))
        y += _LANE_H
    for row in shown:
        out.append(_lane(row, y, scale, now, href(row.id)))
        y += _LANE_H
    if hidden:
        y += _LANE_H
        more = _plural(hidden, "more task", "more tasks")
        out.append(f'<text class="more" x="{_MARGIN}" y="{_num(y - 6)}" fill="#666">… and {more}</text>')
    if never_ran:
        y += _LANE_H
        verb = "task has" if never_ran == 1 else "tasks have"
        out.append(f'<text class="note" x="{_MARGIN}" y="{_num(y - 6)}" fill="#666">{never_ran} {verb} not run</text>')
    out.append("</svg>")
    return "".join(out)
