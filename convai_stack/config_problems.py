"""How a problem of a stack's configuration is told: one line per problem,
`project:path: what is wrong; the fix`.
"""

from __future__ import annotations

from convai_stack.config_keys import PROJECT


class StackConfigError(Exception):
    """Invalid stack configuration, one line per problem: `project:path: what is wrong; the fix`."""


def joined(problems: list[tuple[str, str]]) -> str:
    """One line per (config path, reason), each under the project's namespace."""
    return "\n".join(f"{PROJECT}:{path}: {reason}" for path, reason in problems)


def config_path(dotted: str) -> str:
    """`models.1.endpoint` -> `models[1].endpoint`; tagged unions add their tag, which goes."""
    parts: list[str] = []
    for part in dotted.split("."):
        if part.isdigit():
            parts[-1] += f"[{part}]"
        elif part in ("external", "vllm") and parts and parts[-1].endswith("]"):
            continue
        else:
            parts.append(part)
    return ".".join(parts)
