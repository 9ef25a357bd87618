"""The ``storage`` client: put and get files as an in-process light node (docs/contracts.md 6)."""
