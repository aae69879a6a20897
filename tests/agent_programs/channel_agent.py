"""A stand-in for an agent CLI with a two-way permission channel (Claude Code's stream-json
control protocol): it reads the prompt as a stream-json user message, asks to write a file with
a can_use_tool control request, waits for the control response on stdin, writes the file only
when allowed, and ends with a result line.

    channel_agent.py PATH CONTENT [ignored CLI arguments...]
"""

import json
import os
import sys

path, content = sys.argv[1], sys.argv[2]
first = json.loads(sys.stdin.readline())
assert first["type"] == "user", first
print(json.dumps({"type": "system", "subtype": "init", "session_id": "s-1", "model": "stand-in"}), flush=True)
request = {
    "type": "control_request",
    "request_id": "req-1",
    "request": {
        "subtype": "can_use_tool",
        "tool_name": "Write",
        "input": {"file_path": os.path.abspath(path), "content": content},
    },
}
print(json.dumps(request), flush=True)
answer = json.loads(sys.stdin.readline())
decision = answer["response"]["response"]
if decision["behavior"] == "allow":
    with open(decision["updatedInput"]["file_path"], "w", encoding="utf-8") as fh:
        fh.write(decision["updatedInput"]["content"])
    text = "wrote the file"
else:
    text = "could not write: " + decision.get("message", "")
print(json.dumps({"type": "result", "subtype": "success", "is_error": False, "num_turns": 1, "result": text,
                  "session_id": "s-1", "permission_denials": []}), flush=True)  # fmt: skip
sys.stdin.read()  # the caller closes stdin after the result line
