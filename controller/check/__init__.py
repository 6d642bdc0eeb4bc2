"""Dry-run targets, workflow test cases and `wfctl check`: what a pull request would change, with zero side effects."""
