"""Rebuild do-openapi-zdd.json: the operations zdd-tui uses, cut from DigitalOcean's OpenAPI spec.

Source: github.com/digitalocean/openapi commit 7c1300c4 (Apache-2.0, copyright DigitalOcean), as
bundled in /work/shared/digitalocean/do-openapi-full.yaml.gz. Run: python build_spec.py FULL.yaml.gz
"""

import gzip
import json
import sys
from pathlib import Path

import yaml

PATHS = {
    "/v2/account": ["get"],
    "/v2/account/keys": ["get", "post"],
    "/v2/account/keys/{ssh_key_identifier}": ["get", "delete"],
    "/v2/actions": ["get"],
    "/v2/actions/{action_id}": ["get"],
    "/v2/droplets": ["get", "post", "delete"],
    "/v2/droplets/{droplet_id}": ["get", "delete"],
    "/v2/tags": ["get", "post"],
    "/v2/tags/{tag_id}": ["get", "delete"],
    "/v2/tags/{tag_id}/resources": ["post", "delete"],
    "/v2/load_balancers": ["get", "post"],
    "/v2/load_balancers/{lb_id}": ["get", "put", "delete"],
    "/v2/monitoring/metrics/load_balancer/droplets_health_checks": ["get"],
    "/v2/registries": ["get", "post"],
    "/v2/registries/{registry_name}": ["get", "delete"],
    "/v2/registries/{registry_name}/docker-credentials": ["get"],
    "/v2/registries/options": ["get"],
    "/v2/registries/validate-name": ["post"],
    "/v2/registries/subscription": ["get"],
    "/v2/registries/{registry_name}/repositoriesV2": ["get"],
    "/v2/registries/{registry_name}/repositories/{repository_name}/tags": ["get"],
    "/v2/registries/{registry_name}/repositories/{repository_name}/tags/{repository_tag}": ["delete"],
    "/v2/sizes": ["get"],
}


def refs(node, out):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith("#/"):
                out.add(v)
            else:
                refs(v, out)
    elif isinstance(node, list):
        for v in node:
            refs(v, out)


def main(full_path: str) -> None:
    full = yaml.safe_load(gzip.open(full_path))
    paths = {}
    for p, methods in PATHS.items():
        item = full["paths"][p]
        paths[p] = {m: item[m] for m in methods}
        if "parameters" in item:
            paths[p]["parameters"] = item["parameters"]
        for op in paths[p].values():
            if isinstance(op, dict):
                op.pop("x-codeSamples", None)
    spec = {k: full[k] for k in ("openapi", "info", "servers", "security")}
    spec["paths"] = paths
    comps: dict = {}
    todo: set = set()
    refs(paths, todo)
    done: set = set()
    while todo:
        r = todo.pop()
        if r in done:
            continue
        done.add(r)
        _, _, section, name = r.split("/", 3)
        node = full["components"][section][name]
        comps.setdefault(section, {})[name] = node
        refs(node, todo)
    comps["securitySchemes"] = full["components"]["securitySchemes"]
    spec["components"] = comps
    spec["info"]["x-zdd-notice"] = (
        "Excerpt of DigitalOcean's OpenAPI specification, github.com/digitalocean/openapi commit "
        "7c1300c4. Copyright DigitalOcean. Licensed under the Apache License 2.0; see NOTICE.md."
    )
    out = Path(__file__).with_name("do-openapi-zdd.json")
    out.write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out} ({len(paths)} paths, {sum(len(v) for v in comps.values())} components)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/digitalocean/do-openapi-full.yaml.gz")
