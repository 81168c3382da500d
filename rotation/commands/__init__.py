"""Rotation subcommands, one module each; :mod:`rotation.cli` registers every module here."""
