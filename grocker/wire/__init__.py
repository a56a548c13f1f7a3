"""Shapes and marks shared by the host and the programs that run in containers."""
