"""The sample service: health, drain and admin contract."""
