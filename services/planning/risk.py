"""Risk flagging: tasks whose words or commands can do damage that is hard to undo.

A risky task is not an error. It is marked ``risk: high`` with the reasons, so that the trust gate
asks for its own confirmation even inside an approved plan. Flagging never lowers a risk: a task
someone marked high stays high.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from harness.models import Risk, TaskPacket

#: (reason, pattern) pairs, checked against the title, the objective and every command.
RISK_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (reason, re.compile(pattern, re.IGNORECASE))
    for reason, pattern in (
        ("deploys", r"\bdeploy(?:s|ed|ing|ment|ments)?\b"),
        ("deletes data", r"\bdelet(?:e|es|ed|ing|ion)\b"),
        (
            "drops a table or database",
            r"\bdrop\s+(?:the\s+)?(?:[\w.-]+\s+)?(?:table|database|schema|collection|index)e?s?\b",
        ),
        ("touches production", r"\b(?:production|prod)\b"),
        ("force-pushes", r"\bpush\b[^;&|\n]*?\s(?:--force(?:-with-lease)?|-f)\b|\bforce[- ]push"),
        (
            "removes files recursively (rm -rf)",
            r"\brm\s+(?:-\w*r\w*f\w*|-\w*f\w*r\w*|-r\s+-f|-f\s+-r|--recursive\s+--force|--force\s+--recursive)\b",
        ),
        ("truncates data", r"\btruncat(?:e|es|ed|ing)\b"),
        ("rewrites git history (reset --hard)", r"\breset\s+--hard\b"),
        ("publishes a package", r"\b(?:npm|cargo|twine|poetry|gem|pnpm|yarn)\s+(?:publish|upload|push)\b"),
        ("destroys infrastructure", r"\bterraform\s+(?:destroy|apply)\b|\bkubectl\s+(?:delete|drain)\b"),
    )
)


#: Any of the rules at once: a field it finds nothing in needs no rule of its own (most fields).
_ANY_RULE = re.compile("|".join(f"(?:{pattern.pattern})" for _, pattern in RISK_RULES), re.IGNORECASE)


def risk_reasons(packet: TaskPacket) -> list[str]:
    """Why ``packet`` is risky ("deploys: 'deploy' in title"), empty when it is not."""
    fields: list[tuple[str, str]] = [("title", packet.title), ("objective", packet.objective)]
    fields += [(f"commands[{i}]", c) for i, c in enumerate(packet.commands)]
    fields = [(where, text) for where, text in fields if _ANY_RULE.search(text)]
    reasons: list[str] = []
    if not fields:
        return reasons
    for reason, pattern in RISK_RULES:
        for where, text in fields:
            match = pattern.search(text)
            if match:
                reasons.append(f"{reason}: '{match.group(0)}' in {where}")
                break
    return reasons


def flag_risks(packets: Iterable[TaskPacket]) -> list[TaskPacket]:
    """Copies of ``packets`` with risky ones set to ``risk: high`` and their reasons listed.

    Pure: the inputs are not modified. Reasons found now are merged with reasons already there.
    """
    flagged: list[TaskPacket] = []
    for packet in packets:
        found = risk_reasons(packet)
        if not found:
            flagged.append(packet.model_copy(deep=True))
            continue
        reasons = list(packet.risk_reasons) + [r for r in found if r not in packet.risk_reasons]
        flagged.append(packet.model_copy(update={"risk": Risk.high, "risk_reasons": reasons}, deep=True))
    return flagged


def risky_ids(packets: Sequence[TaskPacket]) -> list[str]:
    """Ids of packets that are high risk or would be flagged, in plan order."""
    return [p.id for p in packets if p.risk == Risk.high or risk_reasons(p)]
