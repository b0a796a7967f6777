"""First-time setup through the project layer: the steps to show and the wizard to run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zdd_tui.config import Config

if TYPE_CHECKING:
    from zdd_tui.setup.steps import Setup, StepSpec


def setup_steps() -> tuple[StepSpec, ...]:
    """The setup steps in order (id, title, description)."""
    from zdd_tui.setup.steps import STEPS

    return STEPS


def step_ids() -> tuple[str, ...]:
    from zdd_tui.setup.steps import STEP_IDS

    return STEP_IDS


def open_setup(config: Config, **kwargs: Any) -> Setup:
    """The setup wizard for `config` (see zdd_tui.setup.steps.Setup for the options: a token typed
    in, an open client to share, host-key policy, events sink). Close it (or `async with`)."""
    from zdd_tui.setup.steps import Setup

    return Setup(config, **kwargs)
