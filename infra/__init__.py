"""The tradepulse-vault Pulumi program: environment spec, components and wiring.

``infra/__main__.py`` is the entry point Pulumi runs; everything it uses lives
in importable modules here so unit tests can build the same resources under
Pulumi's mocks.
"""
