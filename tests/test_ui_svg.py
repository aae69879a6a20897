"""The dashboard's pictures: graph levels, the critical path, and the SVG they are drawn as."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.ui import svg
from harness.ui.svg import Attempt, Node, Phase, Row, Wait

SVG = "{http://www.w3.org/2000/svg}"
EVIL = "<script>alert(1)</script>"


def href(task_id: str) -> str:
    return f"/task/{task_id}?x=1&y=2"


def node(task_id: str, *deps: str, state: str = "pending", title: str = "", ms: float | None = None) -> Node:
    return Node(task_id, title or f"task {task_id}", state, tuple(deps), ms)


def diamond(b_ms: float | None = None, c_ms: float | None = None) -> list[Node]:
    return [node("a", ms=1 if b_ms else None), node("b", "a", ms=b_ms), node("c", "a", ms=c_ms), node("d", "b", "c")]


def chain(n: int) -> list[Node]:
    return [node("n0")] + [node(f"n{i}", f"n{i - 1}") for i in range(1, n)]


def classes(element: ET.Element) -> set[str]:
    return set(element.get("class", "").split())


def parse(picture: str) -> ET.Element:
    root = ET.fromstring(picture)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img" and root.get("aria-label")
    assert root.get("width") and root.get("height") and root.get("viewBox")
    return root


def box(group: ET.Element) -> ET.Element:
    """The frame of a node."""
    rect = group.find(f"{SVG}rect")
    assert rect is not None
    return rect


def assert_safe(picture: str) -> None:
    """No markup from data, no script, no handlers, no inline styles."""
    assert "<script" not in picture
    assert " on" not in re.sub(r">[^<]*<", "><", picture)  # no attribute starting with "on"
    assert "style=" not in picture


# --------------------------------------------------------------------------- levels


def test_levels_of_a_diamond() -> None:
    assert svg.levels(diamond()) == {"a": 0, "b": 1, "c": 1, "d": 2}


def test_unknown_dependency_is_ignored() -> None:
    assert svg.levels([node("a", "ghost"), node("b", "a", "ghost")]) == {"a": 0, "b": 1}


def test_levels_of_a_long_chain_need_no_recursion() -> None:
    result = svg.levels(chain(10_000))
    assert [result[f"n{i}"] for i in range(10_000)] == list(range(10_000))


def test_a_cycle_terminates_and_goes_past_the_deepest_level() -> None:
    nodes = [node("a"), node("b", "a"), node("c", "b", "e"), node("e", "c"), node("f", "e"), node("s", "s")]
    result = svg.levels(nodes)
    assert result["a"] == 0 and result["b"] == 1
    assert result["c"] == result["e"] == result["f"] == result["s"] == 2
    assert svg.critical_path(nodes) == ["a", "b"]
    ET.fromstring(svg.dag_svg(nodes, href=href))
    ET.fromstring(svg.dag_svg(nodes, href=href, limit=2))


def test_all_cycle_graph_draws() -> None:
    nodes = [node("x", "y"), node("y", "x")]
    assert svg.levels(nodes) == {"x": 0, "y": 0}
    assert svg.critical_path(nodes) == []
    assert "no critical path" in svg.dag_svg(nodes, href=href, limit=1)


# --------------------------------------------------------------------------- critical path


def test_critical_path_takes_the_heavier_branch() -> None:
    assert svg.critical_path(diamond(b_ms=100, c_ms=5)) == ["a", "b", "d"]
    assert svg.critical_path(diamond(b_ms=5, c_ms=100)) == ["a", "c", "d"]


def test_critical_path_without_durations_is_the_longest_chain() -> None:
    nodes = [node("a"), node("b"), node("c", "b"), node("d", "c"), node("e", "a")]
    assert svg.critical_path(nodes) == ["b", "c", "d"]


def test_critical_path_ties_go_to_plan_order() -> None:
    assert svg.critical_path(diamond()) == ["a", "b", "d"]


def test_unknown_durations_weigh_the_median() -> None:
    # b unknown weighs the median (10); c is known at 8, so b's branch wins.
    nodes = [node("a", ms=10), node("b", "a"), node("c", "a", ms=8), node("d", "b", "c", ms=10)]
    assert svg.critical_path(nodes) == ["a", "b", "d"]


def test_critical_path_of_a_long_chain_is_whole() -> None:
    assert svg.critical_path(chain(10_000)) == [f"n{i}" for i in range(10_000)]


def test_critical_path_of_nothing_is_empty() -> None:
    assert svg.critical_path([]) == []


# --------------------------------------------------------------------------- dag_svg


def test_dag_escapes_everything_from_data() -> None:
    nodes = [node('a"&b', title=EVIL), node("c", 'a"&b', title="plain")]
    picture = svg.dag_svg(nodes, href=href)
    assert_safe(picture)
    assert "&lt;script&gt;" in picture
    assert 'data-task="a&quot;&amp;b"' in picture
    assert 'a"&b' not in picture
    root = parse(picture)
    groups = root.iter(f"{SVG}g")
    assert {g.get("data-task") for g in groups} == {'a"&b', "c"}
    links = [a.get("href") for a in root.iter(f"{SVG}a")]
    assert links == ['/task/a"&b?x=1&y=2', "/task/c?x=1&y=2"]


def test_dag_summary_escapes_too() -> None:
    nodes = [node('a"&b', title=EVIL), node("c", 'a"&b', title=EVIL)]
    picture = svg.dag_svg(nodes, href=href, limit=1)
    assert_safe(picture)
    assert "&lt;script&gt;" in picture
    parse(picture)


def test_unknown_state_renders_as_pending() -> None:
    picture = svg.dag_svg([node("a", state="bogus evil-class"), node("b", state="failed")], href=href)
    root = parse(picture)
    node_classes = [classes(g) for g in root.iter(f"{SVG}g")]
    assert "state-pending" in node_classes[0] and "state-failed" in node_classes[1]
    assert "evil-class" not in picture.replace("(bogus evil-class)", "")
    allowed = {f"state-{s}" for s in svg.STATES} | {"node", "critical", "selected"}
    assert all(c <= allowed for c in node_classes)


def test_critical_nodes_and_edges_are_marked() -> None:
    root = parse(svg.dag_svg(diamond(b_ms=100, c_ms=5), href=href))
    marked = {g.get("data-task") for g in root.iter(f"{SVG}g") if "critical" in classes(g)}
    assert marked == {"a", "b", "d"}
    edges = [p for p in root.iter(f"{SVG}path")]
    assert len(edges) == 4
    assert all("edge" in classes(p) and (p.get("d") or "").startswith("M") for p in edges)
    assert sum("critical" in classes(p) for p in edges) == 2


def test_every_edge_has_a_path_from_right_side_to_left_side() -> None:
    nodes = [node("a"), node("b"), node("c", "a", "b", "ghost"), node("d", "c", "a")]
    root = parse(svg.dag_svg(nodes, href=href))
    assert len(list(root.iter(f"{SVG}path"))) == 4
    boxes = [box(g) for g in root.iter(f"{SVG}g")]
    right = {float(r.get("x", 0)) + float(r.get("width", 0)) for r in boxes}
    left = {float(r.get("x", 0)) for r in boxes}
    for p in root.iter(f"{SVG}path"):
        numbers = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", p.get("d", ""))]
        assert numbers[0] in right and numbers[-2] in left


def test_edges_come_before_nodes() -> None:
    picture = svg.dag_svg(diamond(), href=href)
    assert picture.rindex("<path") < picture.index("<g")


def test_columns_follow_levels_and_long_titles_are_cut() -> None:
    nodes = [node("a", title="x" * 40), node("b", "a"), node("c", "b")]
    root = parse(svg.dag_svg(nodes, href=href))
    xs = {g.get("data-task"): float(box(g).get("x", 0)) for g in root.iter(f"{SVG}g")}
    assert xs["a"] < xs["b"] < xs["c"]
    labels = [t.text or "" for t in root.iter(f"{SVG}text") if "label" in classes(t)]
    assert labels[0] == "x" * 21 + "…"
    tips = [t.text for t in root.iter(f"{SVG}title")]
    assert tips[0] == "a: " + "x" * 40 + " (pending)"


def test_barycentre_orders_a_column_by_its_dependencies() -> None:
    # Column 1 in plan order is (q, p); q depends on the lower root, so it goes below p.
    nodes = [node("r1"), node("r2"), node("q", "r2"), node("p", "r1")]
    root = parse(svg.dag_svg(nodes, href=href))
    ys = {g.get("data-task"): float(box(g).get("y", 0)) for g in root.iter(f"{SVG}g")}
    assert ys["r1"] < ys["r2"] and ys["p"] < ys["q"]


def test_selected_node_is_marked() -> None:
    root = parse(svg.dag_svg(diamond(), href=href, selected="c"))
    selected = [g.get("data-task") for g in root.iter(f"{SVG}g") if "selected" in classes(g)]
    assert selected == ["c"]


def test_same_input_same_picture() -> None:
    assert svg.dag_svg(diamond(), href=href) == svg.dag_svg(diamond(), href=href)


def test_no_tasks() -> None:
    picture = svg.dag_svg([], href=href)
    assert "no tasks" in picture
    parse(picture)


def test_big_graph_draws_a_summary() -> None:
    nodes = [
        node(f"t{i}", *([f"t{i - 1}"] if i % 100 else []), state="completed" if i < 812 else "x") for i in range(10_000)
    ]
    picture = svg.dag_svg(nodes, href=href)
    assert "level 0" in picture and "level 99" in picture
    assert picture.count("<rect") < 1_000
    assert "completed: 9" in picture and "pending: 91" in picture
    root = parse(picture)
    assert "dag-summary" in classes(root)
    path_links = list(root.iter(f"{SVG}a"))
    assert len(path_links) == 30
    assert "… 70 more" in picture


def test_summary_folds_levels_past_the_last_column() -> None:
    picture = svg.dag_svg(chain(1_000), href=href, selected="n500")
    root = parse(picture)
    columns = [g for g in root.iter(f"{SVG}g") if "level" in classes(g)]
    assert len(columns) == 200
    assert "level 198" in picture and "level 199" not in picture
    assert "801 more levels" in picture
    assert "selected" in classes(columns[-1]) and "more" in classes(columns[-1])
    assert "… 970 more" in picture


def test_summary_can_be_forced_small() -> None:
    picture = svg.dag_svg(diamond(), href=href, limit=3)
    assert "level 2" in picture and "critical path: 3 tasks" in picture
    parse(picture)


# --------------------------------------------------------------------------- timeline_svg


def retried(task_id: str = "t", title: str = "retried") -> Row:
    return Row(
        task_id,
        title,
        "completed",
        (Attempt(1, 100.0, 103.2, "failed"), Attempt(2, 105.2, 110.0, "completed")),
        (Wait("backoff", 103.2, 105.2),),
    )


def bars(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter(f"{SVG}rect") if "bar" in classes(r)]


def test_retried_task_has_two_bars_and_a_backoff() -> None:
    root = parse(svg.timeline_svg([retried()], [], now=200.0, href=href))
    found = bars(root)
    assert [classes(r) - {"bar"} for r in found] == [{"attempt-failed"}, {"attempt-completed"}]
    assert [r.findtext(f"{SVG}title") for r in found] == ["attempt 1: failed, 3.2 s", "attempt 2: completed, 4.8 s"]
    waits = [r for r in root.iter(f"{SVG}rect") if "wait" in classes(r)]
    assert len(waits) == 1 and "wait-backoff" in classes(waits[0])
    assert waits[0].findtext(f"{SVG}title") == "backoff 2.0 s"
    first_end = float(found[0].get("x", 0)) + float(found[0].get("width", 0))
    assert first_end <= float(waits[0].get("x", 0)) + 0.1
    assert float(waits[0].get("x", 0)) < float(found[1].get("x", 0))
    lanes = [g for g in root.iter(f"{SVG}g") if "lane" in classes(g)]
    assert len(lanes) == 1 and "state-completed" in classes(lanes[0]) and lanes[0].get("data-task") == "t"


def test_open_attempt_reaches_now() -> None:
    done = Row("a", "", "completed", (Attempt(1, 0.0, 10.0, "completed"),), ())
    running = Row("b", "", "running", (Attempt(1, 5.0, None, "running"),), (Wait("decision", 2.0, None),))
    root = parse(svg.timeline_svg([done, running], [], now=40.0, href=href))
    found = bars(root)
    open_bar = found[1]
    right_edge = float(open_bar.get("x", 0)) + float(open_bar.get("width", 0))
    assert abs(right_edge - (190 + 900)) < 0.2  # now is the end of the axis
    assert float(found[0].get("width", 0)) < 900 / 3
    assert open_bar.findtext(f"{SVG}title") == "attempt 1: running, 35 s so far"
    waits = [r.findtext(f"{SVG}title") for r in root.iter(f"{SVG}rect") if "wait-decision" in classes(r)]
    assert waits == ["waiting for a decision 38 s so far"]


def test_phases_get_a_lane_each() -> None:
    phases = [Phase("gate", 0.0, 2.0), Phase("plan", 2.0, 30.0), Phase("bootstrap", 30.0, None)]
    root = parse(svg.timeline_svg([], phases, now=60.0, href=href))
    rects = [r for r in root.iter(f"{SVG}rect") if "phase" in classes(r)]
    assert len(rects) == 3
    ys = [float(r.get("y", 0)) for r in rects]
    assert ys == sorted(ys) and len(set(ys)) == 3
    assert rects[2].findtext(f"{SVG}title") == "bootstrap: 30 s so far"


def test_tiny_bars_stay_visible() -> None:
    rows = [Row("a", "", "completed", (Attempt(1, 0.0, 0.0001, "completed"),), ()), retried()]
    root = parse(svg.timeline_svg(rows, [], now=1000.0, href=href))
    assert float(bars(root)[0].get("width", 0)) >= 2


def test_axis_ticks_are_nice() -> None:
    root = parse(svg.timeline_svg([], [Phase("run", 1000.0, 1200.0)], now=2000.0, href=href))
    labels = [t.text for t in root.iter(f"{SVG}text") if "axis" in classes(t)]
    assert labels == ["0 s", "30 s", "1 min", "1 min 30 s", "2 min", "2 min 30 s", "3 min"]
    assert len([ln for ln in root.iter(f"{SVG}line") if "tick" in classes(ln)]) == len(labels)
    hours = parse(svg.timeline_svg([], [Phase("run", 0.0, 5 * 3600.0)], now=0.0, href=href))
    assert [t.text for t in hours.iter(f"{SVG}text") if "axis" in classes(t)] == [
        "0 s",
        "1 h",
        "2 h",
        "3 h",
        "4 h",
        "5 h",
    ]
    short = parse(svg.timeline_svg([], [Phase("run", 0.0, 0.7)], now=0.0, href=href))
    short_labels = [t.text for t in short.iter(f"{SVG}text") if "axis" in classes(t)]
    assert short_labels[:3] == ["0 s", "0.1 s", "0.2 s"] and 6 <= len(short_labels) <= 11


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=-2, max_value=7))
def test_about_eight_ticks_for_any_span(exponent: float) -> None:
    span = 10**exponent
    root = ET.fromstring(svg.timeline_svg([], [Phase("run", 0.0, span)], now=0.0, href=href))
    xs = [float(t.get("x", 0)) for t in root.iter(f"{SVG}text") if "axis" in classes(t)]
    assert 5 <= len(xs) <= 10
    assert xs == sorted(xs) and xs[0] == 190 and xs[-1] <= 190 + 900 + 0.1


def test_rows_past_the_limit_are_counted() -> None:
    rows = [retried(f"t{i}") for i in range(10)]
    picture = svg.timeline_svg(rows, [], now=200.0, href=href, limit=4)
    root = parse(picture)
    assert [g.get("data-task") for g in root.iter(f"{SVG}g")] == ["t0", "t1", "t2", "t3"]
    more = [t.text for t in root.iter(f"{SVG}text") if "more" in classes(t)]
    assert more == ["… and 6 more tasks"]


def test_rows_that_never_ran_are_left_out_and_counted() -> None:
    idle = [Row(f"idle{i}", "", "pending", (), ()) for i in range(3)]
    rows = [idle[0], retried("a"), idle[1], retried("b"), idle[2]]
    picture = svg.timeline_svg(rows, [], now=200.0, href=href, limit=1)
    root = parse(picture)
    assert [g.get("data-task") for g in root.iter(f"{SVG}g")] == ["a"]
    notes = [t.text for t in root.iter(f"{SVG}text") if {"more", "note"} & classes(t)]
    assert notes == ["… and 1 more task", "3 tasks have not run"]


def test_timeline_escapes_everything_from_data() -> None:
    row = Row('x"&y', EVIL, "bogus", (Attempt(1, 0.0, 1.0, EVIL),), (Wait(EVIL, 1.0, 2.0),))
    picture = svg.timeline_svg([row], [Phase(EVIL, 0.0, 1.0)], now=5.0, href=href)
    assert_safe(picture)
    assert "&lt;script&gt;" in picture
    root = parse(picture)
    assert [r.get("class") for r in root.iter(f"{SVG}rect")] == ["phase", "wait wait-other", "bar attempt-other"]
    lane = next(g for g in root.iter(f"{SVG}g"))
    assert lane.get("class") == "lane state-pending" and lane.get("data-task") == 'x"&y'
    assert next(root.iter(f"{SVG}a")).get("href") == '/task/x"&y?x=1&y=2'


def test_control_characters_are_replaced_so_the_picture_stays_xml() -> None:
    picture = svg.dag_svg([node("a\x00b", title="t\x1b[31m")], href=href)
    parse(picture)
    picture = svg.timeline_svg(
        [Row("a\x00", "\x07", "running", (Attempt(1, 0, None, "running"),), ())], [], now=1, href=href
    )
    parse(picture)


def test_nothing_has_run_yet() -> None:
    assert "nothing has run yet" in svg.timeline_svg([], [], now=0.0, href=href)
    idle = [Row("a", "", "pending", (), ())]
    picture = svg.timeline_svg(idle, [], now=0.0, href=href)
    assert "nothing has run yet" in picture
    parse(picture)


def test_timeline_is_deterministic() -> None:
    rows = [retried(f"t{i}") for i in range(5)]
    phases = [Phase("gate", 90.0, 99.0)]
    assert svg.timeline_svg(rows, phases, now=300.0, href=href) == svg.timeline_svg(rows, phases, now=300.0, href=href)


# --------------------------------------------------------------------------- properties


@st.composite
def dags(draw: st.DrawFn) -> list[Node]:
    """Random DAGs: every edge goes from an earlier node to a later one."""
    n = draw(st.integers(min_value=1, max_value=25))
    nodes = []
    for i in range(n):
        deps = draw(st.lists(st.integers(min_value=0, max_value=i - 1), max_size=4)) if i else []
        ms = draw(st.none() | st.floats(min_value=0, max_value=1000))
        nodes.append(node(f"n{i}", *(f"n{j}" for j in deps), ms=ms))
    return nodes


@settings(max_examples=100, deadline=None)
@given(dags())
def test_levels_and_critical_path_respect_every_edge(nodes: list[Node]) -> None:
    result = svg.levels(nodes)
    for child in nodes:
        for parent in child.depends_on:
            assert result[child.id] > result[parent]
    path = svg.critical_path(nodes)
    by_id = {n.id: n for n in nodes}
    assert path and not by_id[path[0]].depends_on
    for earlier, later in zip(path, path[1:], strict=False):
        assert earlier in by_id[later].depends_on
    assert not any(path[-1] in n.depends_on for n in nodes)  # it ends at a sink
    ET.fromstring(svg.dag_svg(nodes, href=href))
