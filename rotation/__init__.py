"""Rotation tooling for tradepulse-vault: ``python -m rotation <command>``."""
