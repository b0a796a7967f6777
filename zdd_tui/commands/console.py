"""`zdd-tui` with no subcommand: the console.

    zdd-tui                     the project in ./zdd.yaml (or --config); the welcome screen when
                                there is no project yet
    zdd-tui --sandbox           a fresh local sandbox, stopped again (with every process it
                                started) when the console quits
    zdd-tui --theme NAME        a theme from themes/ or $XDG_CONFIG_HOME/zdd-tui/themes

Textual is imported only through zdd_tui.ui, and only here, so headless commands never load it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from zdd_tui.errors import UsageError

SANDBOX_HOSTS = 3  # enough to see batches; ZDD_TUI_SANDBOX_HOSTS (1-20) changes it (tests use 2)


def _sandbox_hosts() -> int:
    import os

    raw = os.environ.get("ZDD_TUI_SANDBOX_HOSTS")
    if raw is None:
        return SANDBOX_HOSTS
    if not raw.isdigit() or not 1 <= int(raw) <= 20:
        raise UsageError(f"ZDD_TUI_SANDBOX_HOSTS must be a whole number from 1 to 20, found {raw!r}")
    return int(raw)


def _load_config(path: Path):
    from zdd_tui.config import load_config

    return load_config(path)


async def _open_project(config, label: str, on_close=None):
    """The console's source on a Project. Opening imports the cloud client (httpx; pydo only
    comes with a first write) and the hosts' runtimes: in a thread (the openers run after the
    dashboard's first frame), so the event loop stays free for keys and paints meanwhile."""
    from zdd_tui.project import Project
    from zdd_tui.ui.source import FleetSource

    await asyncio.to_thread(Project.preload)
    project = await Project.open(config)
    return FleetSource(project, label=label, on_close=on_close)


# Textual paints at most TEXTUAL_FPS frames a second (default 60), and a key's repaint waits
# for the next frame slot. Measured with 200 hosts streaming (tests/ui/bench_console.py): Down
# p90/p99 37/43 ms at 60, 19/32 ms at 120. Frames are painted on change (a rollout's view at
# most 10 times a second), so the higher cap costs no CPU: 17% at 60 and at 120.
FRAMES_PER_SECOND = "120"


def prepare_textual() -> None:
    """Before Textual is imported (it reads the variable then); the user's own value wins."""
    import os

    os.environ.setdefault("TEXTUAL_FPS", FRAMES_PER_SECOND)


def run_console(args) -> int:
    prepare_textual()
    from zdd_tui.ui.app import ZddApp, check_theme
    from zdd_tui.ui.keys import BINDING_IDS
    from zdd_tui.ui.settings import load_settings, load_theme_specs

    settings = load_settings(binding_ids=BINDING_IDS)
    specs = load_theme_specs()
    theme = getattr(args, "theme", None)
    if theme:
        check_theme(theme, specs)

    hosts = _sandbox_hosts()
    started: list = []  # the sandbox child, once started (stopped in `finally`)

    async def open_sandbox():
        from zdd_tui.ui.sandbox_proc import launch_sandbox, wait_ready

        sp = launch_sandbox(hosts)  # here, on the main thread (see launch_sandbox)
        started.append(sp)
        await asyncio.to_thread(wait_ready, sp)

        async def stop_child() -> None:
            await asyncio.to_thread(sp.stop)

        config = _load_config(sp.config_path)
        api = sp.info.get("api_url", "")
        return await _open_project(config, f"sandbox {api} · pid {sp.pid}", on_close=stop_child)

    project_opener = None
    first_run = False
    config_path = Path(getattr(args, "config", None) or "zdd.yaml")
    if not args.sandbox:
        if config_path.exists():
            config = _load_config(config_path)  # a bad file fails here, before the screen opens

            async def open_project():
                where = "sandbox" if config.is_sandbox else f"DigitalOcean {config.digitalocean.region}"
                return await _open_project(config, f"{where} · {config_path}")

            project_opener = open_project

        else:
            first_run = True

    app = ZddApp(
        open_source=open_sandbox if args.sandbox else project_opener,
        open_sandbox=open_sandbox,
        settings=settings,
        theme=theme,
        first_run=first_run,
        theme_specs=specs,
        handle_signals=True,
    )
    try:
        app.run()
    finally:
        # Normally the app closed the source (and with it the child); this covers a crash.
        for sp in started:
            sp.stop()
    if app.failure and app.return_code not in (0, None):
        raise UsageError(app.failure)
    return app.return_code or 0
