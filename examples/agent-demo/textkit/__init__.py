"""textkit: small text helpers (the agent demo's project)."""


def slugify(text: str) -> str:
    """'Hello, World!' -> 'hello-world'. Not written yet: the first task of plan.yaml."""
    raise NotImplementedError


def word_count(text: str) -> dict[str, int]:
    """How often each lower-cased word occurs. Not written yet: the second task of plan.yaml."""
    raise NotImplementedError
