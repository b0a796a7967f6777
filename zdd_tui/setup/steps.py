"""First-time setup, as data plus idempotent functions.

Each step has a preview (what it will create, what that costs per month) and an apply that
finds what already exists (by name, tag or key fingerprint) before creating anything, so a
second run creates nothing and an interrupted run resumes where it stopped.

    setup = Setup(config, emit=print)
    for step in STEPS:
        preview = await setup.preview(step.id)
        ... show it, ask ...
        await setup.apply(step.id)
    await setup.close()

`Setup.run(only=..., confirm=...)` does that loop (headless `zdd-tui setup` uses it).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from zdd_tui.cloud.models import Droplet, HealthCheck, LoadBalancer, Registry, Size, SSHKey
from zdd_tui.config import Config, key_for
from zdd_tui.errors import RefusedError, UsageError, ZddError
from zdd_tui.events import HostReport, Listener
from zdd_tui.setup.events import (
    Preview,
    PreviewShown,
    StepDone,
    StepError,
    StepProgress,
    StepStarted,
)

# DigitalOcean bills a regional load balancer per node ("size unit") per month; the API has no
# price endpoint for load balancers, so the published price is kept here.
LB_NODE_MONTHLY_USD = 12.00

# cloud-init user data for new droplets: Debian's docker engine, enabled at boot.
CLOUD_INIT = """#cloud-config
package_update: true
packages:
  - docker.io
runcmd:
  - [systemctl, enable, --now, docker]
"""


@dataclass(frozen=True)
class StepSpec:
    id: str
    title: str
    description: str


STEPS: tuple[StepSpec, ...] = (
    StepSpec("token", "DigitalOcean token", "check the API token against /v2/account and keep it in the OS keyring"),
    StepSpec("ssh-key", "SSH key",
             "generate (or import) an ed25519 key, keep it in the keyring, add its public half to the account"),
    StepSpec("droplets", "Droplets",
             "create the droplets with the tag, region, size, Debian image, SSH key and Docker via cloud-init"),
    StepSpec("load-balancer", "Load balancer", "a tag-based load balancer with the service's health check"),
    StepSpec("registry", "Container registry", "the DigitalOcean container registry with the chosen tier"),
    StepSpec("bootstrap", "Host bootstrap",
             "over SSH: pin host keys, wait for cloud-init, check Docker, create the state directory, "
             "check the port is free"),
)
STEP_IDS = tuple(s.id for s in STEPS)


def validate_registry_name(name: str) -> str:
    """registry.name's rule from zdd.yaml, checked again: a Config can also be built in code."""
    expected = key_for("registry.name").problem(name)
    if expected is not None:
        raise UsageError(f"registry name {name!r} is invalid: expected {expected}", "set registry.name in zdd.yaml")
    return name


def ssh_key_name(config: Config) -> str:
    return f"zdd-tui-{config.app}-{config.context}"


class Setup:
    """The wizard's state for one project. Nothing here prints; events go to `emit`.

    kw:
      token: a token typed in (console); else the credential store / env (get_token);
      client: an open DOClient to use (tests); else one is opened for the token;
      accept_new_host_keys: bool or callback (host, port, fingerprint) -> bool for bootstrap;
      import_key: private key text to import instead of generating one;
      install_docker: install docker.io over SSH when a host lacks it;
      poll_interval / wait_timeout: for waiting on droplets and the load balancer;
      pool_options: extra SSHPool kwargs (known_hosts path, ...).
    """

    def __init__(
        self,
        config: Config,
        *,
        context: str | None = None,
        emit: Listener | None = None,
        token: str | None = None,
        client: Any = None,
        accept_new_host_keys: Any = False,
        import_key: str | None = None,
        install_docker: bool = True,
        poll_interval: float = 3.0,
        wait_timeout: float = 600.0,
        pool_options: dict | None = None,
    ):
        self.config = config
        self.context = context or config.context
        self.emit: Listener = emit or (lambda ev: None)
        self._typed_token = token
        self._client = client
        self._owns_client = client is None
        self.accept_new_host_keys = accept_new_host_keys
        self.import_key = import_key
        self.install_docker = install_docker
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout
        self.pool_options = pool_options or {}
        self._ssh_key: SSHKey | None = None
        self._sizes: dict[str, float] | None = None
        self._offers: dict[str, Size] | None = None
        self._create_actions: dict[str, int] = {}  # droplet name -> its create action, until completed

    # --- plumbing --------------------------------------------------------------------------

    def _token(self) -> str:
        if self._typed_token is not None:
            from zdd_tui.secrets import check_new_token_url

            check_new_token_url(self.config)  # zdd.yaml must not choose where a typed token goes
            return self._typed_token
        from zdd_tui.secrets import get_token

        return get_token(self.config, self.context)

    async def client(self):
        if self._client is None:
            from zdd_tui.cloud.client import DOClient

            self._client = await DOClient(self.config.digitalocean.api_url, self._token()).open()
            self._owns_client = True
        return self._client

    async def close(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.close()
        self._client = None

    async def __aenter__(self) -> Setup:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _progress(self, step: str, message: str, fraction: float | None = None) -> None:
        self.emit(StepProgress(step, message, fraction))

    async def sizes(self) -> dict[str, float]:
        if self._sizes is None:
            self._sizes = await (await self.client()).sizes()
        return self._sizes

    # --- the loop --------------------------------------------------------------------------

    async def run(
        self,
        *,
        only: str | None = None,
        confirm: Callable[[Preview], bool | Awaitable[bool]] | None = None,
    ) -> list[StepDone]:
        """Preview, confirm and apply each step in order (or just `only`)."""
        if only is not None and only not in STEP_IDS:
            raise UsageError(f"unknown setup step {only!r}; steps: {', '.join(STEP_IDS)}")
        done: list[StepDone] = []
        for spec in STEPS:
            if only is not None and spec.id != only:
                continue
            preview = await self.preview(spec.id)
            self.emit(PreviewShown(preview))
            if preview.applies and not preview.nothing_to_do and confirm is not None:
                ok = confirm(preview)
                if inspect.isawaitable(ok):
                    ok = await ok
                if not ok:
                    raise RefusedError(f"setup stopped before step '{spec.id}': not confirmed",
                                       "run again with --yes to proceed")
            done.append(await self.apply(spec.id))
        return done

    async def preview(self, step: str) -> Preview:
        return await getattr(self, "_preview_" + step.replace("-", "_"))()

    async def apply(self, step: str) -> StepDone:
        spec = next((s for s in STEPS if s.id == step), None)
        if spec is None:
            raise UsageError(f"unknown setup step {step!r}; steps: {', '.join(STEP_IDS)}")
        self.emit(StepStarted(step, spec.title))
        try:
            result = await getattr(self, "_apply_" + step.replace("-", "_"))()
        except ZddError as exc:
            self.emit(StepError(step, exc.message, exc.hint))
            raise
        except Exception as exc:
            self.emit(StepError(step, f"{type(exc).__name__}: {exc}"))
            raise
        self.emit(result)
        return result

    # --- 1. token --------------------------------------------------------------------------

    async def _preview_token(self) -> Preview:
        typed = self._typed_token is not None
        store = typed and not self.config.is_sandbox
        return Preview(
            step="token",
            title="DigitalOcean token",
            # Checking creates nothing; only keeping a newly typed token is a change to confirm.
            creates=(f"the token in the OS keyring (context '{self.context}')",) if store else (),
            cost_detail="free",
            notes=(
                "checks " + ("the token you entered" if typed else "the stored token (or DIGITALOCEAN_TOKEN)")
                + " against /v2/account",
            ),
        )

    async def _apply_token(self) -> StepDone:
        from zdd_tui.cloud.client import DOClient
        from zdd_tui.cloud.errors import UnauthorizedError

        token = self._token()
        # Check first and store only a token the API accepted: a rejected token leaves no trace.
        try:
            async with DOClient(self.config.digitalocean.api_url, token) as c:
                account = await c.account()
        except UnauthorizedError as e:
            what = "403 Forbidden: the token lacks a scope" if e.status == 403 else "401 Unauthorized"
            raise UsageError(f"DigitalOcean rejected the token ({what}); nothing was stored",
                             f"{e.hint}; tokens are made at cloud.digitalocean.com/account/api/tokens") from None
        stored = ""
        if self._typed_token is not None and not self.config.is_sandbox:
            from zdd_tui.secrets import set_token

            set_token(self.context, token, api_url=self.config.digitalocean.api_url)
            stored = f"; stored in the keyring for context '{self.context}'"
        return StepDone("token", "exists",
                        f"token accepted for {account.email or account.uuid} (status {account.status}){stored}")

    # --- 2. SSH key ------------------------------------------------------------------------

    def _stored_key(self) -> str | None:
        from zdd_tui.secrets import get_ssh_key

        try:
            return get_ssh_key(self.context)
        except ZddError:
            return None

    async def _preview_ssh_key(self) -> Preview:
        c = await self.client()
        stored = self._stored_key()
        creates, existing = [], []
        if stored is None:
            creates.append("a new ed25519 key in the OS keyring" if not self.import_key
                           else "the imported key in the OS keyring")
            creates.append(f"SSH key '{ssh_key_name(self.config)}' on the account (public half)")
        else:
            pub = _public_line(stored)
            found = _find_key(await c.list_ssh_keys(), pub)
            existing.append(f"the key in the keyring ({_fp(stored)})")
            if found:
                existing.append(f"account SSH key '{found.name}' ({found.fingerprint})")
            else:
                creates.append(f"SSH key '{ssh_key_name(self.config)}' on the account (public half)")
        return Preview("ssh-key", "SSH key", tuple(creates), tuple(existing), 0.0, "free")

    async def _apply_ssh_key(self) -> StepDone:
        import asyncssh  # imported here: it is slow to import and most commands never need it
        c = await self.client()
        created = []
        text = self._stored_key()
        if text is None:
            if self.import_key:
                try:
                    key = asyncssh.import_private_key(self.import_key)
                except (asyncssh.KeyImportError, ValueError):
                    raise UsageError("the SSH key to import cannot be read "
                                     "(an unencrypted OpenSSH or PEM private key is needed)") from None
            else:
                key = asyncssh.generate_private_key("ssh-ed25519", comment=ssh_key_name(self.config))
            text = key.export_private_key("openssh").decode()
            from zdd_tui.secrets import set_ssh_key

            # Stored before the upload: an interruption after this resumes with the same key.
            set_ssh_key(self.context, text)
            created.append(f"key {_fp(text)} in the keyring")
        pub = _public_line(text)
        found = _find_key(await c.list_ssh_keys(), pub)
        if found is None:
            found = await c.create_ssh_key(ssh_key_name(self.config), pub)
            created.append(f"account SSH key '{found.name}' (id {found.id})")
        self._ssh_key = found
        return StepDone(
            "ssh-key",
            "created" if created else "exists",
            f"SSH key {found.fingerprint} (account id {found.id})",
            tuple(created),
        )

    async def _account_key(self) -> SSHKey | None:
        if self._ssh_key is None:
            text = self._stored_key()
            if text is not None:
                self._ssh_key = _find_key(await (await self.client()).list_ssh_keys(), _public_line(text))
        return self._ssh_key

    # --- 3. droplets -----------------------------------------------------------------------

    async def _existing_droplets(self) -> dict[str, Droplet]:
        c = await self.client()
        out: dict[str, Droplet] = {}
        for d in sorted(await c.list_droplets(self.config.droplets.tag), key=lambda d: d.id):
            out.setdefault(d.name, d)
        return out

    async def _size_price(self) -> float:
        """The size's monthly price; UsageError when DigitalOcean does not offer it in the region
        (checked before anything is created: a create would fail only after the others began)."""
        if self._offers is None:
            self._offers = {s.slug: s for s in await (await self.client()).list_sizes()}
        offers = self._offers
        size, region = self.config.droplets.size, self.config.digitalocean.region
        offer = offers.get(size)
        if offer is None:
            raise UsageError(
                f"droplet size {size!r} is not offered (known: {', '.join(sorted(offers)[:12])}...)",
                "set droplets.size in zdd.yaml",
            )
        if not offer.available or (offer.regions and region not in offer.regions):
            elsewhere = [s for s, o in sorted(offers.items()) if o.available and region in o.regions]
            raise UsageError(
                f"droplet size {size!r} is not available in region {region}"
                + (f" (offered there: {', '.join(elsewhere[:8])})" if elsewhere else ""),
                "set droplets.size (or digitalocean.region) in zdd.yaml",
            )
        return offer.price_monthly

    async def _preview_droplets(self) -> Preview:
        dc = self.config.droplets
        price = await self._size_price()
        existing = await self._existing_droplets()
        missing = [n for n in dc.names if n not in existing]
        creates = tuple(f"droplet {n} ({dc.size}, {self.config.digitalocean.region}, {dc.image}, tag {dc.tag})"
                        for n in missing)
        return Preview(
            "droplets",
            "Droplets",
            creates,
            tuple(f"droplet {n} ({existing[n].status})" for n in dc.names if n in existing),
            round(price * len(missing), 2),
            f"{len(missing)} x {dc.size} at ${price:.2f}/month",
            ("cloud-init installs Docker (docker.io) on first boot",),
        )

    async def _apply_droplets(self) -> StepDone:
        dc = self.config.droplets
        c = await self.client()
        await self._size_price()  # an unknown size fails before anything is created
        existing = await self._existing_droplets()
        missing = [n for n in dc.names if n not in existing]
        created: tuple[str, ...] = ()
        if missing:
            key = await self._account_key()
            if key is None:
                raise RefusedError("no SSH key on the account for this project yet", "run the 'ssh-key' step first")
            self._progress("droplets", f"creating {', '.join(missing)}")
            made = await c.create_droplets(
                missing,
                region=self.config.digitalocean.region,
                size=dc.size,
                image=dc.image,
                ssh_key_ids=[key.id],
                tags=[dc.tag],
                user_data=CLOUD_INIT,
            )
            created = tuple(f"droplet {n}" for n in missing)
            self._create_actions.update({d.name: d.create_action_id for d in made
                                         if d.name in missing and d.create_action_id is not None})
        droplets = await self._wait_droplets_active(list(dc.names))
        detail = ", ".join(f"{d.name} {d.public_ipv4 or '-'}" for d in droplets)
        return StepDone("droplets", "created" if created else "exists", f"active: {detail}", created)

    async def _wait_droplets_active(self, names: list[str], step: str = "droplets") -> list[Droplet]:
        """Until each droplet is active *and* has its public address: DigitalOcean shows a new
        droplet without `networks.v4`, and can call it active a moment before the address."""
        deadline = time.monotonic() + self.wait_timeout
        while True:
            found = await self._existing_droplets()
            ds = [found[n] for n in names if n in found]
            ready = [d for d in ds if d.status == "active" and d.public_ipv4]
            waiting = [_droplet_state(d) for d in ds if d not in ready] + [f"{n} (not found)" for n in names
                                                                           if n not in found]
            self._progress(step, f"{len(ready)}/{len(names)} droplets active with an address"
                           + (f"; waiting for {', '.join(waiting)}" if waiting else ""),
                           len(ready) / max(1, len(names)))
            if len(ready) == len(names):
                return ds
            await self._check_create_actions([d for d in ds if d not in ready])
            if time.monotonic() >= deadline:
                raise ZddError(f"droplets not ready after {self.wait_timeout:.0f}s: {', '.join(waiting)}",
                               "run setup again later: it resumes")
            await asyncio.sleep(self.poll_interval)

    async def _check_create_actions(self, waiting: list[Droplet]) -> None:
        """A droplet whose create action errored never becomes active: say so now, not after the
        wait's timeout."""
        c = await self.client()
        for d in waiting:
            aid = self._create_actions.get(d.name)
            if aid is None:
                continue
            action = await c.get_action(aid)
            if action.status == "completed":
                self._create_actions.pop(d.name, None)
            elif action.status == "errored":
                raise ZddError(
                    f"DigitalOcean failed to create droplet {d.name} (create action {aid} errored)",
                    "see the droplet in the DigitalOcean control panel, delete it, and run setup again",
                )

    # --- 4. load balancer ------------------------------------------------------------------

    def _health_check(self) -> HealthCheck:
        hc = self.config.load_balancer.health_check
        return HealthCheck(
            protocol=hc.protocol,
            port=self.config.health_port,
            path=hc.path,
            check_interval_seconds=hc.check_interval_seconds,
            response_timeout_seconds=hc.response_timeout_seconds,
            unhealthy_threshold=hc.unhealthy_threshold,
            healthy_threshold=hc.healthy_threshold,
        )

    async def _preview_load_balancer(self) -> Preview:
        lbc = self.config.load_balancer
        found = await (await self.client()).find_load_balancer(lbc.name)
        hc = self._health_check()
        if found is not None:
            return Preview("load-balancer", "Load balancer", (),
                           (f"load balancer {found.name} ({found.status}, {found.ip or 'no IP yet'})",), 0.0,
                           "already exists")
        return Preview(
            "load-balancer",
            "Load balancer",
            (
                (f"load balancer {lbc.name} in {self.config.digitalocean.region} for tag {self.config.droplets.tag}: "
                 f"HTTP {lbc.entry_port} -> {self.config.target_port}, "
                 f"health check {hc.protocol.upper()} :{hc.port}{hc.path} "
                 f"every {hc.check_interval_seconds}s "
                 f"(unhealthy {hc.unhealthy_threshold}, healthy {hc.healthy_threshold})"),
            ),
            (),
            round(LB_NODE_MONTHLY_USD * lbc.size_unit, 2),
            f"{lbc.size_unit} node(s) x ${LB_NODE_MONTHLY_USD:.2f}/month",
        )

    async def _apply_load_balancer(self) -> StepDone:
        lbc = self.config.load_balancer
        c = await self.client()
        found = await c.find_load_balancer(lbc.name)
        created: tuple[str, ...] = ()
        if found is None:
            self._progress("load-balancer", f"creating load balancer {lbc.name}")
            found = await c.create_load_balancer(
                lbc.name,
                region=self.config.digitalocean.region,
                tag=self.config.droplets.tag,
                entry_port=lbc.entry_port,
                target_port=self.config.target_port,
                health_check=self._health_check(),
                size_unit=lbc.size_unit,
            )
            created = (f"load balancer {lbc.name}",)
        elif found.tag != self.config.droplets.tag:
            raise RefusedError(
                f"load balancer {lbc.name} exists but targets {('tag ' + found.tag) if found.tag else 'droplet ids'}, "
                f"not tag {self.config.droplets.tag}",
                "rename load_balancer.name in zdd.yaml, or point that load balancer at the tag",
            )
        lb = await self._wait_lb_active(found)
        return StepDone("load-balancer", "created" if created else "exists",
                        f"{lb.name} active at {lb.ip or '(no IP yet)'}", created)

    async def _wait_lb_active(self, lb: LoadBalancer) -> LoadBalancer:
        c = await self.client()
        deadline = time.monotonic() + self.wait_timeout
        while True:
            lb = await c.get_load_balancer(lb.id)
            self._progress("load-balancer", f"load balancer {lb.name} {lb.status}"
                           + (f" at {lb.ip}" if lb.ip else " (no IP yet)"), 1.0 if lb.status == "active" else 0.5)
            if lb.status == "active":
                return lb
            if lb.status == "errored":
                raise ZddError(f"load balancer {lb.name} is in state 'errored'",
                               "see it in the DigitalOcean control panel")
            if time.monotonic() >= deadline:
                raise ZddError(f"load balancer {lb.name} not active after {self.wait_timeout:.0f}s",
                               "run setup again later: it resumes")
            await asyncio.sleep(self.poll_interval)

    # --- 5. registry -----------------------------------------------------------------------

    async def _tier_price(self) -> float:
        tier = self.config.registry.tier
        tiers = await (await self.client()).registry_options()
        for t in tiers:
            if t.slug == tier:
                return t.monthly_price_usd
        raise UsageError(
            f"registry tier {tier!r} is not offered (tiers: {', '.join(t.slug for t in tiers)})",
            "set registry.tier in zdd.yaml",
        )

    async def _registry_plan(self) -> tuple[Registry | None, list[Registry]]:
        """(the configured registry if it exists, the account's others); UsageError for a region
        DigitalOcean does not offer registries in."""
        rc = self.config.registry
        validate_registry_name(rc.name)
        c = await self.client()
        if rc.region:
            regions = await c.registry_regions()
            if regions and rc.region not in regions:
                raise UsageError(f"container registries are not offered in region {rc.region!r} "
                                 f"(offered: {', '.join(regions)})", "set registry.region in zdd.yaml")
        regs = await c.list_registries()
        mine = next((r for r in regs if r.name == rc.name), None)
        return mine, [r for r in regs if r.name != rc.name]

    @staticmethod
    def _one_allowed(others: list[Registry]) -> bool:
        """Whether the account's plan holds one registry only (only Professional holds several)."""
        return bool(others) and not any(r.tier == "professional" for r in others)

    async def _preview_registry(self) -> Preview:
        rc = self.config.registry
        mine, others = await self._registry_plan()
        price = await self._tier_price()
        if mine is not None:
            return Preview("registry", "Container registry", (),
                           (f"registry {rc.name} ({mine.tier or 'tier unknown'})",), 0.0, "already exists")
        notes: tuple[str, ...] = ()
        if self._one_allowed(others):
            notes = ((f"the account already has registry {others[0].name!r} and its plan allows one: "
                      "set registry.name to it"),)
        return Preview(
            "registry",
            "Container registry",
            (f"registry {rc.name} (tier {rc.tier}{', ' + rc.region if rc.region else ''})",),
            (),
            round(price, 2),
            f"tier {rc.tier} at ${price:.2f}/month",
            notes,
        )

    async def _apply_registry(self) -> StepDone:
        rc = self.config.registry
        mine, others = await self._registry_plan()
        if mine is not None:
            return StepDone("registry", "exists", f"registry {rc.name} ({mine.tier or 'tier unknown'})")
        await self._tier_price()
        if self._one_allowed(others):
            raise RefusedError(
                f"the account already has container registry {others[0].name!r} and its plan allows one",
                f"set registry.name: {others[0].name} in zdd.yaml (or move the account to the Professional plan)",
            )
        c = await self.client()
        await c.validate_registry_name(rc.name)  # a name taken elsewhere fails here, with its hint
        self._progress("registry", f"creating registry {rc.name}")
        reg = await c.create_registry(rc.name, rc.tier, rc.region)
        return StepDone("registry", "created", f"registry {reg.name} (tier {reg.tier or rc.tier})",
                        (f"registry {rc.name}",))

    # --- 6. host bootstrap over SSH --------------------------------------------------------

    _SANDBOX_NOTE = (
        "not applicable in the sandbox: its hosts are local processes run by the sandbox, not SSH hosts, "
        "so there are no host keys to pin and no Docker to check"
    )

    async def _preview_bootstrap(self) -> Preview:
        if self.config.is_sandbox:
            return Preview("bootstrap", "Host bootstrap", (), (), 0.0, "free", (self._SANDBOX_NOTE,), applies=False)
        droplets = await (await self.client()).list_droplets(self.config.droplets.tag)
        state_dir = f"{self.config.ssh.state_dir.rstrip('/')}/{self.config.app}"
        if self.config.deploy.strategy == "local-swap":
            last = (f"start the proxy ({self.config.proxy.image}) on port {self.config.service.port}, "
                    f"check ports {self.config.proxy.slot_a_port} and {self.config.proxy.slot_b_port} are free")
        else:
            last = f"check port {self.config.service.port} is free"
        return Preview(
            "bootstrap",
            "Host bootstrap",
            tuple(
                f"{d.name} ({d.public_ipv4 or 'no address yet'}): pin host key, wait for cloud-init, "
                f"check Docker{' (install if missing)' if self.install_docker else ''}, "
                f"create {state_dir}, {last}"
                for d in sorted(droplets, key=lambda d: d.name)
            ),
            (),
            0.0,
            "free",
        )

    async def _apply_bootstrap(self) -> StepDone:
        if self.config.is_sandbox:
            return StepDone("bootstrap", "not-applicable", self._SANDBOX_NOTE)
        from zdd_tui.hosts.bootstrap import bootstrap_host
        from zdd_tui.hosts.ssh import SSHPool

        tagged = await (await self.client()).list_droplets(self.config.droplets.tag)
        if not tagged:
            raise RefusedError(f"no droplets tagged {self.config.droplets.tag}", "run the 'droplets' step first")
        # Droplets made a moment ago (or elsewhere) may still be booting, without an address.
        droplets = sorted(await self._wait_droplets_active(sorted({d.name for d in tagged}), "bootstrap"),
                          key=lambda d: d.name)
        pool = SSHPool.from_config(self.config, context=self.context, accept_new=self.accept_new_host_keys,
                                   **self.pool_options)
        reports: list[HostReport] = []
        try:
            for i, d in enumerate(droplets):
                self._progress("bootstrap", f"{d.name}: connecting", i / len(droplets))

                def progress(m: str, n: str = d.name) -> None:
                    self._progress("bootstrap", f"{n}: {m}")

                report = await bootstrap_host(self.config, d, pool, install_docker=self.install_docker,
                                              progress=progress, cloud_init_timeout=self.wait_timeout)
                self.emit(report)
                reports.append(report)
        finally:
            await pool.close()
        bad = [r for r in reports if not r.ok]
        if bad:
            lines = "; ".join(f"{r.host}: " + ", ".join(f"{k} {v}" for k, v in r.checks.items()) for r in bad)
            raise ZddError(f"host bootstrap failed on {', '.join(r.host for r in bad)}: {lines}",
                           "fix the hosts and run `zdd-tui setup --only bootstrap` again")
        return StepDone("bootstrap", "exists", f"{len(reports)} host(s) ready: " + ", ".join(r.host for r in reports))


def _droplet_state(d: Droplet) -> str:
    if d.status == "active":
        return f"{d.name} (active, no address yet)"
    return f"{d.name} ({d.status})"


def _public_line(private_text: str) -> str:
    import asyncssh  # imported here: it is slow to import and most commands never need it
    key = asyncssh.import_private_key(private_text)
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


def _fp(private_text: str) -> str:
    import asyncssh  # imported here: it is slow to import and most commands never need it
    return asyncssh.import_private_key(private_text).get_fingerprint("sha256")


def _find_key(keys: list[SSHKey], public_line: str) -> SSHKey | None:
    for k in keys:
        if " ".join(k.public_key.split()[:2]) == public_line:
            return k
    return None
