"""The workflow drawn as an SVG on the server: no JavaScript, works offline.

Active phases form a column in declaration order (the order a session walks
them); final phases form the bottom row. An edge to the next phase is a short
straight line; other edges arc out to the right (forward) or left (backward),
wider arcs for longer jumps so they don't overlap.
"""

from __future__ import annotations

from html import escape

from markupsafe import Markup

from phasegate.domain.workflow import PhaseKind, Workflow

BOX_W, BOX_H, ROW_H, FINAL_W = 230, 30, 48, 150
WIDTH = 700
CENTER_X = WIDTH // 2
ARC_STEP = 16

FILL = {
    PhaseKind.SYSTEM: "#eef1f5",
    PhaseKind.AGENT: "#e3f2e6",
    PhaseKind.HUMAN: "#fff3cd",
    PhaseKind.FINAL: "#f1f1f1",
}


def _layout(wf: Workflow) -> dict[str, tuple[int, int]]:
    """Centre of each phase's box."""
    active = [p.name for p in wf.phases if p.kind is not PhaseKind.FINAL]
    finals = [p.name for p in wf.phases if p.kind is PhaseKind.FINAL]
    pos = {name: (CENTER_X, 24 + i * ROW_H) for i, name in enumerate(active)}
    row_y = 24 + len(active) * ROW_H + 10
    step = WIDTH // (len(finals) + 1) if finals else 0
    for i, name in enumerate(finals):
        pos[name] = (step * (i + 1), row_y)
    return pos


def _edge(pos: dict[str, tuple[int, int]], src: str, dst: str, label: str, rank: int) -> str:
    (x1, y1), (x2, y2) = pos[src], pos[dst]
    label = escape(label)
    if x1 == x2 and y2 - y1 == ROW_H:
        return (
            f'<line x1="{x1}" y1="{y1 + BOX_H // 2}" x2="{x2}" y2="{y2 - BOX_H // 2}" '
            f'class="e" marker-end="url(#arrow)"/>'
            f'<text x="{x1 + 6}" y="{(y1 + y2) // 2 + 4}" class="el">{label}</text>'
        )
    if x1 != x2:  # into the bottom row of final phases
        return (
            f'<line x1="{x1}" y1="{y1 + BOX_H // 2}" x2="{x2}" y2="{y2 - BOX_H // 2}" '
            f'class="e" marker-end="url(#arrow)"/>'
            f'<text x="{(x1 + x2) // 2 + 6}" y="{(y1 + y2) // 2}" class="el">{label}</text>'
        )
    side = 1 if y2 > y1 else -1
    edge_x = x1 + side * BOX_W // 2
    bulge = edge_x + side * (24 + ARC_STEP * rank)
    anchor = "start" if side > 0 else "end"
    path = f"M{edge_x},{y1} C{bulge},{y1} {bulge},{y2} {edge_x},{y2}"
    return (
        f'<path d="{path}" class="e" fill="none" marker-end="url(#arrow)"/>'
        f'<text x="{bulge + side * 4}" y="{(y1 + y2) // 2 + 4}" class="el" '
        f'text-anchor="{anchor}">{label}</text>'
    )


def workflow_svg(wf: Workflow, current: str | None = None) -> Markup:
    """The workflow as inline SVG; `current` is drawn highlighted."""
    pos = _layout(wf)
    height = max(y for _, y in pos.values()) + BOX_H
    parts = [
        f'<svg class="workflow" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="workflow {escape(wf.name)}, current phase {escape(current or "")}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" '
        'markerHeight="6" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z"/></marker>'
        "</defs>",
    ]
    ranks: dict[int, int] = {}
    for t in wf.transitions:
        targets = [(t.target, wf.edge_label(t))]
        if t.on_limit:
            targets.append((t.on_limit, f"{t.action} x{wf.max_fix_attempts}"))
        for target, label in targets:
            side = 1 if pos[target][1] > pos[t.source][1] else -1
            ranks[side] = ranks.get(side, 0) + 1
            parts.append(_edge(pos, t.source, target, label, ranks[side]))
    for phase in wf.phases:
        x, y = pos[phase.name]
        w = FINAL_W if phase.kind is PhaseKind.FINAL else BOX_W
        cls = "p current" if phase.name == current else "p"
        # A gate that locks something says so in its box: what a human's approval freezes.
        name = phase.name + (f" 🔒 {', '.join(phase.locks)}" if phase.locks else "")
        locks = f' data-locks="{escape(" ".join(phase.locks))}"' if phase.locks else ""
        parts.append(
            f'<g class="{cls}" data-phase="{escape(phase.name)}"{locks}>'
            f"<title>{escape(phase.description)}</title>"
            f'<rect x="{x - w // 2}" y="{y - BOX_H // 2}" width="{w}" '
            f'height="{BOX_H}" rx="6" fill="{FILL[phase.kind]}"/>'
            f'<text x="{x}" y="{y + 5}" text-anchor="middle">{escape(name)}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
