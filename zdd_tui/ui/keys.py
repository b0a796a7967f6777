"""Every action the operator can take: one table feeds the bindings, the footer, `?` and the palette.

Each binding has an id; users remap by id in $XDG_CONFIG_HOME/zdd-tui/config.yaml:

    keymap:
      deploy: ctrl+d
      quit: q,ctrl+q

Plain keys by default, so everything works over SSH and in tmux.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding, BindingType


@dataclass(frozen=True)
class Key:
    id: str
    key: str  # default key(s), comma separated
    action: str
    description: str  # short, for the footer
    help: str  # one line, for `?` and the palette
    scope: str  # app | dashboard | rollout
    show: bool = True


KEYS: tuple[Key, ...] = (
    Key("deploy", "d", "deploy", "Deploy",
        "Deploy git HEAD's tag if pushed, else latest's (o: other)", "dashboard"),
    Key("build", "b", "build", "Build+push", "Build the image, tag latest and sha-<git sha>, push it", "dashboard"),
    Key("rollback", "r", "rollback", "Rollback",
        "Pick a version that ran here (previous preselected)", "dashboard"),
    Key("setup", "s", "setup", "Setup", "First-time setup: token, SSH key, droplets, LB, registry", "dashboard"),
    Key("filter", "slash", "filter", "Filter", "Filter the focused table (Esc clears)", "dashboard"),
    Key("logs", "l", "logs", "Logs", "Follow the selected droplet's logs (p pauses)", "dashboard"),
    Key("next_pane", "tab", "app.focus_next", "Next pane", "Move to the next pane (shift+tab: back)",
        "dashboard"),
    Key("refresh", "f5", "refresh", "Refresh", "Refresh now (within the API budget)", "dashboard", show=False),
    Key("back", "escape", "back", "Back", "Back to the dashboard (once the rollout has finished)", "rollout"),
    Key("theme", "t", "next_theme", "Theme", "Switch to the next colour theme", "app"),
    Key("help", "question_mark", "help", "Help", "This list of keys", "app"),
    Key("quit", "q", "quit_app", "Quit", "Quit (asks first while a rollout runs, then stops it safely)", "app"),
)

BINDING_IDS: tuple[str, ...] = tuple(k.id for k in KEYS)


def bindings(scope: str) -> list[BindingType]:
    return [
        Binding(k.key, k.action, k.description, show=k.show, id=k.id, priority=False)
        for k in KEYS
        if k.scope == scope
    ]


def effective_keys(keymap: dict[str, str]) -> dict[str, str]:
    """binding id -> the keys in force after the user's keymap."""
    return {k.id: keymap.get(k.id, k.key) for k in KEYS}


_KEY_NAMES = {"slash": "/", "question_mark": "?", "escape": "Esc", "tab": "Tab"}


def display_key(keys: str) -> str:
    return ", ".join(_KEY_NAMES.get(k, k) for k in keys.split(","))
