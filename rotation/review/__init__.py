"""The review of a pull request: every change classified, and privilege judged per principal.

:mod:`~rotation.review.changes` is the vocabulary (a :class:`Change` and its
classes); :mod:`~rotation.review.spec_changes` classifies what changed in a
stack's spec, :mod:`~rotation.review.file_changes` what changed in policy
files, the capability matrix and the gate's own files;
:mod:`~rotation.review.privilege` asks a throwaway OpenBao
(:mod:`~rotation.review.engine`) what each principal gains and loses; and
:mod:`~rotation.review.rules` decides what fails without an acknowledgement.
"""
