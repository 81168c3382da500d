"""Tests of rotation.review."""
