"""Finding the real agent CLIs for tests, and the isolated environment each needs to talk only to
the tests' fake model server (tests/fake_models.py).

The CLIs are installed by ``.ci/install-agents DIR`` (pinned versions from the npm registry);
tests look in ``$HARNESS_AGENT_BIN_DIR``, then ``<repo>/.ci/agents/node_modules/.bin``, then PATH,
and skip with the command to run when a CLI is missing, so a plain ``pytest`` passes offline.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BIN = REPO / ".ci" / "agents" / "node_modules" / ".bin"


def find_cli(name: str) -> str:
    """The CLI's path, or a skip naming how to install it."""
    for folder in (
        os.environ.get("HARNESS_AGENT_BIN_DIR"),
        str(DEFAULT_BIN),
        str(DEFAULT_BIN.parents[1] / "aider" / "bin"),
    ):
        if folder and os.access(os.path.join(folder, name), os.X_OK):
            return os.path.join(folder, name)
    found = shutil.which(name)
    if found:
        return found
    pytest.skip(f"the {name} CLI is not installed: run `.ci/install-agents .ci/agents` (npm, pinned versions)")


def claude_env(home: Path, url: str) -> dict[str, str]:
    """Claude Code pointed at the fake, with its extra traffic and retries off."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": url,
        "ANTHROPIC_API_KEY": "sk-ant-test-key-0000",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_BUG_COMMAND": "1",
        "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
        "DISABLE_NON_ESSENTIAL_MODEL_CALLS": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
    }


def codex_env(home: Path, url: str) -> dict[str, str]:
    """Codex with a provider of its own on the fake (its OPENAI_BASE_URL is not honoured).

    Where bubblewrap is installed, Codex runs its commands and file writes under it, through
    helpers it puts in CODEX_HOME, and refuses to put them under the temporary directory: as a
    test's home lies in /tmp, TMPDIR points inside that home instead (a real CODEX_HOME,
    ~/.codex, is not under the temporary directory)."""
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (home / "tmp").mkdir(exist_ok=True)
    (codex_home / "config.toml").write_text(
        f'model_provider = "fake"\nmodel = "gpt-5.5"\ncheck_for_update_on_startup = false\n'
        f"[analytics]\nenabled = false\n"
        f'[model_providers.fake]\nname = "fake"\nbase_url = "{url}/v1"\nenv_key = "OPENAI_API_KEY"\n'
        f'wire_api = "responses"\nrequest_max_retries = 0\nstream_max_retries = 0\n'
    )
    return {
        "HOME": str(home),
        "CODEX_HOME": str(codex_home),
        "TMPDIR": str(home / "tmp"),
        "OPENAI_API_KEY": "sk-openai-test-key-0000",
    }


def opencode_env(home: Path, url: str) -> dict[str, str]:
    """opencode with an OpenAI-compatible provider on the fake, its downloads and plugins off, and
    its npm registry pointed at the fake (which answers 404)."""
    home.mkdir(parents=True, exist_ok=True)
    config = {
        "provider": {
            "fake": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Fake",
                "options": {"baseURL": f"{url}/v1", "apiKey": "{env:OPENCODE_FAKE_KEY}"},
                "models": {"fake-model": {"name": "fake-model"}},
            }
        },
        "model": "fake/fake-model",
        "autoupdate": False,
        "share": "disabled",
    }
    (home / "opencode.json").write_text(json.dumps(config))
    return {
        "HOME": str(home),
        "OPENCODE_CONFIG": str(home / "opencode.json"),
        "OPENCODE_FAKE_KEY": "sk-opencode-test-key-0000",
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
        "OPENCODE_DISABLE_SHARE": "1",
        "npm_config_registry": f"{url}/npm",
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
    }


def gemini_env(home: Path, url: str) -> dict[str, str]:
    """Gemini CLI on the fake with an API key, a trusted workspace, one attempt, no statistics."""
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    settings = {
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "privacy": {"usageStatisticsEnabled": False},
        "general": {"maxAttempts": 1},
        "telemetry": {"enabled": False},
    }
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings))
    return {
        "HOME": str(home),
        "GEMINI_API_KEY": "gemini-test-key-0000",
        "GOOGLE_GEMINI_BASE_URL": url,
        "GEMINI_CLI_TRUST_WORKSPACE": "true",
        "GEMINI_TELEMETRY_ENABLED": "false",
    }


def aider_env(home: Path, url: str) -> dict[str, str]:
    """aider (litellm) on the fake's chat completions, with its price list pre-filled so it fetches none."""
    caches = home / ".aider" / "caches"
    caches.mkdir(parents=True, exist_ok=True)
    prices = {"openai/fake-model": {"max_tokens": 4096, "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06,
                                    "litellm_provider": "openai", "mode": "chat"}}  # fmt: skip
    (caches / "model_prices_and_context_window.json").write_text(json.dumps(prices))
    return {
        "HOME": str(home),
        "OPENAI_API_BASE": f"{url}/v1",
        "OPENAI_API_KEY": "sk-aider-test-key-0000",
        "AIDER_ANALYTICS": "false",
        "AIDER_CHECK_UPDATE": "false",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }


ENVIRONMENTS = {
    "claude": claude_env,
    "codex": codex_env,
    "opencode": opencode_env,
    "gemini": gemini_env,
    "aider": aider_env,
}
#: The model each CLI is asked for (None: its own default; gemini pinned to skip its router call).
MODELS = {
    "claude": None,
    "codex": "gpt-5.5",
    "opencode": "fake/fake-model",
    "gemini": "gemini-2.5-flash",
    "aider": "openai/fake-model",
}
