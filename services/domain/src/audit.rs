//! Tamper evidence: signed checkpoints and the verifier.
//!
//! A checkpoint commits, for one tenant, to every event of that tenant in a range of global
//! positions: its digest covers the previous checkpoint's digest, the range, the count, each
//! event's `(position, hash)` and the head `(stream, version, position, hash)` of every stream
//! touched in the range. It is signed with ed25519 and names its signing key by id. The
//! verifier needs only the events, the checkpoints and the public keys ([`TrustedKeys`]: one
//! key for every checkpoint, or one per key id, so checkpoints signed before a key rotation
//! stay verifiable), so an auditor can run it offline on an exported bundle.
//!
//! Key rotation hands the signing role over: the first checkpoint a new key signs carries a
//! [`Handover`] signed by the old and the new key, so an auditor who pins one key
//! ([`KeyChain`]) trusts the others through the hand-overs, and a retired key signing again
//! is caught. `docs/auditing.md` specifies every byte.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::canonical::{GENESIS_HASH, HashedFields, event_hash};
use crate::event::{RecordedEvent, hex32};
use crate::ids::TenantId;

/// The head of one stream as of the end of a checkpoint's range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHead {
    /// Stream name.
    pub stream: String,
    /// Version of its last event in the range.
    pub version: i64,
    /// Position of that event.
    pub position: i64,
    /// Hash of that event.
    #[serde(with = "hex32")]
    pub hash: [u8; 32],
}

/// The content a checkpoint commits to, before signing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointBody {
    /// Tenant.
    pub tenant_id: TenantId,
    /// Sequence number of this checkpoint for the tenant (1, 2, ...).
    pub seq: i64,
    /// First global position covered (exclusive lower bound is the previous `to_position`).
    pub from_position: i64,
    /// Last global position covered, inclusive.
    pub to_position: i64,
    /// Number of the tenant's events in the range.
    pub event_count: i64,
    /// Digest of the previous checkpoint (zeros for the first).
    #[serde(with = "hex32")]
    pub prev_digest: [u8; 32],
    /// Heads of the streams touched in the range, sorted by stream name.
    pub heads: Vec<StreamHead>,
}

/// A signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// What it commits to.
    #[serde(flatten)]
    pub body: CheckpointBody,
    /// SHA-256 digest over the body and the events' `(position, hash)` pairs.
    #[serde(with = "hex32")]
    pub digest: [u8; 32],
    /// Which signing key was used.
    pub key_id: String,
    /// ed25519 signature of `digest`, hex.
    pub signature: String,
    /// On the first checkpoint a new key signs: the old key's hand-over to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<Handover>,
}

/// The statement that the old audit signing key passes the signing role to a new one,
/// signed by both (`docs/auditing.md` §6). `netledger keys rotate-audit-key` makes it; the
/// checkpointer attaches it to the first checkpoint of each tenant the new key signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    /// When the key was rotated (microsecond precision).
    #[serde(with = "crate::canonical::micros_time")]
    pub at: time::OffsetDateTime,
    /// The retiring key's id.
    pub from_key_id: String,
    /// The retiring key.
    #[serde(with = "hex32")]
    pub from_public_key: [u8; 32],
    /// ed25519 signature of [`Handover::message`] by the retiring key, hex.
    pub from_signature: String,
    /// The new key's id.
    pub to_key_id: String,
    /// The new key.
    #[serde(with = "hex32")]
    pub to_public_key: [u8; 32],
    /// ed25519 signature of [`Handover::message`] by the new key, hex.
    pub to_signature: String,
}

impl Handover {
    /// The hand-over from `from` to `to` at `at` (truncated to microseconds), signed by both.
    pub fn sign(
        from_key_id: &str,
        from: &SigningKey,
        to_key_id: &str,
        to: &SigningKey,
        at: time::OffsetDateTime,
    ) -> Self {
        let micros = crate::canonical::unix_micros(at);
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
            .unwrap_or(at);
        let mut h = Self {
            at,
            from_key_id: from_key_id.to_owned(),
            from_public_key: from.verifying_key().to_bytes(),
            from_signature: String::new(),
            to_key_id: to_key_id.to_owned(),
            to_public_key: to.verifying_key().to_bytes(),
            to_signature: String::new(),
        };
        let message = h.message();
        h.from_signature = hex::encode(from.sign(&message).to_bytes());
        h.to_signature = hex::encode(to.sign(&message).to_bytes());
        h
    }

    /// The signed bytes: `"NLHO1" | str from_key_id | 32 from_public_key | str to_key_id |
    /// 32 to_public_key | i64 at_micros`.
    pub fn message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(128);
        m.extend_from_slice(b"NLHO1");
        crate::canonical::put_str(&mut m, self.from_key_id.as_bytes());
        m.extend_from_slice(&self.from_public_key);
        crate::canonical::put_str(&mut m, self.to_key_id.as_bytes());
        m.extend_from_slice(&self.to_public_key);
        m.extend_from_slice(&crate::canonical::unix_micros(self.at).to_be_bytes());
        m
    }

    /// Checks both signatures; the error says which does not verify.
    pub fn verify(&self) -> Result<(), String> {
        let message = self.message();
        for (who, public, signature) in [
            ("retiring", &self.from_public_key, &self.from_signature),
            ("new", &self.to_public_key, &self.to_signature),
        ] {
            let ok = VerifyingKey::from_bytes(public).ok().is_some_and(|key| {
                hex::decode(signature)
                    .ok()
                    .and_then(|b| Signature::from_slice(&b).ok())
                    .is_some_and(|sig| key.verify(&message, &sig).is_ok())
            });
            if !ok {
                return Err(format!(
                    "the hand-over from `{}` to `{}` is not signed by the {who} key",
                    self.from_key_id, self.to_key_id
                ));
            }
        }
        Ok(())
    }
}

/// `SHA256:` and the lowercase hex SHA-256 of the 32 public key bytes: how an auditor pins
/// a key obtained out of band.
pub fn fingerprint(key: &VerifyingKey) -> String {
    format!("SHA256:{}", hex::encode(Sha256::digest(key.to_bytes())))
}

/// Parses a key an auditor pins: 64 hex (the public key), `SHA256:<64 hex>` (its
/// [`fingerprint`]) or `<key id>=<64 hex>` (a line of `audit-signing.pub`; the id is
/// informational).
pub fn parse_pinned_key(text: &str) -> Result<PinnedKey, String> {
    let text = text.trim();
    if let Some(fp) = text.strip_prefix("SHA256:") {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(fp, &mut bytes)
            .map_err(|e| format!("a fingerprint is SHA256: and 64 hex characters: {e}"))?;
        return Ok(PinnedKey::Fingerprint(bytes));
    }
    let hex_text = text.split_once('=').map_or(text, |(_, k)| k);
    parse_public_key(hex_text).map(PinnedKey::Key)
}

/// A key an auditor trusts: the key itself, or its fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinnedKey {
    /// The public key.
    Key(VerifyingKey),
    /// SHA-256 of the public key bytes.
    Fingerprint([u8; 32]),
}

impl PinnedKey {
    /// Whether `key` is this pinned key.
    pub fn matches(&self, key: &VerifyingKey) -> bool {
        match self {
            Self::Key(k) => k == key,
            Self::Fingerprint(fp) => <[u8; 32]>::from(Sha256::digest(key.to_bytes())) == *fp,
        }
    }
}

/// One key's use in a tenant's checkpoint chain: the run of checkpoints it signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    /// Key id.
    pub key_id: String,
    /// First checkpoint it signed.
    pub first_seq: i64,
    /// Last checkpoint it signed before handing over (`None`: still in use).
    pub last_seq: Option<i64>,
    /// The hand-over that made it current (`None` for the first key).
    pub valid_from: Option<time::OffsetDateTime>,
    /// The hand-over that retired it.
    pub valid_until: Option<time::OffsetDateTime>,
}

/// The keys of a checkpoint chain (sorted by `seq`) in order of first use, with their runs.
pub fn key_uses(sorted: &[Checkpoint]) -> Vec<KeyUse> {
    let mut out: Vec<KeyUse> = Vec::new();
    for cp in sorted {
        if out.last().is_some_and(|u| u.key_id == cp.key_id) {
            continue;
        }
        let at = cp.handover.as_ref().map(|h| h.at);
        if let Some(prev) = out.last_mut() {
            prev.last_seq = Some(cp.body.seq - 1);
            prev.valid_until = at;
        }
        if out.iter().all(|u| u.key_id != cp.key_id) {
            out.push(KeyUse {
                key_id: cp.key_id.clone(),
                first_seq: cp.body.seq,
                last_seq: None,
                valid_from: at,
                valid_until: None,
            });
        }
    }
    out
}

/// Which keys of a bundle an auditor trusts, and what is wrong with each checkpoint's key
/// (`docs/auditing.md` §7.2): a key is trusted when it is pinned or linked to a trusted key
/// by a valid hand-over; a key change needs a hand-over; a retired key never signs again.
#[derive(Debug, Clone, Default)]
pub struct KeyChain {
    trusted: TrustedKeys,
    /// Per checkpoint (in the verifier's sorted order): its key problem, if any.
    problems: Vec<Option<String>>,
}

impl KeyChain {
    /// Walks `sorted` (checkpoints sorted by seq) with the bundle's `keys` by id and the
    /// auditor's `pinned` keys.
    pub fn new(
        sorted: &[Checkpoint],
        keys: &BTreeMap<String, VerifyingKey>,
        pinned: &[PinnedKey],
    ) -> Self {
        let mut problems = Vec::with_capacity(sorted.len());
        let mut links: Vec<(String, String)> = Vec::new();
        let mut current: Option<&str> = None;
        let mut retired: BTreeMap<&str, i64> = BTreeMap::new();
        for cp in sorted {
            let k = cp.key_id.as_str();
            let problem = (|| {
                if !keys.contains_key(k) {
                    return Some(format!(
                        "signed with key id `{k}`, which keys.json does not hold"
                    ));
                }
                let Some(cur) = current else {
                    return cp
                        .handover
                        .as_ref()
                        .map(|_| "the first checkpoint carries a hand-over".to_owned());
                };
                if k == cur {
                    return cp.handover.as_ref().map(|_| {
                        format!("a hand-over, but key `{k}` signed the checkpoint before too")
                    });
                }
                if let Some(seq) = retired.get(k) {
                    return Some(format!(
                        "signed with key `{k}` outside its validity: it handed over at checkpoint {seq}"
                    ));
                }
                let Some(h) = &cp.handover else {
                    return Some(format!(
                        "the signing key changes from `{cur}` to `{k}` without a hand-over"
                    ));
                };
                let same_key = |id: &str, public: &[u8; 32]| {
                    keys.get(id).is_some_and(|key| key.as_bytes() == public)
                };
                if h.from_key_id != cur
                    || h.to_key_id != k
                    || !same_key(cur, &h.from_public_key)
                    || !same_key(k, &h.to_public_key)
                {
                    return Some(format!(
                        "the hand-over names `{}` -> `{}` (keys of its own), but the key changes from `{cur}` to `{k}`",
                        h.from_key_id, h.to_key_id
                    ));
                }
                if let Err(e) = h.verify() {
                    return Some(e);
                }
                links.push((cur.to_owned(), k.to_owned()));
                None
            })();
            if let Some(cur) = current
                && cur != k
            {
                retired.entry(cur).or_insert(cp.body.seq);
            }
            current = Some(k);
            problems.push(problem);
        }
        let mut trusted: std::collections::BTreeSet<&str> = keys
            .iter()
            .filter(|(_, key)| pinned.iter().any(|p| p.matches(key)))
            .map(|(id, _)| id.as_str())
            .collect();
        loop {
            let before = trusted.len();
            for (a, b) in &links {
                if trusted.contains(a.as_str()) || trusted.contains(b.as_str()) {
                    trusted.insert(a);
                    trusted.insert(b);
                }
            }
            if trusted.len() == before {
                break;
            }
        }
        Self {
            trusted: TrustedKeys::by_id(
                trusted
                    .into_iter()
                    .filter_map(|id| keys.get(id).map(|k| (id.to_owned(), *k))),
            ),
            problems,
        }
    }

    /// The trusted keys by id.
    pub fn trusted(&self) -> &TrustedKeys {
        &self.trusted
    }
}

/// Computes a checkpoint digest incrementally over the events of its range.
#[derive(Debug, Clone)]
pub struct DigestBuilder {
    events: Sha256,
    count: i64,
}

impl Default for DigestBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl DigestBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self {
            events: Sha256::new(),
            count: 0,
        }
    }

    /// Adds one event (in position order).
    pub fn push(&mut self, position: i64, hash: &[u8; 32]) {
        self.events.update(position.to_be_bytes());
        self.events.update(hash);
        self.count += 1;
    }

    /// Number of events pushed.
    pub fn count(&self) -> i64 {
        self.count
    }

    /// The digest of `body` with the pushed events.
    pub fn finish(self, body: &CheckpointBody) -> [u8; 32] {
        let events: [u8; 32] = self.events.finalize().into();
        let mut h = Sha256::new();
        h.update(b"NLCP1");
        h.update(body.tenant_id.as_uuid().as_bytes());
        h.update(body.seq.to_be_bytes());
        h.update(body.from_position.to_be_bytes());
        h.update(body.to_position.to_be_bytes());
        h.update(body.event_count.to_be_bytes());
        h.update(body.prev_digest);
        h.update((body.heads.len() as u64).to_be_bytes());
        for head in &body.heads {
            h.update((head.stream.len() as u64).to_be_bytes());
            h.update(head.stream.as_bytes());
            h.update(head.version.to_be_bytes());
            h.update(head.position.to_be_bytes());
            h.update(head.hash);
        }
        h.update(events);
        h.finalize().into()
    }
}

/// Where a new checkpoint sits: the tenant, its sequence number, its range and the digest
/// of the checkpoint before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPlace {
    /// Tenant.
    pub tenant_id: TenantId,
    /// Sequence number (1 for the first).
    pub seq: i64,
    /// First position covered.
    pub from_position: i64,
    /// Last position covered, inclusive.
    pub to_position: i64,
    /// Digest of the previous checkpoint (zeros for the first).
    pub prev_digest: [u8; 32],
}

/// Builds and signs the checkpoint covering `events` (one tenant, position order, all of the
/// tenant's events in `from_position..=to_position`).
pub fn make_checkpoint(
    place: CheckpointPlace,
    events: &[RecordedEvent],
    key_id: &str,
    key: &SigningKey,
) -> Checkpoint {
    let CheckpointPlace {
        tenant_id,
        seq,
        from_position,
        to_position,
        prev_digest,
    } = place;
    let mut builder = DigestBuilder::new();
    let mut heads: BTreeMap<&str, StreamHead> = BTreeMap::new();
    for e in events {
        builder.push(e.position, &e.hash);
        heads.insert(
            e.stream.as_str(),
            StreamHead {
                stream: e.stream.as_str().to_owned(),
                version: e.version,
                position: e.position,
                hash: e.hash,
            },
        );
    }
    let body = CheckpointBody {
        tenant_id,
        seq,
        from_position,
        to_position,
        event_count: builder.count(),
        prev_digest,
        heads: heads.into_values().collect(),
    };
    let digest = builder.finish(&body);
    let signature = key.sign(&digest);
    Checkpoint {
        body,
        digest,
        key_id: key_id.to_owned(),
        signature: hex::encode(signature.to_bytes()),
        handover: None,
    }
}

/// What the verifier found wrong, naming the first bad global position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Tamper {
    /// An event's stored hash does not match its content: it was modified.
    #[error("event at position {position} was modified: its content does not match its hash")]
    Modified {
        /// The event's position.
        position: i64,
    },
    /// An event's chain link does not match the previous event of its stream.
    #[error(
        "event at position {position} does not follow the previous event of stream {stream}: {detail}"
    )]
    BrokenChain {
        /// The event's position.
        position: i64,
        /// The stream.
        stream: String,
        /// What does not match.
        detail: String,
    },
    /// An event the history refers to is not there.
    #[error(
        "event at position {position} is missing (next event of the tenant at position {referenced_by} refers to it)"
    )]
    Missing {
        /// The missing position.
        position: i64,
        /// The event that refers to it.
        referenced_by: i64,
    },
    /// An event is present that the history does not refer to, or positions are out of order.
    #[error("event at position {position} is out of place: {detail}")]
    OutOfPlace {
        /// The position.
        position: i64,
        /// What is wrong.
        detail: String,
    },
    /// A checkpoint does not match the events, or its signature is bad.
    #[error(
        "checkpoint {seq} (positions {from_position}..={to_position}) does not verify: {detail}; first bad position {position}"
    )]
    Checkpoint {
        /// Checkpoint sequence number.
        seq: i64,
        /// Range start.
        from_position: i64,
        /// Range end.
        to_position: i64,
        /// First position at which the events and the checkpoint disagree.
        position: i64,
        /// What is wrong.
        detail: String,
    },
}

impl Tamper {
    /// The first bad global position this finding names.
    pub fn position(&self) -> i64 {
        match self {
            Self::Modified { position }
            | Self::BrokenChain { position, .. }
            | Self::Missing { position, .. }
            | Self::OutOfPlace { position, .. }
            | Self::Checkpoint { position, .. } => *position,
        }
    }
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Events checked.
    pub events: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Last position covered by a verified signed checkpoint (0 if none).
    pub signed_through: i64,
    /// Last event position seen.
    pub last_position: i64,
}

/// Verifies one tenant's complete history (from its first event) against its checkpoints.
///
/// `events` must be in the order the store returned them (position order); the verifier
/// itself checks that positions increase. Checkpoints may come from anywhere (the database,
/// JetStream, git); each must be signed by the key `keys` trusts for its key id.
pub fn verify_tenant_history(
    events: &[RecordedEvent],
    checkpoints: &[Checkpoint],
    keys: impl Into<TrustedKeys>,
) -> Result<VerifyReport, Tamper> {
    let mut v = HistoryVerifier::new(checkpoints, keys);
    for e in events {
        v.push(e)?;
    }
    v.finish()
}

/// The finding that checkpoint `b` does not verify, at `position`.
fn checkpoint_tamper(b: &CheckpointBody, position: i64, detail: String) -> Tamper {
    Tamper::Checkpoint {
        seq: b.seq,
        from_position: b.from_position,
        to_position: b.to_position,
        position,
        detail,
    }
}

/// What the verifier checks of an event besides its content: where it sits and its links.
#[derive(Debug, Clone, Copy)]
pub struct EventLink<'a> {
    /// Global position.
    pub position: i64,
    /// The tenant's previous position.
    pub tenant_prev_position: i64,
    /// Stream name.
    pub stream: &'a str,
    /// Version in the stream.
    pub version: i64,
    /// The stream's previous hash.
    pub prev_hash: [u8; 32],
    /// The hash the event claims.
    pub hash: [u8; 32],
}

impl<'a> From<&'a RecordedEvent> for EventLink<'a> {
    fn from(e: &'a RecordedEvent) -> Self {
        Self {
            position: e.position,
            tenant_prev_position: e.tenant_prev_position,
            stream: e.stream.as_str(),
            version: e.version,
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

/// The last event of a stream seen so far (in the whole history or in one range).
#[derive(Debug, Clone, Copy)]
struct Seen {
    version: i64,
    position: i64,
    hash: [u8; 32],
}

/// [`verify_tenant_history`] one event at a time, so a history of any length is verified
/// in memory proportional to its number of streams (one version and hash each) and
/// checkpoints, not its events: push the events in position order, then
/// [`HistoryVerifier::finish`].
///
/// Findings are the same as the batch verifier's: a problem of the events themselves
/// (order, hash, links, chains) is returned by the `push` that meets it and wins over any
/// checkpoint problem; the first checkpoint (by sequence) that does not verify is returned
/// by `finish`.
#[derive(Debug)]
pub struct HistoryVerifier {
    keys: TrustedKeys,
    /// Per checkpoint, its key problem ([`KeyChain`]); empty when keys are trusted by id.
    key_problems: Vec<Option<String>>,
    checkpoints: Vec<Checkpoint>,
    /// Index of the checkpoint whose range is being read.
    current: usize,
    /// Whether the current checkpoint's chain and signature were checked.
    opened: bool,
    /// The first checkpoint problem, once found (no later checkpoint is checked).
    checkpoint_problem: Option<Tamper>,
    range: RangeState,
    prev_digest: [u8; 32],
    prev_to: i64,
    signed_through: i64,
    streams: BTreeMap<String, (i64, [u8; 32])>,
    scratch: Vec<u8>,
    count: u64,
    last_position: i64,
    before_last: i64,
}

#[derive(Debug, Default)]
struct RangeState {
    heads: BTreeMap<String, Seen>,
    builder: DigestBuilder,
    last: Option<i64>,
}

impl HistoryVerifier {
    /// A verifier of one tenant's history against `checkpoints` (any order), each signed by
    /// the key `keys` trusts for its key id.
    pub fn new(checkpoints: &[Checkpoint], keys: impl Into<TrustedKeys>) -> Self {
        let mut sorted = checkpoints.to_vec();
        sorted.sort_by_key(|c| c.body.seq);
        Self {
            keys: keys.into(),
            key_problems: Vec::new(),
            checkpoints: sorted,
            current: 0,
            opened: false,
            checkpoint_problem: None,
            range: RangeState::default(),
            prev_digest: [0; 32],
            prev_to: 0,
            signed_through: 0,
            streams: BTreeMap::new(),
            scratch: Vec::with_capacity(512),
            count: 0,
            last_position: 0,
            before_last: 0,
        }
    }

    /// A verifier of a bundle's checkpoints (any order; sorted by seq, stably) whose keys
    /// are the bundle's `keys` by id, trusted as far as they chain to `pinned`
    /// ([`KeyChain`]).
    pub fn with_key_chain(
        checkpoints: &[Checkpoint],
        keys: &BTreeMap<String, VerifyingKey>,
        pinned: &[PinnedKey],
    ) -> Self {
        let mut v = Self::new(checkpoints, TrustedKeys::default());
        let chain = KeyChain::new(&v.checkpoints, keys, pinned);
        v.keys = chain.trusted;
        v.key_problems = chain.problems;
        v
    }

    /// For a bundle whose events start at `from_position` (the start of a checkpoint's
    /// range): verifies the checkpoints that end before it (chain, key, signature; their
    /// events are not in the bundle) and takes each stream's head and the tenant's last
    /// position from them, so the first events of the range link to what they commit to.
    /// Call before the first [`HistoryVerifier::push`].
    pub fn start_at(&mut self, from_position: i64) {
        while self.checkpoint_problem.is_none()
            && self
                .checkpoints
                .get(self.current)
                .is_some_and(|c| c.body.to_position < from_position)
        {
            if !self.open_current() {
                return;
            }
            let cp = &self.checkpoints[self.current];
            for h in &cp.body.heads {
                self.streams.insert(h.stream.clone(), (h.version, h.hash));
            }
            self.last_position = cp.body.heads.iter().map(|h| h.position).max().unwrap_or(0);
            self.prev_digest = cp.digest;
            self.prev_to = cp.body.to_position;
            self.signed_through = cp.body.to_position;
            self.current += 1;
            self.opened = false;
        }
    }

    /// Checks the next event (in position order).
    pub fn push(&mut self, e: &RecordedEvent) -> Result<(), Tamper> {
        let hash = event_hash(&e.prev_hash, HashedFields::from(e), &mut self.scratch);
        self.push_link(&EventLink::from(e), &hash)
    }

    /// Checks the next event (in position order) given its links and the hash its content
    /// hashes to (`computed`; a bundle verifier hashes the metadata exactly as written).
    pub fn push_link(&mut self, e: &EventLink<'_>, computed: &[u8; 32]) -> Result<(), Tamper> {
        let hash = *computed;
        let last_position = self.last_position;
        if e.position <= last_position {
            return Err(Tamper::OutOfPlace {
                position: e.position,
                detail: format!("positions must increase, previous was {last_position}"),
            });
        }
        if hash != e.hash {
            return Err(Tamper::Modified {
                position: e.position,
            });
        }
        if e.tenant_prev_position > last_position {
            return Err(Tamper::Missing {
                position: e.tenant_prev_position,
                referenced_by: e.position,
            });
        }
        if e.tenant_prev_position < last_position {
            // This event skips back over the previous one: if it links to the one before,
            // the previous event is the intruder; otherwise this one is.
            let (position, intruder) = if e.tenant_prev_position == self.before_last {
                (last_position, last_position)
            } else {
                (e.position, e.position)
            };
            return Err(Tamper::OutOfPlace {
                position,
                detail: format!("no later event refers to position {intruder} as its predecessor"),
            });
        }
        let (prev_version, prev_hash) = self
            .streams
            .get(e.stream)
            .copied()
            .unwrap_or((0, GENESIS_HASH));
        if e.version != prev_version + 1 {
            return Err(Tamper::BrokenChain {
                position: e.position,
                stream: e.stream.to_owned(),
                detail: format!("version {} follows version {prev_version}", e.version),
            });
        }
        if e.prev_hash != prev_hash {
            return Err(Tamper::BrokenChain {
                position: e.position,
                stream: e.stream.to_owned(),
                detail: "previous hash does not match".to_owned(),
            });
        }
        match self.streams.get_mut(e.stream) {
            Some(s) => *s = (e.version, e.hash),
            None => {
                self.streams
                    .insert(e.stream.to_owned(), (e.version, e.hash));
            }
        }
        self.before_last = last_position;
        self.last_position = e.position;
        self.count += 1;
        self.checkpoint_event(e);
        Ok(())
    }

    /// Feeds one (already checked) event to the checkpoint whose range holds it, closing
    /// the checkpoints that end before it.
    fn checkpoint_event(&mut self, e: &EventLink<'_>) {
        loop {
            if self.checkpoint_problem.is_some() || !self.open_current() {
                return;
            }
            let b = &self.checkpoints[self.current].body;
            if e.position > b.to_position {
                self.close_current();
                continue;
            }
            if e.position >= b.from_position {
                self.range.builder.push(e.position, &e.hash);
                let seen = Seen {
                    version: e.version,
                    position: e.position,
                    hash: e.hash,
                };
                match self.range.heads.get_mut(e.stream) {
                    Some(s) => *s = seen,
                    None => {
                        self.range.heads.insert(e.stream.to_owned(), seen);
                    }
                }
                self.range.last = Some(e.position);
            }
            return;
        }
    }

    /// Checks the current checkpoint's place in the chain and its signature (once); false
    /// when there is no current checkpoint or it failed.
    fn open_current(&mut self) -> bool {
        let Some(cp) = self.checkpoints.get(self.current) else {
            return false;
        };
        if self.opened {
            return true;
        }
        let b = &cp.body;
        let fail = |position: i64, detail: String| checkpoint_tamper(b, position, detail);
        let expected_seq = i64::try_from(self.current)
            .unwrap_or(i64::MAX)
            .saturating_add(1);
        if b.seq != expected_seq
            || b.prev_digest != self.prev_digest
            || b.from_position != self.prev_to + 1
        {
            self.checkpoint_problem = Some(fail(
                b.from_position,
                format!(
                    "checkpoint chain broken (expected seq {expected_seq} starting after {})",
                    self.prev_to
                ),
            ));
            return false;
        }
        if let Some(Some(problem)) = self.key_problems.get(self.current) {
            self.checkpoint_problem = Some(fail(b.from_position, problem.clone()));
            return false;
        }
        let Some(key) = self.keys.get(&cp.key_id) else {
            let trusted = self.keys.ids().collect::<Vec<_>>().join(", ");
            let detail = if self.key_problems.is_empty() {
                format!(
                    "signed with key id `{}`, which is not among the trusted keys ({trusted}); \
                     get that key's public key from the operator",
                    cp.key_id
                )
            } else {
                format!(
                    "signed with key `{}`, which is neither a pinned key nor handed over from \
                     one (trusted: {trusted})",
                    cp.key_id
                )
            };
            self.checkpoint_problem = Some(fail(b.from_position, detail));
            return false;
        };
        let signature_ok = hex::decode(&cp.signature)
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .is_some_and(|sig| key.verify(&cp.digest, &sig).is_ok());
        if !signature_ok {
            self.checkpoint_problem = Some(fail(
                b.from_position,
                format!("bad signature (key id {})", cp.key_id),
            ));
            return false;
        }
        self.opened = true;
        true
    }

    /// Compares the current checkpoint with the events of its range and moves to the next.
    fn close_current(&mut self) {
        let range = std::mem::take(&mut self.range);
        let cp = &self.checkpoints[self.current];
        let b = &cp.body;
        let fail = |position: i64, detail: String| checkpoint_tamper(b, position, detail);
        // Name the first disagreement: committed heads tell which stream lost or gained events.
        let mut first_bad: Option<(i64, String)> = None;
        let note = |first_bad: &mut Option<(i64, String)>, pos: i64, why: String| {
            if first_bad.as_ref().is_none_or(|(p, _)| pos < *p) {
                *first_bad = Some((pos, why));
            }
        };
        for head in &b.heads {
            match range.heads.get(head.stream.as_str()) {
                Some(e)
                    if e.version == head.version
                        && e.position == head.position
                        && e.hash == head.hash => {}
                Some(e) => note(
                    &mut first_bad,
                    match e.version.cmp(&head.version) {
                        // Events the checkpoint commits to are gone; its head is one of them.
                        std::cmp::Ordering::Less => head.position,
                        // Events were added beyond what the checkpoint commits to.
                        std::cmp::Ordering::Greater => e.position,
                        std::cmp::Ordering::Equal => head.position.min(e.position),
                    },
                    format!(
                        "stream {} ends at version {} (position {}), checkpoint says version {} (position {})",
                        head.stream, e.version, e.position, head.version, head.position
                    ),
                ),
                None => note(
                    &mut first_bad,
                    head.position,
                    format!(
                        "stream {} has no events in range; checkpoint says version {}",
                        head.stream, head.version
                    ),
                ),
            }
        }
        for (stream, e) in &range.heads {
            if !b.heads.iter().any(|h| h.stream == *stream) {
                note(
                    &mut first_bad,
                    e.position,
                    format!("stream {stream} is not part of this checkpoint"),
                );
            }
        }
        let count = range.builder.count();
        if first_bad.is_none() && count != b.event_count {
            let last = range.last.unwrap_or(b.to_position);
            first_bad = Some((
                last,
                format!("{count} events in range, checkpoint says {}", b.event_count),
            ));
        }
        let digest = range.builder.finish(b);
        if digest != cp.digest {
            let (position, detail) = first_bad.unwrap_or((
                b.from_position,
                "digest does not match the events".to_owned(),
            ));
            self.checkpoint_problem = Some(fail(position, detail));
            return;
        }
        if let Some((position, detail)) = first_bad {
            self.checkpoint_problem = Some(fail(position, detail));
            return;
        }
        self.prev_digest = cp.digest;
        self.prev_to = b.to_position;
        self.signed_through = b.to_position;
        self.current += 1;
        self.opened = false;
    }

    /// Checks the checkpoints whose ranges are still open (events at their end may be
    /// missing) and reports.
    pub fn finish(mut self) -> Result<VerifyReport, Tamper> {
        while self.checkpoint_problem.is_none() && self.open_current() {
            self.close_current();
        }
        if let Some(t) = self.checkpoint_problem {
            return Err(t);
        }
        Ok(VerifyReport {
            events: self.count,
            checkpoints: self.checkpoints.len() as u64,
            signed_through: self.signed_through,
            last_position: self.last_position,
        })
    }
}

/// The public keys checkpoints are verified with: one key trusted for every key id (a
/// history signed by one key), and/or keys by id (a history that spans key rotations: each
/// checkpoint is verified with the key its `key_id` names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys {
    any: Option<VerifyingKey>,
    by_id: BTreeMap<String, VerifyingKey>,
}

impl TrustedKeys {
    /// One key for every checkpoint, whatever key id it names.
    pub fn any(key: VerifyingKey) -> Self {
        Self {
            any: Some(key),
            by_id: BTreeMap::new(),
        }
    }

    /// Keys by id.
    pub fn by_id(keys: impl IntoIterator<Item = (String, VerifyingKey)>) -> Self {
        Self {
            any: None,
            by_id: keys.into_iter().collect(),
        }
    }

    /// Parses `hex` (one key for every id) or `id=hex` entries separated by commas, spaces
    /// or new lines (`#` starts a comment line). Key ids are 1-100 characters of letters,
    /// digits, `.`, `_` or `-`; an id given twice is an error.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut keys = Self::default();
        let entries = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .flat_map(|l| l.split([',', ' ', '\t']))
            .map(str::trim)
            .filter(|e| !e.is_empty());
        const MIXED: &str =
            "a bare public key must be the only entry; name each key of a list as <key id>=<hex>";
        for entry in entries {
            if keys.any.is_some() {
                return Err(MIXED.to_owned());
            }
            match entry.split_once('=') {
                None if keys.by_id.is_empty() => keys.any = Some(parse_public_key(entry)?),
                None => return Err(MIXED.to_owned()),
                Some((id, hex_text)) => {
                    let id = id.trim();
                    if !crate::ids::is_key_id(id) {
                        return Err(format!(
                            "bad key id `{id}`: 1-100 letters, digits, `.`, `_` or `-`"
                        ));
                    }
                    let key = parse_public_key(hex_text).map_err(|e| format!("key `{id}`: {e}"))?;
                    if keys.by_id.insert(id.to_owned(), key).is_some() {
                        return Err(format!("key id `{id}` is given twice"));
                    }
                }
            }
        }
        if keys.any.is_none() && keys.by_id.is_empty() {
            return Err("no public key given".to_owned());
        }
        Ok(keys)
    }

    /// Adds `key` under `id`; an id already trusted is an error.
    pub fn with(mut self, id: &str, key: VerifyingKey) -> Result<Self, String> {
        if self.by_id.contains_key(id) {
            return Err(format!("key id `{id}` is trusted already"));
        }
        self.by_id.insert(id.to_owned(), key);
        Ok(self)
    }

    /// The same keys with the key trusted for every id (if any) named `id` instead: a
    /// single-key set becomes the first entry of a list.
    pub fn naming_any(mut self, id: &str) -> Self {
        if let Some(k) = self.any.take() {
            self.by_id.entry(id.to_owned()).or_insert(k);
        }
        self
    }

    /// The key that verifies a checkpoint naming `key_id`.
    pub fn get(&self, key_id: &str) -> Option<&VerifyingKey> {
        self.by_id.get(key_id).or(self.any.as_ref())
    }

    /// The key ids trusted by name (empty when one key is trusted for every id).
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.by_id.keys().map(String::as_str)
    }

    /// `id=hex` lines (a bare hex first, if any): what [`TrustedKeys::parse`] reads back.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if let Some(k) = &self.any {
            out.push_str(&hex::encode(k.to_bytes()));
            out.push('\n');
        }
        for (id, k) in &self.by_id {
            out.push_str(&format!("{id}={}\n", hex::encode(k.to_bytes())));
        }
        out
    }
}

impl From<VerifyingKey> for TrustedKeys {
    fn from(key: VerifyingKey) -> Self {
        Self::any(key)
    }
}

impl From<&VerifyingKey> for TrustedKeys {
    fn from(key: &VerifyingKey) -> Self {
        Self::any(*key)
    }
}

impl From<&TrustedKeys> for TrustedKeys {
    fn from(keys: &TrustedKeys) -> Self {
        keys.clone()
    }
}

/// Parses a hex-encoded ed25519 public key.
pub fn parse_public_key(hex_text: &str) -> Result<VerifyingKey, String> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_text.trim(), &mut bytes)
        .map_err(|e| format!("public key must be 64 hex characters: {e}"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("not an ed25519 public key: {e}"))
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;
    use uuid::Uuid;

    use super::*;
    use crate::event::{Actor, EventMetadata};
    use crate::ids::{EventId, StreamName};

    fn history(tenant: TenantId, n: i64) -> Vec<RecordedEvent> {
        let mut out: Vec<RecordedEvent> = Vec::new();
        let mut heads: BTreeMap<String, (i64, [u8; 32])> = BTreeMap::new();
        let mut scratch = Vec::new();
        let mut prev_pos = 0;
        for i in 0..n {
            // Positions of this tenant interleave with another tenant's (gaps of 2).
            let position = 1 + i * 2;
            let stream = StreamName::parse(&format!("device-{}", i % 3)).unwrap();
            let (v, prev_hash) = heads
                .get(stream.as_str())
                .copied()
                .unwrap_or((0, GENESIS_HASH));
            let mut e = RecordedEvent {
                position,
                tenant_prev_position: prev_pos,
                tenant_id: tenant,
                stream: stream.clone(),
                version: v + 1,
                event_id: EventId::new_random(),
                event_type: "Polled".into(),
                schema_version: 1,
                payload: serde_json::json!({"i": i}),
                metadata: EventMetadata::for_command(Actor::system("test"), Uuid::new_v4()),
                recorded_at: OffsetDateTime::UNIX_EPOCH,
                prev_hash,
                hash: [0; 32],
            };
            e.hash = event_hash(&prev_hash, HashedFields::from(&e), &mut scratch);
            heads.insert(stream.as_str().to_owned(), (e.version, e.hash));
            prev_pos = position;
            out.push(e);
        }
        out
    }

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    fn checkpoints(tenant: TenantId, events: &[RecordedEvent]) -> Vec<Checkpoint> {
        let place = |seq, from_position, to_position, prev_digest| CheckpointPlace {
            tenant_id: tenant,
            seq,
            from_position,
            to_position,
            prev_digest,
        };
        let a = make_checkpoint(place(1, 1, 10, [0; 32]), &events[..5], "k1", &key());
        let b = make_checkpoint(place(2, 11, 20, a.digest), &events[5..10], "k1", &key());
        vec![a, b]
    }

    #[test]
    fn an_untouched_history_verifies() {
        let t = TenantId::new_random();
        let events = history(t, 12);
        let cps = checkpoints(t, &events);
        let report = verify_tenant_history(&events, &cps, key().verifying_key()).unwrap();
        assert_eq!(report.signed_through, 20);
        assert_eq!(report.last_position, 23);
    }

    #[test]
    fn each_kind_of_tampering_names_the_first_bad_position() {
        let t = TenantId::new_random();
        let events = history(t, 12);
        let cps = checkpoints(t, &events);
        let pk = key().verifying_key();

        let mut modified = events.clone();
        modified[4].payload = serde_json::json!({"i": 99});
        assert_eq!(
            verify_tenant_history(&modified, &cps, pk).unwrap_err(),
            Tamper::Modified { position: 9 }
        );

        let mut removed = events.clone();
        removed.remove(3);
        assert_eq!(
            verify_tenant_history(&removed, &cps, pk)
                .unwrap_err()
                .position(),
            7
        );

        let mut reordered = events.clone();
        reordered.swap(2, 3);
        assert_eq!(
            verify_tenant_history(&reordered, &cps, pk)
                .unwrap_err()
                .position(),
            5
        );

        // A naive copy at a new position: its hash covers the position.
        let mut inserted = events.clone();
        let mut extra = events[6].clone();
        extra.position = 14;
        inserted.insert(7, extra.clone());
        assert_eq!(
            verify_tenant_history(&inserted, &cps, pk)
                .unwrap_err()
                .position(),
            14
        );

        // A forger who recomputes the hash and links it to its predecessor: the successor
        // still refers past it.
        let mut forged = events.clone();
        extra.tenant_prev_position = 13;
        extra.hash = event_hash(
            &extra.prev_hash,
            HashedFields::from(&extra),
            &mut Vec::new(),
        );
        forged.insert(7, extra);
        assert_eq!(
            verify_tenant_history(&forged, &cps, pk)
                .unwrap_err()
                .position(),
            14
        );

        // Removing the tenant's newest signed event: only the checkpoint can tell.
        let truncated = events[..9].to_vec();
        let err = verify_tenant_history(&truncated, &cps, pk).unwrap_err();
        assert_eq!(err.position(), 19, "{err}");
    }

    #[test]
    fn a_forged_checkpoint_signature_is_refused() {
        let t = TenantId::new_random();
        let events = history(t, 12);
        let mut cps = checkpoints(t, &events);
        cps.truncate(1);
        let other = SigningKey::from_bytes(&[9u8; 32]).verifying_key();
        assert!(matches!(
            verify_tenant_history(&events, &cps, other),
            Err(Tamper::Checkpoint { .. })
        ));
    }

    /// Checkpoint 1 signed by key `k1`, checkpoint 2 by `k2` (a rotation between them).
    fn rotated(t: TenantId, events: &[RecordedEvent]) -> (Vec<Checkpoint>, SigningKey) {
        let place = |seq, from_position, to_position, prev_digest| CheckpointPlace {
            tenant_id: t,
            seq,
            from_position,
            to_position,
            prev_digest,
        };
        let k2 = SigningKey::from_bytes(&[8u8; 32]);
        let a = make_checkpoint(place(1, 1, 10, [0; 32]), &events[..5], "k1", &key());
        let b = make_checkpoint(place(2, 11, 20, a.digest), &events[5..10], "k2", &k2);
        (vec![a, b], k2)
    }

    #[test]
    fn checkpoints_of_rotated_keys_verify_by_their_key_id() {
        let t = TenantId::new_random();
        let events = history(t, 12);
        let (cps, k2) = rotated(t, &events);
        let both = TrustedKeys::by_id([
            ("k1".to_owned(), key().verifying_key()),
            ("k2".to_owned(), k2.verifying_key()),
        ]);
        let report = verify_tenant_history(&events, &cps, &both).unwrap();
        assert_eq!(report.signed_through, 20);
        // The text form reads back to the same keys.
        assert_eq!(TrustedKeys::parse(&both.to_text()).unwrap(), both);
        // Without the old key, the old checkpoint names the key id it needs.
        let new_only = TrustedKeys::by_id([("k2".to_owned(), k2.verifying_key())]);
        let err = verify_tenant_history(&events, &cps, &new_only).unwrap_err();
        assert!(matches!(err, Tamper::Checkpoint { seq: 1, .. }), "{err}");
        assert!(err.to_string().contains("key id `k1`"), "{err}");
        // Keys swapped between ids: the signatures do not verify.
        let swapped = TrustedKeys::by_id([
            ("k1".to_owned(), k2.verifying_key()),
            ("k2".to_owned(), key().verifying_key()),
        ]);
        let err = verify_tenant_history(&events, &cps, &swapped).unwrap_err();
        assert!(err.to_string().contains("bad signature"), "{err}");
        // A relabelled checkpoint (key id changed to the other trusted key) fails too.
        let mut relabelled = cps.clone();
        relabelled[1].key_id = "k1".to_owned();
        let err = verify_tenant_history(&events, &relabelled, &both).unwrap_err();
        assert!(matches!(err, Tamper::Checkpoint { seq: 2, .. }), "{err}");
    }

    #[test]
    fn trusted_keys_parse_a_bare_key_or_named_keys_and_refuse_mixtures() {
        let pk = hex::encode(key().verifying_key().to_bytes());
        let other = hex::encode(
            SigningKey::from_bytes(&[8u8; 32])
                .verifying_key()
                .to_bytes(),
        );
        let bare = TrustedKeys::parse(&format!(" {pk}\n")).unwrap();
        assert_eq!(bare.get("anything"), Some(&key().verifying_key()));
        let list = TrustedKeys::parse(&format!("# rotated 2026-12\na={pk},b={other}\n")).unwrap();
        assert_eq!(list.ids().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(list.get("c"), None);
        for (bad, why) in [
            (format!("{pk},a={other}"), "only entry"),
            (format!("a={pk}\n{other}"), "only entry"),
            (format!("a={pk},a={other}"), "twice"),
            (format!("a b={pk}"), "64 hex"),
            (format!("a/b={pk}"), "bad key id"),
            ("a=00".to_owned(), "key `a`"),
            ("# nothing\n".to_owned(), "no public key"),
        ] {
            let err = TrustedKeys::parse(&bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    /// Checkpoints 1-2 by k1, 3-4 by k2, 5-6 by k3, with hand-overs at 3 and 5.
    fn rotated_twice(t: TenantId, events: &[RecordedEvent]) -> (Vec<Checkpoint>, [SigningKey; 3]) {
        let keys = [
            key(),
            SigningKey::from_bytes(&[8u8; 32]),
            SigningKey::from_bytes(&[9u8; 32]),
        ];
        let ids = ["k1", "k2", "k3"];
        let at = time::OffsetDateTime::UNIX_EPOCH;
        let mut out: Vec<Checkpoint> = Vec::new();
        for seq in 1..=6i64 {
            let i = usize::try_from((seq - 1) / 2).unwrap();
            let n = usize::try_from(seq - 1).unwrap() * 2;
            let place = CheckpointPlace {
                tenant_id: t,
                seq,
                from_position: out.last().map_or(1, |c| c.body.to_position + 1),
                to_position: events[n + 1].position,
                prev_digest: out.last().map_or([0; 32], |c| c.digest),
            };
            let mut cp = make_checkpoint(place, &events[n..n + 2], ids[i], &keys[i]);
            if seq == 3 || seq == 5 {
                cp.handover = Some(Handover::sign(
                    ids[i - 1],
                    &keys[i - 1],
                    ids[i],
                    &keys[i],
                    at,
                ));
            }
            out.push(cp);
        }
        (out, keys)
    }

    fn bundle_keys(keys: &[SigningKey; 3]) -> BTreeMap<String, VerifyingKey> {
        ["k1", "k2", "k3"]
            .iter()
            .zip(keys)
            .map(|(id, k)| ((*id).to_owned(), k.verifying_key()))
            .collect()
    }

    fn verify_chain(
        events: &[RecordedEvent],
        cps: &[Checkpoint],
        keys: &BTreeMap<String, VerifyingKey>,
        pinned: &[PinnedKey],
    ) -> Result<VerifyReport, Tamper> {
        let mut v = HistoryVerifier::with_key_chain(cps, keys, pinned);
        for e in events {
            v.push(e)?;
        }
        v.finish()
    }

    #[test]
    fn keys_rotated_twice_chain_to_any_pinned_key_through_hand_overs() {
        let t = TenantId::new_random();
        let events = history(t, 14);
        let (cps, keys) = rotated_twice(t, &events);
        let by_id = bundle_keys(&keys);
        for pinned in [
            PinnedKey::Key(keys[0].verifying_key()),
            PinnedKey::Key(keys[2].verifying_key()),
            parse_pinned_key(&fingerprint(&keys[1].verifying_key())).unwrap(),
        ] {
            let report = verify_chain(&events, &cps, &by_id, &[pinned]).unwrap();
            assert_eq!((report.checkpoints, report.signed_through), (6, 23));
        }
        let uses = key_uses(&cps);
        assert_eq!(
            uses.iter()
                .map(|u| (u.key_id.as_str(), u.first_seq, u.last_seq))
                .collect::<Vec<_>>(),
            [("k1", 1, Some(2)), ("k2", 3, Some(4)), ("k3", 5, None)]
        );
        // A key that signs nothing here and was never handed over is not trusted.
        let stranger = SigningKey::from_bytes(&[11u8; 32]).verifying_key();
        let err = verify_chain(&events, &cps, &by_id, &[PinnedKey::Key(stranger)]).unwrap_err();
        assert!(matches!(err, Tamper::Checkpoint { seq: 1, .. }), "{err}");
        assert!(err.to_string().contains("neither a pinned key"), "{err}");
    }

    #[test]
    fn a_retired_key_signing_again_or_a_missing_hand_over_fails_at_that_checkpoint() {
        let t = TenantId::new_random();
        let events = history(t, 14);
        let (cps, keys) = rotated_twice(t, &events);
        let by_id = bundle_keys(&keys);
        let pinned = [PinnedKey::Key(keys[0].verifying_key())];
        // Checkpoint 6 re-signed by k1, retired at checkpoint 3 (say its key leaked).
        let mut retired = cps.clone();
        let place = CheckpointPlace {
            tenant_id: t,
            seq: 6,
            from_position: cps[5].body.from_position,
            to_position: cps[5].body.to_position,
            prev_digest: cps[4].digest,
        };
        retired[5] = make_checkpoint(place, &events[10..12], "k1", &keys[0]);
        let err = verify_chain(&events, &retired, &by_id, &pinned).unwrap_err();
        assert!(matches!(err, Tamper::Checkpoint { seq: 6, .. }), "{err}");
        assert_eq!(err.position(), cps[5].body.from_position);
        assert!(err.to_string().contains("outside its validity"), "{err}");
        // The hand-over removed: the key change is not trusted.
        let mut bare = cps.clone();
        bare[2].handover = None;
        let err = verify_chain(&events, &bare, &by_id, &pinned).unwrap_err();
        assert!(matches!(err, Tamper::Checkpoint { seq: 3, .. }), "{err}");
        assert!(err.to_string().contains("without a hand-over"), "{err}");
        // A hand-over whose new-key signature was forged.
        let mut forged = cps.clone();
        if let Some(h) = forged[4].handover.as_mut() {
            h.to_signature = h.from_signature.clone();
        }
        let err = verify_chain(&events, &forged, &by_id, &pinned).unwrap_err();
        assert!(matches!(err, Tamper::Checkpoint { seq: 5, .. }), "{err}");
        assert!(
            err.to_string().contains("not signed by the new key"),
            "{err}"
        );
    }

    #[test]
    fn a_range_starting_at_a_checkpoint_links_to_the_prior_checkpoints_heads() {
        let t = TenantId::new_random();
        let events = history(t, 14);
        let (cps, keys) = rotated_twice(t, &events);
        let by_id = bundle_keys(&keys);
        let pinned = [PinnedKey::Key(keys[2].verifying_key())];
        let from = cps[3].body.from_position;
        let tail: Vec<_> = events
            .iter()
            .filter(|e| e.position >= from)
            .cloned()
            .collect();
        let mut v = HistoryVerifier::with_key_chain(&cps, &by_id, &pinned);
        v.start_at(from);
        for e in &tail {
            v.push(e).unwrap();
        }
        assert_eq!(v.finish().unwrap().signed_through, 23);
        // Dropping the range's first event is caught against the prior checkpoint.
        let mut v = HistoryVerifier::with_key_chain(&cps, &by_id, &pinned);
        v.start_at(from);
        let err = tail[1..].iter().try_for_each(|e| v.push(e)).unwrap_err();
        assert_eq!(err.position(), tail[0].position, "{err}");
    }
}
