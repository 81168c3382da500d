"""Reliability and security under faults, races and bad input (issue 9), against real servers."""
