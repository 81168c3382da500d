"""Declared versions against live ones: what pre-flight, verify, record, drift and due share.

For each static secret of a stack the *declared* version is the stack file's
(or, for a dr mirror, its origin's; :mod:`rotation.live.declared`); the
*live* one is KV v2's ``current_version``, read over aiohttp
(:mod:`rotation.live.transport`) concurrently (:mod:`rotation.live.scan`),
metadata only, never values. Progress is a callback the commands supply, so
the reader draws nothing itself.
"""
