"""The provider node: market and piece store (:mod:`.market`, :mod:`.pieces`,
:mod:`.manifests`), sealing and proving (:mod:`.sealing`, :mod:`.proving`), and the
:class:`~storaged.node.daemon.Daemon` that runs them all with a chain node and the API."""
