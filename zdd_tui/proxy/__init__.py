"""The proxy in front of the app on each host (local-swap): Traefik's configuration and readings.

Pure functions, no I/O: the host runtimes (`zdd_tui.hosts`, `zdd_tui.sandbox`) write the files and
read the answers with their own transports.
"""
