"""The OS sandbox: each step of a task (its commands, its agent, its acceptance tests) under
bubblewrap, when it is installed.

    bwrap --ro-bind / / --dev /dev --proc /proc --bind T /tmp    the machine read-only, a private /tmp
          --ro-bind-try P P ...   what the step must still see that lies in /tmp (workspace, HOME, PATH)
          --bind W W ...          what it may write: its scope or worktree, the run's folder
          --bind-try S S ...      an agent only: its CLI's state (HOME, CODEX_HOME, XDG_*)
          --ro-bind-try F F ...   inside those, what stays read-only: the workspace, the run's event log
          --unshare-pid --unshare-ipc [--unshare-net] --die-with-parent --chdir CWD
          [--cap-drop ALL --cap-add CAP_SETFCAP] -- [unshare --user --map-root-user --] ARGV...

Mounts are ordered by depth, so each path takes the mode of the nearest mount above it: an agent's
HOME is writable but the workspace inside it is not, and its worktree inside that is again.

Choices, each for a reason:

* No ``--new-session``: the worker manager already starts every step in a session of its own with
  no terminal, which is what that option protects; another session would also take the step out of
  the process group the manager signals on timeout and cancel.
* ``--unshare-pid`` with ``--die-with-parent``: nothing a step starts outlives the step, not even
  a process that left its group (a background process ends with its step); killing the group (the
  outer bwrap and everything inside) still stops it all.
* Root: bubblewrap run by root leaves the sandbox every capability, enough to remount ``/``
  read-write. The step is moved into a user namespace of its own instead (util-linux ``unshare``):
  root there has no power over the mounts made outside it, which the kernel locks, and a sandboxing
  agent (Codex runs its commands under its own bubblewrap) can still nest. Without ``unshare``
  every capability is dropped and such an agent's own sandbox fails. In both cases files in the
  scope owned by other users are writable only as their mode allows.
* The private ``/tmp`` is one per task, not per step: a folder in the worker's folder, shared by
  the task's steps (a download a command leaves there is there for the next) and removed when the
  task ends. ``TMPDIR`` is pointed at it unless it lies in a writable path: a temporary folder the
  step cannot write (or cannot see) breaks ``mktemp`` and friends.
* Exit statuses: bubblewrap reports a step killed by signal N as exit 128+N, as a shell does.

Detection (:func:`choose`) finds ``bwrap`` and probes once per process that it can make its
namespaces here; :func:`bwrap_argv` is pure.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Literal

__all__ = [
    "AGENT_STATE_VARS",
    "Bubblewrap",
    "Confinement",
    "SandboxPolicy",
    "bwrap_argv",
    "choose",
    "locate",
    "probe",
]

#: The policy's ``sandbox:`` setting.
SandboxPolicy = Literal["required", "auto", "off"]
#: Where an agent CLI keeps its state (sessions, caches, logins): writable for the agent's step.
AGENT_STATE_VARS = (
    "HOME", "CODEX_HOME", "CLAUDE_CONFIG_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME",
)  # fmt: skip
#: Variables naming one folder, and lists of folders, a step needs to see even where they lie in /tmp.
_VISIBLE_DIRS = ("HOME", "VIRTUAL_ENV")
_VISIBLE_LISTS = ("PATH", "PYTHONPATH")
PRIVATE_TMP = "/tmp"
PROBE_TIMEOUT = 10.0

_RW, _RO, _TMP = "rw", "ro", "tmp"


class Bubblewrap:
    """bubblewrap as found on this machine: its path, whether it runs as root, and then the
    ``unshare`` that gives each step a user namespace of its own."""

    __slots__ = ("path", "root", "userns")

    def __init__(self, path: str, *, root: bool = False, userns: str | None = None) -> None:
        self.path = path
        self.root = root
        self.userns = userns


def locate(path_env: str | None = None) -> Bubblewrap | None:
    """bwrap on ``PATH`` (default: this process's), or None. Cheap: no process is started."""
    return _locate(os.environ.get("PATH", os.defpath) if path_env is None else path_env, os.geteuid() == 0)


@functools.lru_cache(maxsize=8)
def _locate(path_env: str, root: bool) -> Bubblewrap | None:
    found = shutil.which("bwrap", path=path_env)
    if found is None:
        return None
    userns = shutil.which("unshare", path=path_env) if root else None
    return Bubblewrap(found, root=root, userns=userns)


@functools.lru_cache(maxsize=8)
def probe(path: str, root: bool, userns: str | None) -> tuple[str | None, str | None]:
    """(version, problem): whether this bwrap makes its namespaces here, tried once per process
    with the options every step gets (network off, the user namespace layer of root)."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=PROBE_TIMEOUT)
        version = out.stdout.strip().rpartition(" ")[2] or None
        tool = Bubblewrap(path, root=root, userns=userns)
        argv = bwrap_argv(["true"], tool=tool, cwd="/", writable=(), network=False)
        ran = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{path} cannot be run: {exc}"
    if ran.returncode != 0:
        said = (ran.stderr.strip().splitlines() or [f"exit {ran.returncode}"])[-1]
        return version, f"{path} cannot make its namespaces here: {said}"
    return version, None


def choose(policy: SandboxPolicy, path_env: str | None = None) -> dict[str, Any]:
    """The sandbox of a run, as RUN_STARTED records it: ``mode`` (bwrap or off), ``policy``,
    ``tool`` and ``version`` (when found), and ``reason`` in words. The caller refuses a run whose
    policy says ``required`` and whose mode is off."""
    if policy == "off":
        return {
            "mode": "off",
            "policy": policy,
            "tool": None,
            "version": None,
            "reason": "the policy says sandbox: off",
        }
    tool = locate(path_env)
    if tool is None:
        reason = "bubblewrap (bwrap) is not installed"
        return {"mode": "off", "policy": policy, "tool": None, "version": None, "reason": reason}
    version, problem = probe(tool.path, tool.root, tool.userns)
    if problem is not None:
        return {"mode": "off", "policy": policy, "tool": tool.path, "version": version, "reason": problem}
    how = "a user namespace per step" if tool.userns else "every capability dropped" if tool.root else "unprivileged"
    return {"mode": "bwrap", "policy": policy, "tool": tool.path, "version": version, "reason": f"bubblewrap ({how})"}


# -- the argv ---------------------------------------------------------------------------------------
def _depth(path: str) -> int:
    return 0 if path == "/" else path.count("/")


def _inside(path: str, root: str) -> bool:
    return path == root or root == "/" or path.startswith(root + "/")


def _mode_at(path: str, mounts: Sequence[tuple[str, str, str]]) -> str:
    """The mode ``path`` has inside the sandbox: that of the deepest mount above it (the private
    /tmp counts as writable only for itself)."""
    if path == PRIVATE_TMP:
        return _RW
    made = [("/", _RO), (PRIVATE_TMP, _TMP), *((p, mode) for _, mode, p in mounts)]
    return max((m for m in made if _inside(path, m[0])), key=lambda m: _depth(m[0]))[1]


def _mounts(
    writable: Sequence[str], protected: Sequence[str], state: Sequence[str], visible: Sequence[str]
) -> list[tuple[str, str, str]]:
    """(flag, mode, path) in mount order. At the same path the task's writable paths win over what
    is kept read-only, which wins over an agent's state; visible paths only fill holes in /tmp."""
    kinds = (
        (writable, _RW, "--bind"),
        (protected, _RO, "--ro-bind-try"),
        (state, _RW, "--bind-try"),
        (visible, _RO, ""),
    )
    chosen: dict[str, tuple[str, str]] = {}
    for paths, mode, flag in kinds:
        for raw in paths:
            path = os.path.normpath(raw)
            if path.startswith("/") and path != "/" and path not in chosen:
                chosen[path] = (mode, flag)
    made: list[tuple[str, str]] = [("/", _RO), (PRIVATE_TMP, _TMP)]
    out: list[tuple[str, str, str]] = []
    for path in sorted(chosen, key=lambda p: (_depth(p), p)):
        mode, flag = chosen[path]
        above = max((m for m in made if _inside(path, m[0])), key=lambda m: _depth(m[0]))[1]
        if (not flag and above != _TMP) or above == mode:
            continue  # visible already, or the same mode as the mount above it
        made.append((path, mode))
        out.append((flag or "--ro-bind-try", mode, path))
    return out


def bwrap_argv(
    argv: Sequence[str],
    *,
    tool: Bubblewrap,
    cwd: str,
    writable: Sequence[str],
    network: bool,
    protected: Sequence[str] = (),
    state: Sequence[str] = (),
    visible: Sequence[str] = (),
    tmpdir: str | None = None,
    private_tmp: str | None = None,
) -> list[str]:
    """The sandboxed argv of one step (pure: paths are taken as given, real and absolute).

    ``writable`` must exist (the scope, the run's folder); ``state`` (an agent CLI's folders),
    ``protected`` (kept read-only inside writable paths) and ``visible`` (re-shown where they lie
    in the private /tmp) may not. ``tmpdir`` is the step's TMPDIR, if it has one. ``private_tmp``
    is a folder mounted on /tmp (the steps of one task share it); without one /tmp is a tmpfs of
    the step's own.
    """
    out = [tool.path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    out += ["--bind", private_tmp, PRIVATE_TMP] if private_tmp else ["--tmpfs", PRIVATE_TMP]
    mounts = _mounts(writable, protected, state, visible)
    for flag, _, path in mounts:
        out += [flag, path, path]
    out += ["--unshare-pid", "--unshare-ipc"]
    if not network:
        out.append("--unshare-net")
    out.append("--die-with-parent")
    if tmpdir is not None and _mode_at(os.path.normpath(tmpdir), mounts) != _RW:
        out += ["--setenv", "TMPDIR", PRIVATE_TMP]
    out += ["--chdir", cwd]
    if tool.root:
        out += ["--cap-drop", "ALL"]
        if tool.userns:
            out += ["--cap-add", "CAP_SETFCAP", "--", tool.userns, "--user", "--map-root-user"]
    return [*out, "--", *argv]


# -- one worker's confinement ---------------------------------------------------------------------
def _tmp_tree(path: str) -> str:
    """A path under the host's /tmp widened to its top folder there (``/tmp/x/y/z`` -> ``/tmp/x``),
    so that a program, a virtualenv or a checkout kept in /tmp is seen whole (read-only) over the
    private /tmp: its symlinks and neighbours (node_modules, site-packages, an editable install's
    sources) resolve as they do outside. Other paths are returned as they are."""
    parts = path.split("/")
    if len(parts) > 2 and parts[1] == PRIVATE_TMP.strip("/") and parts[2]:
        return "/".join(parts[:3])
    return path


def _real(path: str) -> str | None:
    if not path or not os.path.isabs(path):
        return None
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return None


def _worktree_git(path: str) -> list[str]:
    """For a linked git worktree at ``path``: its own git folder (index, HEAD) and the object store
    it shares, which ``git add`` writes; the shared refs, config and hooks are not among them."""
    try:
        with open(os.path.join(path, ".git"), encoding="utf-8") as f:
            line = f.readline().strip()
    except OSError:  # no .git file: not a linked worktree (a folder, or nothing)
        return []
    if not line.startswith("gitdir:"):
        return []
    gitdir = os.path.realpath(os.path.join(path, line.removeprefix("gitdir:").strip()))
    try:
        with open(os.path.join(gitdir, "commondir"), encoding="utf-8") as f:
            common = os.path.realpath(os.path.join(gitdir, f.readline().strip()))
    except OSError:
        return [gitdir]
    return [gitdir, os.path.join(common, "objects")]


class Confinement:
    """What one worker's steps are confined to; :meth:`argv` wraps one step.

    Every step may write ``writable`` (the scope first); an agent's step also its CLI's state
    (:data:`AGENT_STATE_VARS` of its environment, never ``/``) and, working in a linked git
    worktree, that worktree's git folder and the object store (aider stages what it writes; a
    commit still fails: refs, config and hooks stay read-only). ``protected`` paths stay read-only
    inside those. ``private_tmp`` is the worker's own /tmp, shared by its steps (a file a command
    leaves there is still there for the acceptance tests): :meth:`open` makes it, :meth:`close`
    removes it. ``problem`` says why no step can run (no bubblewrap here): the worker then fails
    before anything starts, never unconfined.
    """

    __slots__ = ("tool", "writable", "protected", "network", "private_tmp", "problem")

    def __init__(
        self,
        *,
        writable: Sequence[str],
        protected: Sequence[str] = (),
        network: bool = False,
        private_tmp: str | None = None,
        tool: Bubblewrap | None = None,
    ) -> None:
        self.tool = tool if tool is not None else locate()
        self.writable = [p for p in (_real(w) for w in writable) if p]
        self.protected = [p for p in (_real(r) for r in protected) if p]
        self.network = network
        self.private_tmp = private_tmp
        self.problem = (
            None
            if self.tool is not None
            else "the task must run in the sandbox, but this worker manager finds no bubblewrap (bwrap) on its PATH"
        )

    def open(self) -> None:
        """Before the first step: an empty private /tmp."""
        if self.private_tmp is not None:
            self.close()
            os.makedirs(self.private_tmp, mode=0o1777, exist_ok=True)
            os.chmod(self.private_tmp, 0o1777)  # as /tmp is, whoever the steps run as

    def close(self) -> None:
        """After the last step: the private /tmp goes, as a tmpfs would."""
        if self.private_tmp is not None:
            shutil.rmtree(self.private_tmp, ignore_errors=True)

    def argv(self, argv: Sequence[str], cwd: str, env: Mapping[str, str], *, agent: bool) -> list[str]:
        assert self.tool is not None, self.problem
        visible = [p for p in (_real(env.get(name, "")) for name in _VISIBLE_DIRS) if p]
        for name in _VISIBLE_LISTS:
            visible += [p for p in (_real(part) for part in env.get(name, "").split(os.pathsep)) if p]
        state: list[str] = []
        if agent:
            state = [p for p in (_real(env.get(name, "")) for name in AGENT_STATE_VARS) if p and p != "/"]
            state += [p for w in self.writable for p in _worktree_git(w)]
            # the agent's program and files named by absolute path: seen even where they lie in /tmp
            visible += [p for p in (_real(os.path.dirname(a)) for a in argv if os.path.isabs(a)) if p]
            visible += [p for p in (_real(a) for a in argv[:1]) if p]  # through its symlinks
        # the harness's own interpreter (commands often name it), then each visible path in /tmp whole
        visible += [p for p in (_real(sys.executable), os.path.dirname(sys.executable)) if p]
        visible = [_tmp_tree(p) for p in visible]
        return bwrap_argv(
            argv,
            tool=self.tool,
            cwd=cwd,
            writable=self.writable,
            network=self.network,
            protected=self.protected,
            state=state,
            visible=visible,
            tmpdir=env.get("TMPDIR"),
            private_tmp=self.private_tmp,
        )
