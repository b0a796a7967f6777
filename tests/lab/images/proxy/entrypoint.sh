#!/bin/sh
# As the official image: flags (or a traefik subcommand) go to traefik; anything else runs as a
# command; no arguments runs traefik, which then reads /etc/traefik/traefik.yml.
set -e
case "${1:-}" in
    "") exec traefik ;;
    -* | version | healthcheck) exec traefik "$@" ;;
    *) exec "$@" ;;
esac
