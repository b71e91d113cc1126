"""Answering queries from a checkpoint: the Python API, REST, and Cypher write-back."""
