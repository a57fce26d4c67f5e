"""ALFWorld: the env (`env.py`), its engine, the real-data loader and the offline game generator.

Importing this package loads nothing heavy; the TextWorld engine loads when an env is made.
"""
