"""The ``deploy`` command: one typer app per mode, composed in :mod:`deploy_modes.cli.main`."""
