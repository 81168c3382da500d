"""Dynamic database credentials: issue, keep alive, hand over, and revoke Vault leases.

:class:`DynamicCredentialManager` owns one stream of credentials for one
database role: it issues a lease, hands the credentials to a callback, renews
the lease on the schedule Vault's own lifetime watcher uses
(``api/lifetime_watcher.go``), replaces the credentials before they expire when
the lease cannot be extended any further, and revokes what it issued when it
is stopped (:mod:`rotation.dynamic.manager`). :class:`ManagerGroup` drives
many managers from one dispatcher thread and a small worker pool
(:mod:`rotation.dynamic.group`; docs/benchmarks-dynamic.md measures how many
leases that keeps alive). A manager is told how to keep its leases by a
:class:`~rotation.dynamic.policy.LeasePolicy`
(:mod:`rotation.dynamic.policy`). The schedule is :mod:`rotation.dynamic.schedule`,
the journal :mod:`rotation.dynamic.journal`, and the Vault calls the commands
share :mod:`rotation.dynamic.leases`.

A lease that was issued but could not be handed over (the callback raised,
the process was interrupted) is always revoked. With a :class:`LeaseJournal`
its id is on disk from the moment Vault answered until the hand-over
finished, so even a hard kill in between leaves an id the next run revokes.

Nothing here logs or raises with a secret value: messages carry lease ids,
roles, mounts and times. :class:`Credential` keeps its data out of ``repr``.
"""
