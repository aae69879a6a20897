"""Failure classification and recovery recipes: ordered rules as data, recipes from the spec."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.config import ConfigError
from harness.recovery import (
    NO_RULE,
    Decision,
    FailureType,
    Recovery,
    decide_command,
    escalation_reason,
    summarize,
    transitive_dependents,
)


def failed(stderr: str = "", *, reason: str = "command_failed", exit_code: int | None = 1, **extra) -> dict:
    """A failure as the supervisor records it from a worker's result."""
    return {
        "reason": reason,
        "exit_code": exit_code,
        "signal": None,
        "timed_out": False,
        "stderr_tail": stderr,
        "stdout_tail": "",
        **extra,
    }


JSON_TRACEBACK = (
    'Traceback (most recent call last):\n  File "<string>", line 1, in <module>\n'
    "json.decoder.JSONDecodeError: Expecting value: line 1 column 7 (char 6)\n"
)


@pytest.mark.parametrize(
    ("failure", "expected", "rule"),
    [
        (failed("curl: (28) Connection timed out after 5001 ms"), FailureType.transient, "network-transient"),
        (failed("curl: (7) Failed to connect: Connection refused"), FailureType.transient, "network-transient"),
        (failed("read: Connection reset by peer"), FailureType.transient, "network-transient"),
        (failed("Temporary failure in name resolution"), FailureType.transient, "network-transient"),
        (failed("HTTP/1.1 429 Too Many Requests"), FailureType.transient, "network-transient"),
        (failed("upstream answered 503"), FailureType.transient, "network-transient"),
        (failed("resource temporarily unavailable"), FailureType.transient, "network-transient"),
        (failed("", reason="timeout", exit_code=None, timed_out=True), FailureType.transient, "timed-out"),
        (failed("", reason="signal", exit_code=None, signal=9), FailureType.transient, "killed-by-signal"),
        (failed("", reason="interrupted", exit_code=None), FailureType.transient, "interrupted"),
        (
            failed("", reason="harness_error", exit_code=None, message="ClientClosed: closed by its owner"),
            FailureType.transient,
            "supervisor-stopped",
        ),
        (
            failed("", reason="harness_error", exit_code=None, message="InvalidParams: scope outside"),
            FailureType.unknown,
            NO_RULE,
        ),
        (failed("HTTP/1.1 403 Forbidden"), FailureType.permission, "permission-denied"),
        (failed("401 Unauthorized"), FailureType.permission, "permission-denied"),
        (failed("open /etc/shadow: permission denied"), FailureType.permission, "permission-denied"),
        (failed("Error: EACCES: cannot write"), FailureType.permission, "permission-denied"),
        (failed("", exit_code=126), FailureType.permission, "not-executable"),
        (failed(JSON_TRACEBACK), FailureType.invalid_input, "invalid-input"),
        (failed("error: missing required field 'name'"), FailureType.invalid_input, "invalid-input"),
        (failed("", reason="acceptance_failed"), FailureType.logic_error, "acceptance-failed"),
        (failed("", reason="scope_missing", exit_code=None), FailureType.unrecoverable, "scope-missing"),
        (failed("cat: data.csv: No such file or directory"), FailureType.unrecoverable, "resource-gone"),
        (failed("GET /v1/items -> 410 Gone: endpoint removed"), FailureType.unrecoverable, "resource-gone"),
        (failed("the flux capacitor hiccupped"), FailureType.unknown, NO_RULE),
        (failed(""), FailureType.unknown, NO_RULE),
    ],
)
def test_default_rules_classify_each_kind_of_failure_and_name_the_rule(
    failure: dict, expected: FailureType, rule: str
) -> None:
    found = Recovery().classify(failure)
    assert (found.failure_type, found.rule) == (expected, rule)


def test_the_classification_records_the_output_line_that_matched() -> None:
    found = Recovery().classify(failed("starting\nGET https://api.example/x\nHTTP/1.1 403 Forbidden\nbye"))
    assert found.evidence == "HTTP/1.1 403 Forbidden"
    assert found.as_event() == {
        "failure_type": "permission",
        "rule": "permission-denied",
        "evidence": "HTTP/1.1 403 Forbidden",
    }
    assert "evidence" not in Recovery().classify(failed("", reason="acceptance_failed")).as_event()


def test_rules_are_ordered_and_the_first_match_wins() -> None:
    # Both a network error and a 403 in the output: the network rule comes first.
    assert (
        Recovery().classify(failed("connection reset while fetching; later 403")).failure_type is FailureType.transient
    )


def test_stdout_and_the_workers_message_are_searched_too() -> None:
    assert (
        Recovery().classify(failed("", stdout_tail="HTTP 503 Service Unavailable")).failure_type
        is FailureType.transient
    )
    assert Recovery().classify(failed("", message="spawn: permission denied")).failure_type is FailureType.permission


def test_user_rules_come_before_the_defaults_and_are_recorded_by_name() -> None:
    recovery = Recovery({"rules": [
        {"name": "flaky-registry", "output": r"registry \S+ busy", "failure_type": "transient"},
        {"name": "quota", "output": "403", "exit_codes": [22], "failure_type": "unrecoverable"},
    ]})  # fmt: skip
    assert recovery.classify(failed("registry eu-1 busy, try again")).rule == "flaky-registry"
    # Every matcher of a rule must match: exit code 22 and the output.
    assert recovery.classify(failed("HTTP 403", exit_code=22)).rule == "quota"
    assert recovery.classify(failed("HTTP 403", exit_code=1)).rule == "permission-denied"


def test_a_rule_without_matchers_matches_nothing() -> None:
    recovery = Recovery({"rules": [{"name": "empty", "failure_type": "transient"}]})
    assert recovery.classify(failed("anything at all")).rule == NO_RULE


def test_signal_matchers_accept_any_signal_or_only_the_listed_ones() -> None:
    recovery = Recovery({"rules": [{"name": "oom", "signals": [9], "failure_type": "unrecoverable"}]})
    assert recovery.classify(failed("", exit_code=None, signal=9)).rule == "oom"
    assert recovery.classify(failed("", exit_code=None, signal=15)).rule == "killed-by-signal"


def test_default_recipes_are_the_spec_values() -> None:
    r = Recovery()
    transient = r.recipe("transient")
    assert (transient.retries, transient.backoff, transient.jitter) == (2, [5.0, 30.0], 0.0)
    permission = r.recipe(FailureType.permission)
    assert permission.retries == 0 and permission.permission_required
    assert r.recipe("invalid_input").retries == 0 and r.recipe("invalid_input").needs_input
    assert r.recipe("logic_error").retries == 1
    assert r.recipe("unrecoverable").retries == 0 and Decision.retry not in r.recipe("unrecoverable").options
    assert r.recipe("unknown").retries == 0
    for ftype in FailureType:
        assert Decision.abort in r.recipe(ftype).options


def test_recipe_overrides_merge_with_the_defaults() -> None:
    r = Recovery({"recipes": {"transient": {"backoff": [0.2, 0.4]}, "unknown": {"retries": 1}}})
    assert (r.recipe("transient").retries, r.recipe("transient").backoff) == (2, [0.2, 0.4])
    assert r.recipe("unknown").retries == 1
    assert r.recipe("permission").permission_required  # untouched classes keep their defaults


def test_backoff_delay_follows_the_schedule_and_repeats_its_last_step() -> None:
    recipe = Recovery({"recipes": {"transient": {"retries": 4, "backoff": [0.2, 0.4]}}}).recipe("transient")
    assert [recipe.delay(n) for n in (1, 2, 3, 4)] == [0.2, 0.4, 0.4, 0.4]
    assert Recovery().recipe("unknown").delay(1) == 0.0


def test_jitter_adds_at_most_its_fraction_and_is_reproducible_with_a_seeded_rng() -> None:
    recipe = Recovery({"recipes": {"transient": {"backoff": [10.0], "jitter": 0.5}}}).recipe("transient")
    delays = [recipe.delay(1, random.Random(seed)) for seed in range(50)]
    assert all(10.0 <= d <= 15.0 for d in delays)
    assert len(set(delays)) > 1
    assert recipe.delay(1, random.Random(7)) == recipe.delay(1, random.Random(7))


def test_a_bad_recovery_section_is_a_config_error_listing_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        Recovery({
            "rules": [
                {"name": "bad-regex", "output": "([unclosed", "failure_type": "transient"},
                {"name": "bad-class", "output": "x", "failure_type": "flaky"},
                {"name": "typo", "outptu": "x", "failure_type": "transient"},
            ],
            "recipes": {"transiant": {"retries": 1}, "transient": {"backoff": [-1]}, "unknown": {"options": ["pray"]}},
            "retry": 3,
        })  # fmt: skip
    text = "\n".join(info.value.problems)
    for where in (
        "rules[0]",
        "rules[1]",
        "rules[2]",
        "recipes.transiant",
        "recipes.transient",
        "recipes.unknown",
        "recovery.retry",
    ):
        assert where in text, (where, text)
    assert len(info.value.problems) >= 7


def test_a_policy_may_answer_retry_only_within_its_bound() -> None:
    r = Recovery()
    # unknown: no automatic retries, one policy retry
    assert r.policy_may_retry("unknown", 0)
    assert not r.policy_may_retry("unknown", 1)
    # transient: two automatic retries, then one policy retry
    assert r.policy_may_retry("transient", 2) and not r.policy_may_retry("transient", 3)
    # unrecoverable never offers retry
    assert not r.policy_may_retry("unrecoverable", 0)


def test_escalation_reason_and_decide_command_say_what_to_do() -> None:
    r = Recovery()
    assert escalation_reason("transient", r.recipe("transient"), 2).startswith("transient failure after 2 retries: ")
    assert escalation_reason("logic_error", r.recipe("logic_error"), 1).startswith(
        "logic_error failure after 1 retry: "
    )
    assert escalation_reason("unknown", r.recipe("unknown"), 0).startswith("unknown failure: ")
    assert decide_command("R1", "t", ["skip", "abort"]) == "harness decide R1 t skip|abort"
    assert decide_command("R1", "t", ["retry", "skip", "abort"], needs_input=True).endswith(
        "retry|skip|abort --note 'what you corrected'"
    )


def test_summarize_names_the_step_its_exit_and_the_last_output_line() -> None:
    step = {"kind": "command", "index": 0, "command": "make"}
    assert summarize(failed("one\nfatal: boom\n", failed_step=step)) == "command `make` exited 1: fatal: boom"
    assert summarize(failed("", reason="timeout", timed_out=True, exit_code=None)) == "timed out"
    assert summarize(
        failed("", reason="scope_missing", exit_code=None, message="scope directory does not exist: /w/x")
    ) == ("scope_missing: scope directory does not exist: /w/x")


def _event(seq: int, etype: str, tid: str | None = None, **data) -> dict:
    return {"seq": seq, "type": etype, "task_id": tid, "data": data}


def test_transitive_dependents_follow_the_dag_in_plan_order() -> None:
    graph = {"a": [], "b": ["a"], "c": ["b"], "d": ["a", "x"], "x": [], "e": ["c", "d"]}
    assert transitive_dependents(graph, "a") == ["b", "c", "d", "e"]
    assert transitive_dependents(graph, "x") == ["d", "e"]
    assert transitive_dependents(graph, "e") == []


_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=80)
_failures = st.fixed_dictionaries(
    {},
    optional={
        "reason": st.sampled_from(
            [
                "command_failed",
                "acceptance_failed",
                "timeout",
                "signal",
                "interrupted",
                "scope_missing",
                "spawn_error",
                "cancelled",
            ]
        ),
        "exit_code": st.none() | st.integers(-5, 300),
        "signal": st.none() | st.integers(1, 64),
        "timed_out": st.booleans(),
        "stderr_tail": _text,
        "stdout_tail": _text,
        "message": st.none() | _text,
    },
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(_failures)
def test_classification_is_total_and_deterministic(failure: dict) -> None:
    recovery = Recovery()
    first = recovery.classify(failure)
    assert first == recovery.classify(dict(failure))
    assert first.failure_type in FailureType
    assert (first.rule == NO_RULE) == (first.failure_type is FailureType.unknown)
    assert summarize(failure)
