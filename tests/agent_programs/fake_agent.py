"""A stand-in coding agent for tests: it does what a script says, per task and attempt.

    fake_agent.py SCRIPT.json        (the prompt arrives on stdin)

SCRIPT maps a task id to a list of steps, one per attempt (the last repeats):
    {"write": {"path": "content"}, "sleep": 0.0, "say": "final message", "exit": 0}
It copies the prompt it got to $HARNESS_RUN_DIR/seen/TASK-ATTEMPT.md, and records whether the
variable named by FAKE_AGENT_KEY_VAR reached it (a digest, never the value).
"""

import hashlib
import json
import os
import sys
import time

script = json.load(open(sys.argv[1], encoding="utf-8"))
task, attempt = os.environ["HARNESS_TASK_ID"], int(os.environ["HARNESS_ATTEMPT"])
prompt = sys.stdin.read()
seen = os.path.join(os.environ["HARNESS_RUN_DIR"], "seen")
os.makedirs(seen, exist_ok=True)
with open(os.path.join(seen, f"{task}-{attempt}.md"), "w", encoding="utf-8") as f:
    f.write(prompt)
key_var = os.environ.get("FAKE_AGENT_KEY_VAR")
if key_var:
    value = os.environ.get(key_var, "")
    with open(os.path.join(seen, f"{task}-{attempt}.key"), "w", encoding="utf-8") as f:
        f.write(hashlib.sha256(value.encode()).hexdigest() if value else "absent")
steps = script.get(task) or [{}]
step = steps[min(attempt, len(steps)) - 1]
for path, content in (step.get("write") or {}).items():
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)
print(f"working on {task}, attempt {attempt}", flush=True)
time.sleep(float(step.get("sleep", 0)))
print(step.get("say", f"{task} done"), flush=True)
sys.exit(int(step.get("exit", 0)))
