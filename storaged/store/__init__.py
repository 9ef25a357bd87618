"""Persistent storage: the KV layer (LevelDB and its in-memory twin), key schema, share store."""
