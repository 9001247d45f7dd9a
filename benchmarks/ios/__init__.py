"""Core ML performance report on a Mac, and how to take it on an iPhone (see README.md)."""
