"""Evaluations of memori on public data sets (``memori eval ...``)."""
