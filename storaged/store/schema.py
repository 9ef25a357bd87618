"""Every LevelDB key in storaged is built here, and only here.

Format: a one-byte table prefix, then fixed-width big-endian unsigned integers and raw hashes,
so that keys of one table sort by their numeric fields and prefix/range scans work.  No key is
ever built from ``repr`` or decimal text.

Prefix table (a prefix is never reused for another table; add new tables at the end of a range):

| prefix | table | owner |
|---|---|---|
| 0x01 | META: schema version and per-store metadata | store |
| 0x10-0x1F | share store index | ``storaged.store.shares`` |
| 0x20-0x2F | chain: blocks, commits, receipts, head, tx index | ``storaged.chain`` |
| 0x30-0x3F | chain state (accounts, providers, deals, sectors, params) | ``storaged.chain`` |
| 0x40-0x4F | consensus write-ahead log | ``storaged.chain.consensus`` |
| 0x50-0x5F | provider market: local deals, sectors, proving schedule | ``storaged.node`` |
| 0x60-0x6F | client: files put from this home | ``storaged.client.records`` |
"""

from __future__ import annotations

from storaged.errors import LocalBugError

META = b"\x01"

U64_MAX = (1 << 64) - 1


def u64(n: int) -> bytes:
    """Encode ``n`` as 8 big-endian bytes.

    Raises:
        LocalBugError: ``n`` is outside 0..2**64-1 (callers validate user input before this).
    """
    if not 0 <= n <= U64_MAX:
        raise LocalBugError(f"u64 key field out of range: {n}")
    return n.to_bytes(8, "big")


def u32(n: int) -> bytes:
    """Encode ``n`` as 4 big-endian bytes.

    Raises:
        LocalBugError: ``n`` is outside 0..2**32-1.
    """
    if not 0 <= n <= 0xFFFFFFFF:
        raise LocalBugError(f"u32 key field out of range: {n}")
    return n.to_bytes(4, "big")


def hash32(h: bytes) -> bytes:
    """Check and return a raw 32-byte hash key field.

    Raises:
        LocalBugError: ``h`` is not 32 bytes.
    """
    if len(h) != 32:
        raise LocalBugError(f"hash key field must be 32 bytes, got {len(h)}")
    return bytes(h)


def meta_key(name: bytes) -> bytes:
    """Key of a metadata record (schema version and the like)."""
    return META + name


# --- share store (0x10-0x1F), owned by storaged.store.shares --------------------------------
SHARE = b"\x10"  # + hash32 piece + u32 segment + u32 index -> share index record (see shares.py)


def share_key(piece: bytes, segment: int, index: int) -> bytes:
    """Index key of one share; shares of a piece sort by (segment, index)."""
    return SHARE + hash32(piece) + u32(segment) + u32(index)


def share_piece_prefix(piece: bytes) -> bytes:
    """Prefix of every share index key of ``piece``."""
    return SHARE + hash32(piece)


# --- chain (0x20-0x3F), owned by storaged.chain -------------------------------------------
# 0x20-0x2F: the block store (outside the state root).
CHAIN_BLOCK = b"\x20"  # + u64 height -> block bytes
CHAIN_BLOCK_HASH = b"\x21"  # + hash32 block hash -> u64 height
CHAIN_COMMIT = b"\x22"  # + u64 height -> commit certificate bytes (opaque, from consensus)
CHAIN_RECEIPTS = b"\x23"  # + u64 height -> CBOR list of receipts
CHAIN_HEAD = b"\x24"  # -> CBOR {"height", "hash", "state_root"} of the last committed block
# 0x30-0x3F: chain state; every key under these prefixes is covered by the state root.
CHAIN_STATE_FIRST = 0x30
CHAIN_STATE_LAST = 0x3F
STATE_ACCOUNT = b"\x30"  # + 32-byte ed25519 public key -> CBOR account
STATE_TOTALS = b"\x31"  # -> CBOR {"minted", "burned"}
STATE_PARAMS = b"\x32"  # -> CBOR chain parameters


def chain_block_key(height: int) -> bytes:
    """Key of the block at ``height``."""
    return CHAIN_BLOCK + u64(height)


def chain_block_hash_key(block_hash: bytes) -> bytes:
    """Key of the height index entry for a block hash."""
    return CHAIN_BLOCK_HASH + hash32(block_hash)


def chain_commit_key(height: int) -> bytes:
    """Key of the commit certificate for the block at ``height``."""
    return CHAIN_COMMIT + u64(height)


def chain_receipts_key(height: int) -> bytes:
    """Key of the receipts of the block at ``height``."""
    return CHAIN_RECEIPTS + u64(height)


def state_account_key(public_key: bytes) -> bytes:
    """State key of the account of an ed25519 public key."""
    return STATE_ACCOUNT + hash32(public_key)


STATE_BEACON = b"\x33"  # + u64 height -> 64-byte randomness beacon of that block


def state_beacon_key(height: int) -> bytes:
    """State key of the randomness beacon at ``height``."""
    return STATE_BEACON + u64(height)


# --- consensus WAL (0x40-0x4F), owned by storaged.chain.consensus -------------------------
WAL_SIGNED = b"\x40"  # + u64 height + u32 round + u8 step (0 proposal, 1 prevote, 2 precommit)
#                       -> the encoded signed message (storaged.chain.consensus.messages)
WAL_LOCK = b"\x41"  # -> CBOR [height, locked_round, locked_value, valid_round, valid_value]


def wal_signed_key(height: int, round_: int, step: int) -> bytes:
    """Key of the message this validator signed at (height, round, step)."""
    return WAL_SIGNED + u64(height) + u32(round_) + bytes([step])


STATE_PROVIDER = b"\x34"  # + 32-byte public key -> CBOR provider record
STATE_VALIDATORS = b"\x35"  # + u64 effective height -> CBOR [[public key, power], ...]


def state_provider_key(public_key: bytes) -> bytes:
    """State key of a registered storage provider."""
    return STATE_PROVIDER + hash32(public_key)


def state_validators_key(effective_height: int) -> bytes:
    """State key of the validator set that takes effect at ``effective_height``."""
    return STATE_VALIDATORS + u64(effective_height)


STATE_PROPOSAL = b"\x36"  # + 32-byte proposal id (its tx hash) -> CBOR governance proposal


def state_proposal_key(proposal_id: bytes) -> bytes:
    """State key of a governance proposal."""
    return STATE_PROPOSAL + hash32(proposal_id)


STATE_DEAL_NEXT_ID = b"\x37"  # -> u64 next deal id
STATE_DEAL = b"\x38"  # + u64 deal id -> CBOR deal record
STATE_DEAL_PENDING = b"\x39"  # + u64 start epoch + u64 deal id -> b"" (published, not active)


def state_deal_key(deal_id: int) -> bytes:
    """State key of a deal."""
    return STATE_DEAL + u64(deal_id)


def state_deal_pending_key(start: int, deal_id: int) -> bytes:
    """Index entry of a published deal awaiting activation, ordered by start epoch."""
    return STATE_DEAL_PENDING + u64(start) + u64(deal_id)


# --- provider market (0x50-0x57), owned by storaged.node.market / storaged.node.pieces -----
# Values are canonical CBOR maps documented in the owning module.
MARKET_DEAL = b"\x50"  # + u64 deal id -> local deal record (storaged.node.market)
MARKET_PIECE_DEAL = b"\x51"  # + hash32 comm_d + u64 deal id -> b"" (deals waiting on a piece)
PIECE = b"\x52"  # + hash32 comm_d -> piece index record (storaged.node.pieces)
MARKET_MANIFEST = b"\x53"  # + hash32 CID digest -> manifest bytes
MARKET_PROPOSAL = b"\x54"  # + hash32 blake3(proposal CBOR) -> u64 deal id (idempotent propose)


def market_deal_key(deal_id: int) -> bytes:
    """Key of this provider's local record of deal ``deal_id``."""
    return MARKET_DEAL + u64(deal_id)


def market_piece_deal_key(comm_d: bytes, deal_id: int) -> bytes:
    """Index entry: deal ``deal_id`` stores the piece ``comm_d``."""
    return MARKET_PIECE_DEAL + hash32(comm_d) + u64(deal_id)


def market_piece_deals_prefix(comm_d: bytes) -> bytes:
    """Prefix of every index entry of the piece ``comm_d``."""
    return MARKET_PIECE_DEAL + hash32(comm_d)


def piece_key(comm_d: bytes) -> bytes:
    """Index key of a stored (complete, verified) piece."""
    return PIECE + hash32(comm_d)


def market_manifest_key(cid_digest: bytes) -> bytes:
    """Key of a stored manifest, by the 32-byte digest inside its CID."""
    return MARKET_MANIFEST + hash32(cid_digest)


def market_proposal_key(proposal_hash: bytes) -> bytes:
    """Key mapping a published proposal's hash to its deal id."""
    return MARKET_PROPOSAL + hash32(proposal_hash)
PIECE_UPLOAD = b"\x55"  # + hash32 comm_d + hash32 blake3 -> u64 bytes fsynced of the upload


def piece_upload_key(comm_d: bytes, digest: bytes) -> bytes:
    """Key of the durable (fsynced) length of an upload in progress."""
    return PIECE_UPLOAD + hash32(comm_d) + hash32(digest)


# --- client (0x60-0x6F), owned by storaged.client.records ----------------------------------
CLIENT_FILE = b"\x60"  # + u64 put time (ms) + hash32 manifest CID digest -> CBOR file record


def client_file_key(put_ms: int, cid_digest: bytes) -> bytes:
    """Key of a file put from this home; files sort by put time."""
    return CLIENT_FILE + u64(put_ms) + hash32(cid_digest)


# --- provider sectors (0x58-0x5F), owned by storaged.node.sectors / sealing / proving -------
# Values are canonical CBOR maps documented in storaged.node.sectors.
SECTOR = b"\x58"  # + u64 sector number -> local sector job record
SECTOR_DEAL = b"\x59"  # + u64 deal id -> u64 sector number (one deal per sector)
SECTOR_NEXT = b"\x5a"  # -> u64 next free sector number of this provider
SECTOR_POST = b"\x5b"  # + u64 sector number -> last PoSt outcome of the sector
SECTOR_FAULT = b"\x5c"  # + u64 sector number + u64 seq -> one fault/recovery event


def sector_key(sector: int) -> bytes:
    """Key of this provider's job record of sector ``sector``."""
    return SECTOR + u64(sector)


def sector_deal_key(deal_id: int) -> bytes:
    """Index entry: the sector that holds deal ``deal_id``."""
    return SECTOR_DEAL + u64(deal_id)


def sector_post_key(sector: int) -> bytes:
    """Key of the last PoSt outcome recorded for ``sector``."""
    return SECTOR_POST + u64(sector)


def sector_fault_key(sector: int, seq: int) -> bytes:
    """Key of fault event ``seq`` of ``sector`` (events of a sector sort in order)."""
    return SECTOR_FAULT + u64(sector) + u64(seq)


def sector_fault_prefix(sector: int) -> bytes:
    """Prefix of every fault event of ``sector``."""
    return SECTOR_FAULT + u64(sector)


CHAIN_TX_INDEX = b"\x25"  # + hash32 tx hash -> u64 height + u32 index in the block (receipts)
STATE_SECTOR = b"\x3a"  # + 32-byte provider key + u64 sector number -> CBOR sector record
STATE_POST_DUE = b"\x3b"  # + u64 close height + provider + u64 sector -> b"" (open period)
STATE_DEAL_PARTY = b"\x3c"  # + 32-byte party key + u64 deal id -> b"" (client or provider)
STATE_EVIDENCE = b"\x3d"  # + hash32 evidence bytes -> u64 height it was used at
STATE_UNBOND = b"\x3e"  # + u64 release height + 32-byte key + u64 start -> u64 amount pending


def chain_tx_index_key(tx_hash: bytes) -> bytes:
    """Key of the (height, index) of a committed transaction."""
    return CHAIN_TX_INDEX + hash32(tx_hash)


def state_sector_key(provider: bytes, number: int) -> bytes:
    """State key of a provider's sector."""
    return STATE_SECTOR + hash32(provider) + u64(number)


def state_post_due_key(close: int, provider: bytes, number: int) -> bytes:
    """Index entry of a sector's open proving period, ordered by its last height."""
    return STATE_POST_DUE + u64(close) + hash32(provider) + u64(number)


def state_deal_party_key(party: bytes, deal_id: int) -> bytes:
    """Index entry of a deal under one of its parties."""
    return STATE_DEAL_PARTY + hash32(party) + u64(deal_id)


def state_evidence_key(evidence_hash: bytes) -> bytes:
    """Key marking equivocation evidence (by its 32-byte hash) as used."""
    return STATE_EVIDENCE + hash32(evidence_hash)


def state_unbond_key(release: int, validator: bytes, start: int) -> bytes:
    """Key of a pending unbond made at height ``start`` and released at ``release`` (the
    start height says which equivocations the amount is still answerable for)."""
    return STATE_UNBOND + u64(release) + hash32(validator) + u64(start)
