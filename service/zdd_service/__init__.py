"""The sample service: health, drain and admin contract (see service/README.md)."""
