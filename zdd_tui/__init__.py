"""zdd-tui: zero-downtime rolling deploys to DigitalOcean droplets, from the terminal."""

__version__ = "0.1.0"
