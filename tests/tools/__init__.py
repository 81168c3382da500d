"""Tests for the setup scripts under tools/."""
