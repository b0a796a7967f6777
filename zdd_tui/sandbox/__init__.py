"""The sandbox: a local stand-in for DigitalOcean (API, load balancer, registry, hosts)."""

# The registry server the sandbox's project file names; nothing is pushed to it (its versions
# are prebuilt), so front ends offer no build against it.
SANDBOX_REGISTRY_SERVER = "registry.sandbox.local"
