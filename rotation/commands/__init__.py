"""Rotation subcommands, one module each (registered in :data:`rotation.cli.COMMAND_MODULES`)."""
