"""storaged: a Filecoin-style decentralized storage network."""

__version__ = "0.1.0"
