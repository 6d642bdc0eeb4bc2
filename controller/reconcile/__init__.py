"""Reconciliation: load + validate -> plan (pure) -> apply (one transaction) -> conditions.

``loader`` turns a file's bytes into a definition or located problems, ``rules`` judges the
cross-file rules of an account, ``plan`` folds commits over the applied state, ``apply`` writes
the result, ``reconciler`` drives a pass, ``validate`` checks a working tree offline.
"""
