"""Launching things locally: child processes, readiness waits, the AWS emulator, the terminal."""
