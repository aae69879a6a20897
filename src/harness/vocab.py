"""The words of a run, each defined once: exit codes, questions, decisions, where answers come from.

Everything that names one of these (the supervisor, the fold, the CLI, policy rules, recovery
recipes, the event catalogue) imports it from here, so a new word is added in one place and a
misspelt one is a type error, not a silent mismatch.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

__all__ = [
    "ANSWERS",
    "ESCALATION_DECISIONS",
    "TASK_DECISIONS",
    "CheckVerdict",
    "Decision",
    "ExitCode",
    "HookPoint",
    "HookVerdict",
    "Mode",
    "Question",
    "Source",
    "TaskOutcome",
    "WaitReason",
]


class ExitCode(IntEnum):
    """What `harness` returns to its caller."""

    OK = 0  # every task completed or was skipped
    FAILED = 1  # the run failed or was aborted
    USAGE = 2  # a bad call or an invalid plan (every problem listed)
    WAITING = 3  # the run waits for a decision: gates fail closed
    INTERRUPTED = 130  # Ctrl-C or SIGTERM; `harness resume` continues


class Mode(StrEnum):
    """How far a run goes, chosen when it starts (``--mode``) and recorded in RUN_STARTED."""

    plan = "plan"  # plan, gate and bootstrap, then show what each task would run: nothing runs
    explore = "explore"  # run everything in a git worktree of the run; the workspace stays as it was
    execute = "execute"  # run in the workspace (agents in their worktrees, as always)


class Question(StrEnum):
    """The four kinds of question a run can wait on; also the ``gate`` of a policy rule."""

    plan = "plan"  # approve the plan (or reject it with feedback)
    trust = "trust"  # run a worker whose scope no trusted root covers, or a risky task
    manual = "manual"  # a task with no commands: a person does it and says so
    escalation = "escalation"  # a failure its recipe does not retry automatically


class Decision(StrEnum):
    """Every answer any question can get."""

    approve = "approve"
    reject = "reject"
    done = "done"
    trust = "trust"
    retry = "retry"
    skip = "skip"
    abort = "abort"


#: What each kind of question may be answered with (a policy rule's ``decision`` is checked here).
ANSWERS: dict[Question, tuple[Decision, ...]] = {
    Question.plan: (Decision.approve, Decision.reject),
    Question.trust: (Decision.trust,),
    Question.manual: (Decision.done, Decision.skip),
    Question.escalation: (Decision.retry, Decision.skip, Decision.abort),
}

#: What `harness decide RUN TASK ...` records.
TASK_DECISIONS: tuple[Decision, ...] = (Decision.done, Decision.trust, Decision.retry, Decision.skip, Decision.abort)

#: What an escalation (and so a recovery recipe's ``options``) may offer.
ESCALATION_DECISIONS = ANSWERS[Question.escalation]


class Source(StrEnum):
    """Who answered a question, recorded with every decision."""

    flag = "flag"  # --approve on the command line
    policy = "policy"  # a named rule of the policy file
    tty = "tty"  # a person at the run's own terminal
    cli = "cli"  # `harness approve` / `decide` / `amend` from another terminal
    ui = "ui"  # the web dashboard
    supervisor = "supervisor"  # the harness itself (a refusal, a dependency skip)


class TaskOutcome(StrEnum):
    """How one attempt at a task ended, as its thread reports it back to the scheduler."""

    completed = "completed"  # TASK_COMPLETED is logged
    failed = "failed"  # TASK_FAILED is logged; recovery decides what next
    waiting = "waiting"  # trust is required and nobody could answer: TRUST_REQUIRED is logged
    held = "held"  # a sibling failed for good while this one was set up: not started
    interrupted = "interrupted"  # the supervisor is stopping: resume re-runs it
    error = "error"  # the harness itself failed (a service went fatal): the run pauses


class CheckVerdict(StrEnum):
    """What the per-command checks decided about one command (COMMAND_CHECKED.decision)."""

    allow = "allow"  # it is sent to the worker as it is (or as a pre_command hook replaced it)
    deny = "deny"  # the task fails before anything runs (a permission failure naming the rule)
    ask = "ask"  # a person (or a trust rule of the policy) must confirm it; an allow follows the answer


class HookPoint(StrEnum):
    """Where a hook of ``hooks:`` in harness.yaml runs (HOOK_RAN.point)."""

    pre_task = "pre_task"  # before a task's worker is spawned: a deny fails the task (permission)
    pre_command = "pre_command"  # before each command is sent: a deny refuses it; may replace it
    post_command = "post_command"  # after the commands ran, before the verdict: a deny fails the task
    post_task = "post_task"  # after the verdict: observes only
    on_waiting = "on_waiting"  # the run recorded that it waits for a person (RUN_WAITING)
    on_run_end = "on_run_end"  # the run ended (EXECUTION_COMPLETE)


class HookVerdict(StrEnum):
    """How one hook run ended (HOOK_RAN.decision)."""

    allow = "allow"  # exit 0 (a URL: a 2xx answer)
    deny = "deny"  # exit 2: its stderr is the reason
    error = "error"  # any other exit, a hook that cannot start, an invalid answer, an HTTP error
    timeout = "timeout"  # it ran past its timeout and its process group was killed


class WaitReason(StrEnum):
    """Why a run stopped to wait (RUN_WAITING.reason)."""

    approval = "approval"  # the plan gate
    decision = "decision"  # tasks wait for manual steps, trust or escalations
    interrupted = "interrupted"  # Ctrl-C or SIGTERM
    service_fatal = "service_fatal"  # a service exceeded its restart intensity
