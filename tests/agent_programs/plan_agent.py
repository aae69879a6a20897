"""A stand-in for a coding agent that plans: it reads its prompt on stdin and prints a plan as
JSON in its final message, as a CLI without a structured-output flag would.

PLAN_AGENT_SCRIPT names a JSON file holding a list of answers (plans, or strings printed as they
are), one per run, the last repeated; PLAN_AGENT_LOG, a file where each prompt is appended, so a
test can read what the planner was asked.
"""

import json
import os
import sys

prompt = sys.stdin.read()
log = os.environ.get("PLAN_AGENT_LOG")
runs = 0
if log:
    if os.path.exists(log):
        with open(log) as fh:
            runs = fh.read().count("\n=== prompt ===\n")
    with open(log, "a") as fh:
        fh.write("\n=== prompt ===\n" + prompt)
with open(os.environ["PLAN_AGENT_SCRIPT"]) as fh:
    answers = json.load(fh)
answer = answers[min(runs, len(answers) - 1)]
print("Reading the workspace... done.")
print(answer if isinstance(answer, str) else "Here is the plan:\n" + json.dumps(answer, indent=1))
