"""Fake of the modules/api package (A1111 v1.10.1)."""
