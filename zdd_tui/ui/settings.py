"""The console's own settings: XDG locations, themes as data, user key bindings.

    $XDG_CONFIG_HOME/zdd-tui/config.yaml   theme: NAME, keymap: {binding-id: "key[,key]"}
    $XDG_CONFIG_HOME/zdd-tui/themes/*.yaml  user themes (same format as the bundled themes/)

Bad files give a UsageError naming the file and the key, never a traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zdd_tui.errors import UsageError

APP_DIR = "zdd-tui"
DEFAULT_THEME = "zdd-dark"
NO_COLOR_THEME = "zdd-ansi"  # with NO_COLOR the terminal's own colours are the least surprising

# Where the bundled theme files live: the repository's themes/ (editable installs) or a copy
# inside the package (wheels).
_PKG_DIR = Path(__file__).resolve().parent.parent
BUNDLED_THEME_DIRS = (_PKG_DIR.parent / "themes", _PKG_DIR / "themes")

THEME_FIELDS = (
    "primary", "secondary", "accent", "foreground", "background", "surface", "panel", "boost",
    "success", "warning", "error",
)


def config_home() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / APP_DIR


def user_config_path() -> Path:
    return config_home() / "config.yaml"


def user_themes_dir() -> Path:
    return config_home() / "themes"


@dataclass(frozen=True)
class ThemeSpec:
    """A theme as data; `ui.app` turns it into a textual Theme."""

    name: str
    dark: bool
    colors: dict[str, str]
    variables: dict[str, str]
    ansi: bool = False
    source: Path | None = None


def parse_theme(data: Any, source: Path) -> ThemeSpec:
    if not isinstance(data, dict):
        raise UsageError(f"{source}: a theme file must be a mapping of keys, found {type(data).__name__}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise UsageError(f"{source}: 'name' must be a non-empty string")
    if not isinstance(data.get("primary"), str):
        raise UsageError(f"{source}: 'primary' (a colour) is required")
    unknown = set(data) - set(THEME_FIELDS) - {"name", "dark", "ansi", "variables"}
    if unknown:
        raise UsageError(
            f"{source}: unknown key(s) {', '.join(sorted(unknown))}",
            hint=f"theme keys: name, dark, ansi, variables, {', '.join(THEME_FIELDS)}",
        )
    colors = {k: str(data[k]) for k in THEME_FIELDS if data.get(k) is not None}
    variables = data.get("variables") or {}
    if not isinstance(variables, dict):
        raise UsageError(f"{source}: 'variables' must be a mapping")
    return ThemeSpec(
        name=name.strip(),
        dark=bool(data.get("dark", True)),
        colors=colors,
        variables={str(k): str(v) for k, v in variables.items()},
        ansi=bool(data.get("ansi", False)),
        source=source,
    )


def _load_dir(d: Path) -> list[ThemeSpec]:
    specs: list[ThemeSpec] = []
    if not d.is_dir():
        return specs
    for path in sorted(list(d.glob("*.yaml")) + list(d.glob("*.yml"))):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise UsageError(f"{path}{where}: not valid YAML") from None
        specs.append(parse_theme(data, path))
    return specs


def load_theme_specs(user_dir: Path | None = None) -> dict[str, ThemeSpec]:
    """Bundled themes, then the user's (a user theme of the same name replaces a bundled one)."""
    specs: dict[str, ThemeSpec] = {}
    for d in BUNDLED_THEME_DIRS:
        for s in _load_dir(d):
            specs.setdefault(s.name, s)
    for s in _load_dir(user_dir or user_themes_dir()):
        specs[s.name] = s
    return specs


@dataclass(frozen=True)
class UiSettings:
    theme: str | None = None
    keymap: dict[str, str] = field(default_factory=dict)
    source: Path | None = None


def load_settings(path: Path | None = None, binding_ids: tuple[str, ...] = ()) -> UiSettings:
    """Read the user's config.yaml (absent file: defaults). Unknown binding ids are an error."""
    path = path or user_config_path()
    if not path.exists():
        return UiSettings()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UsageError(f"{path}{where}: not valid YAML") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping at the top, found {type(data).__name__}")
    theme = data.get("theme")
    if theme is not None and not isinstance(theme, str):
        raise UsageError(f"{path}: 'theme' must be a theme name (a string)")
    keymap = data.get("keymap") or {}
    if not isinstance(keymap, dict):
        raise UsageError(f"{path}: 'keymap' must map binding ids to keys, e.g. deploy: ctrl+d")
    clean: dict[str, str] = {}
    for k, v in keymap.items():
        if binding_ids and k not in binding_ids:
            raise UsageError(
                f"{path}: keymap.{k}: unknown binding id",
                hint=f"binding ids: {', '.join(binding_ids)}",
            )
        if not isinstance(v, str) or not v.strip():
            raise UsageError(f"{path}: keymap.{k}: expected a key such as 'ctrl+d', found {v!r}")
        clean[str(k)] = v.replace(" ", "")
    return UiSettings(theme=theme, keymap=clean, source=path)


def no_color() -> bool:
    """https://no-color.org: any non-empty NO_COLOR disables colour."""
    return bool(os.environ.get("NO_COLOR"))
