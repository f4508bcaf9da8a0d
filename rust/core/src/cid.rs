//! Connection IDs that say where a connection lives: the QUIC-LB formats
//! (draft-ietf-quic-load-balancers-21) whose server ID ends with a worker octet, a MAC
//! (or, encrypted, a tag) any worker of the group can check, and a stateless-reset key
//! shared by every worker.
//!
//! Plaintext (the default). Layout of every CID (`S` = `server_id.len()`, `L` = `S + 11`):
//!
//! ```text
//! octet 0        config rotation (3 bits) | L - 1 (5 bits: the length self-encoding,
//!                the length of the CID after this octet)
//! 1 ..= S        the configured server id (0..=9 octets; none: config rotation
//!                0b111, "unroutable", which the draft asks to self-encode its length)
//! S + 1          the worker octet: the last octet of the QUIC-LB server ID, which is
//!                S + 1 octets long (draft 21, section 7.2: a server may reserve server
//!                ID octets to tell its processes apart)
//! S + 2 ..       nonce (9 octets): 6 random, then 3 of HMAC-SHA256 over every other
//!                octet of the CID
//! ```
//!
//! The worker octet sits at the fixed offset `S + 1`, so a classic BPF program on the
//! `SO_REUSEPORT` group reads it from a short-header packet (`S + 2` bytes into the UDP
//! payload) and steers the packet to the worker's socket whatever the client's address
//! is now. A load balancer configured with server ID length `S + 1` routes on the
//! configured id and the worker octet together (one entry per worker, or a prefix
//! match).
//!
//! Encrypted ([`CidConfig::with_key`]): the QUIC-LB single-pass mode. The nonce is
//! `15 - S` octets, so that the QUIC-LB server ID (`S + 1`) and the nonce make one AES
//! block, and every CID is 17 octets:
//!
//! ```text
//! octet 0        config rotation | 16 (as above; S >= 1: a key needs a server id)
//! 1 ..= 16       AES-128-ECB(key, server id (S) | worker (1) | tag (T) | counter (C))
//!                C = min(15 - S, 8), T = 15 - S - C (0..=6)
//! ```
//!
//! The counter starts at a random value and grows by one per CID, so no nonce repeats
//! under one key until `2^(8 C)` CIDs (C >= 6: 2^48, nine years at a million CIDs a
//! second; draft 21, "Connection ID Entropy", recommends exactly this), which random
//! nonces of 6 octets would not promise (a repeat every ~2^24). The worker octet in the
//! plaintext keeps the workers' nonces apart. The tag (from the group secret) and the
//! server id are what `validate` checks after decrypting, in place of the MAC: a forged
//! CID passes with odds `2^-8(S + T)`, at most 2^-56. The worker octet is hidden from the
//! BPF program: encrypted CIDs cannot be steered inside one machine. The four-pass
//! mode (other lengths) is not built.

use crate::error::{Error, Result};
// ring has no raw block-cipher API (only AEADs), and QUIC-LB needs AES-128-ECB on one
// block: RustCrypto's `aes` does that, in constant time (AES-NI where present).
use aes::cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes128;
use quinn::crypto::HmacKey;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Octets of the nonce: random, then MAC.
pub const NONCE_LEN: usize = RANDOM_LEN + MAC_LEN;
const RANDOM_LEN: usize = 6;
const MAC_LEN: usize = 3;
/// Longest configured server id: with the worker octet and the nonce, at most 19
/// octets follow the first (QUIC-LB; RFC 9000 caps a CID at 20).
pub const MAX_SERVER_ID_LEN: usize = 19 - 1 - NONCE_LEN;
/// Config rotation value of CIDs no load balancer can route (no server id configured).
pub const UNROUTABLE_CONFIG: u8 = 0b111;
/// Source of the random part if the system generator ever fails.
static FALLBACK: AtomicU64 = AtomicU64::new(1);
/// Octets of a QUIC-LB key (AES-128).
pub const KEY_LEN: usize = 16;
/// Length of every encrypted CID: the first octet and one AES block.
pub const ENCRYPTED_CID_LEN: usize = 1 + BLOCK_LEN;
const BLOCK_LEN: usize = 16;
/// Octets of the nonce's counter at most (a u64).
const COUNTER_LEN: usize = 8;

/// A QUIC-LB key: AES-128, for the single-pass encrypted CIDs (what a load balancer
/// configured with the key decrypts).
#[derive(Clone)]
pub struct CidKey(Aes128);

impl std::fmt::Debug for CidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CidKey(..)")
    }
}

impl CidKey {
    /// The key from its 16 octets; any other length is a configuration error.
    pub fn new(key: &[u8]) -> Result<Self> {
        Aes128::new_from_slice(key).map(Self).map_err(|_| {
            Error::Config(format!(
                "a QUIC-LB connection ID key is {KEY_LEN} octets (AES-128), got {}",
                key.len()
            ))
        })
    }

    /// AES-128-ECB of one block, in place.
    pub fn encrypt_block(&self, block: &mut [u8; BLOCK_LEN]) {
        self.0.encrypt_block(GenericArray::from_mut_slice(block));
    }

    /// The inverse of [`encrypt_block`](Self::encrypt_block).
    pub fn decrypt_block(&self, block: &mut [u8; BLOCK_LEN]) {
        self.0.decrypt_block(GenericArray::from_mut_slice(block));
    }
}

/// What an encrypted configuration adds.
struct Encryption {
    key: CidKey,
    /// The nonce's next counter value (random at the start).
    counter: AtomicU64,
}

/// What the CIDs of one server (or one worker of a group) carry, and the group's keys.
#[derive(Clone)]
pub struct CidConfig {
    config_id: u8,
    server_id: Vec<u8>,
    worker: u8,
    keys: Arc<Keys>,
    encryption: Option<Arc<Encryption>>,
}

struct Keys {
    /// Keys the 3-octet MAC of each CID.
    mac: hmac::Key,
    /// The key quinn derives stateless-reset tokens from.
    reset: hmac::Key,
    /// Octets of the tag in encrypted CIDs (the first `T` of them).
    tag: [u8; 32],
}

impl std::fmt::Debug for CidConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys stay out of logs.
        f.debug_struct("CidConfig")
            .field("config_id", &self.config_id)
            .field("server_id", &self.server_id)
            .field("worker", &self.worker)
            .field("encrypted", &self.encryption.is_some())
            .finish_non_exhaustive()
    }
}

/// The fields read back from a CID of this format (what a load balancer would use:
/// `server_id` and `worker` together are its QUIC-LB server ID).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedCid {
    /// The 3 config rotation bits (0b111: unroutable, no server id).
    pub config_id: u8,
    /// The configured server id octets.
    pub server_id: Vec<u8>,
    /// The worker octet (the QUIC-LB server ID's last).
    pub worker: u8,
}

impl CidConfig {
    /// CIDs naming `server_id` (0..=9 octets; empty: unroutable by QUIC-LB load
    /// balancers, config rotation 0b111) under config rotation `config_id` (0..=6) and
    /// `worker`. Every worker of a group must get the same `secret` (16 octets or
    /// more): it keys the CIDs' MAC and the stateless-reset tokens, so any worker can
    /// reset a connection of another, and checks the CIDs of all. `None` draws a random
    /// secret (one process alone).
    pub fn new(server_id: &[u8], config_id: u8, worker: u8, secret: Option<&[u8]>) -> Result<Self> {
        if server_id.len() > MAX_SERVER_ID_LEN {
            return Err(Error::Config(format!(
                "server_id is {} octets; at most {MAX_SERVER_ID_LEN} fit in a connection ID \
                 next to the worker octet and the {NONCE_LEN}-octet nonce",
                server_id.len()
            )));
        }
        let config_id = if server_id.is_empty() {
            UNROUTABLE_CONFIG
        } else if config_id < UNROUTABLE_CONFIG {
            config_id
        } else {
            return Err(Error::Config(format!(
                "config rotation must be 0..=6 (7 means unroutable), got {config_id}"
            )));
        };
        let secret = match secret {
            Some(s) if s.len() < 16 => {
                return Err(Error::Config(format!(
                    "the workers' shared secret must be 16 octets or more, got {}",
                    s.len()
                )))
            }
            Some(s) => s.to_vec(),
            None => {
                let mut s = vec![0u8; 32];
                SystemRandom::new()
                    .fill(&mut s)
                    .map_err(|_| Error::Config("no system randomness for the CID key".into()))?;
                s
            }
        };
        let root = hmac::Key::new(hmac::HMAC_SHA256, &secret);
        let derive =
            |label: &[u8]| hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&root, label).as_ref());
        let mut tag = [0u8; 32];
        tag.copy_from_slice(hmac::sign(&root, b"fastwt connection id tag").as_ref());
        Ok(Self {
            config_id,
            server_id: server_id.to_vec(),
            worker,
            keys: Arc::new(Keys {
                mac: derive(b"fastwt connection id mac"),
                reset: derive(b"fastwt stateless reset"),
                tag,
            }),
            encryption: None,
        })
    }

    /// The same configuration with CIDs in QUIC-LB's single-pass encrypted form under
    /// `key` (16 octets, the load balancers' key; see the module text for the layout).
    /// Needs a server id: CIDs without one are unroutable, and a load balancer has no
    /// server to find in them.
    pub fn with_key(mut self, key: &[u8]) -> Result<Self> {
        let key = CidKey::new(key)?;
        if self.server_id.is_empty() {
            return Err(Error::Config(
                "a connection ID key needs a server id (1..=9 octets): encrypted CIDs are \
                 for a load balancer that routes on the server id"
                    .into(),
            ));
        }
        let mut start = [0u8; 8];
        SystemRandom::new()
            .fill(&mut start)
            .map_err(|_| Error::Config("no system randomness for the CID nonce".into()))?;
        self.encryption = Some(Arc::new(Encryption {
            key,
            counter: AtomicU64::new(u64::from_le_bytes(start)),
        }));
        Ok(self)
    }

    /// Whether CIDs are encrypted (QUIC-LB single pass).
    pub fn is_encrypted(&self) -> bool {
        self.encryption.is_some()
    }

    /// Octets of the tag and of the counter in an encrypted CID's nonce.
    fn tag_and_counter_len(&self) -> (usize, usize) {
        let nonce = BLOCK_LEN - 1 - self.server_id.len();
        let counter = nonce.min(COUNTER_LEN);
        (nonce - counter, counter)
    }

    /// Length of every CID issued.
    pub fn cid_len(&self) -> usize {
        if self.encryption.is_some() {
            ENCRYPTED_CID_LEN
        } else {
            1 + self.server_id.len() + 1 + NONCE_LEN
        }
    }

    /// Offset of the worker octet in a CID (the BPF program reads it there); `None` when
    /// the CIDs are encrypted, which hides it.
    pub fn worker_offset(&self) -> Option<usize> {
        match self.encryption {
            Some(_) => None,
            None => Some(1 + self.server_id.len()),
        }
    }

    /// The worker octet this configuration writes.
    pub fn worker(&self) -> u8 {
        self.worker
    }

    fn first_octet(&self) -> u8 {
        // cid_len() <= 20, so L - 1 fits the 5 low bits.
        (self.config_id << 5) | ((self.cid_len() - 1) as u8 & 0x1f)
    }

    fn mac(&self, cid_without_mac: &[&[u8]]) -> [u8; MAC_LEN] {
        let mut ctx = hmac::Context::with_key(&self.keys.mac);
        for part in cid_without_mac {
            ctx.update(part);
        }
        let tag = ctx.sign();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&tag.as_ref()[..MAC_LEN]);
        out
    }

    /// A fresh CID (plaintext: random part from the system generator; encrypted: the
    /// next counter value).
    pub fn generate(&self) -> Vec<u8> {
        if let Some(enc) = &self.encryption {
            return self.generate_encrypted(enc);
        }
        let mut random = [0u8; RANDOM_LEN];
        if SystemRandom::new().fill(&mut random).is_err() {
            // quinn's trait has no error path; a counter keeps CIDs distinct (quinn
            // draws again on a collision, which equal CIDs would make endless).
            let n = FALLBACK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            random.copy_from_slice(&n.to_le_bytes()[..RANDOM_LEN]);
        }
        let mut cid = Vec::with_capacity(self.cid_len());
        cid.push(self.first_octet());
        cid.extend_from_slice(&self.server_id);
        cid.push(self.worker);
        cid.extend_from_slice(&random);
        let mac = self.mac(&[&cid]);
        cid.extend_from_slice(&mac);
        cid
    }

    fn generate_encrypted(&self, enc: &Encryption) -> Vec<u8> {
        let s = self.server_id.len();
        let (tag, counter) = self.tag_and_counter_len();
        let n = enc.counter.fetch_add(1, Ordering::Relaxed).to_be_bytes();
        let mut block = [0u8; BLOCK_LEN];
        block[..s].copy_from_slice(&self.server_id);
        block[s] = self.worker;
        block[s + 1..s + 1 + tag].copy_from_slice(&self.keys.tag[..tag]);
        block[s + 1 + tag..].copy_from_slice(&n[COUNTER_LEN - counter..]);
        enc.key.encrypt_block(&mut block);
        let mut cid = Vec::with_capacity(ENCRYPTED_CID_LEN);
        cid.push(self.first_octet());
        cid.extend_from_slice(&block);
        cid
    }

    /// Whether `cid` was issued by a worker of this group (same length, config, server
    /// id and secret, and key if any; any worker octet). False positives: one in 2^24
    /// (plaintext), one in 2^56 or fewer (encrypted).
    pub fn validate(&self, cid: &[u8]) -> bool {
        if cid.len() != self.cid_len() || cid[0] != self.first_octet() {
            return false;
        }
        if let Some(enc) = &self.encryption {
            let s = self.server_id.len();
            let (tag, _) = self.tag_and_counter_len();
            let mut block = [0u8; BLOCK_LEN];
            block.copy_from_slice(&cid[1..]);
            enc.key.decrypt_block(&mut block);
            return block[..s] == self.server_id[..]
                && block[s + 1..s + 1 + tag] == self.keys.tag[..tag];
        }
        if cid[1..1 + self.server_id.len()] != self.server_id[..] {
            return false;
        }
        let (signed, mac) = cid.split_at(cid.len() - MAC_LEN);
        // Constant time is not needed: the MAC only spares resets for forged CIDs.
        self.mac(&[signed]) == mac
    }

    /// Reads a CID of this format whose configured server id has `server_id_len`
    /// octets, as a load balancer configured for it would (its QUIC-LB server ID is
    /// those octets and the worker octet); `None` when the length does not fit.
    pub fn decode(cid: &[u8], server_id_len: usize) -> Option<DecodedCid> {
        if cid.len() != 1 + server_id_len + 1 + NONCE_LEN {
            return None;
        }
        Some(DecodedCid {
            config_id: cid[0] >> 5,
            server_id: cid[1..1 + server_id_len].to_vec(),
            worker: cid[1 + server_id_len],
        })
    }

    /// Reads an encrypted CID (QUIC-LB single pass) whose configured server id has
    /// `server_id_len` (1..=9) octets, as a load balancer with `key` does: decrypts the
    /// block after the first octet and takes the server id and the worker octet from
    /// its front. `None` when the length does not fit. With another key the octets
    /// come out random (a load balancer cannot tell; it finds no such server).
    pub fn decode_encrypted(cid: &[u8], server_id_len: usize, key: &CidKey) -> Option<DecodedCid> {
        if cid.len() != ENCRYPTED_CID_LEN || !(1..=MAX_SERVER_ID_LEN).contains(&server_id_len) {
            return None;
        }
        let mut block = [0u8; BLOCK_LEN];
        block.copy_from_slice(&cid[1..]);
        key.decrypt_block(&mut block);
        Some(DecodedCid {
            config_id: cid[0] >> 5,
            server_id: block[..server_id_len].to_vec(),
            worker: block[server_id_len],
        })
    }

    /// The quinn endpoint configuration: these CIDs and the group's reset key.
    pub fn endpoint_config(&self) -> quinn::EndpointConfig {
        let reset: Arc<dyn HmacKey> = Arc::new(self.keys.reset.clone());
        let mut config = quinn::EndpointConfig::new(reset);
        let this = self.clone();
        config.cid_generator(move || Box::new(Generator(this.clone())));
        config
    }
}

/// quinn's CID source for one endpoint.
struct Generator(CidConfig);

impl quinn::ConnectionIdGenerator for Generator {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        quinn::ConnectionId::new(&self.0.generate())
    }

    fn validate(
        &self,
        cid: &quinn::ConnectionId,
    ) -> std::result::Result<(), quinn_proto::InvalidCid> {
        if self.0.validate(cid) {
            Ok(())
        } else {
            Err(quinn_proto::InvalidCid)
        }
    }

    fn cid_len(&self) -> usize {
        self.0.cid_len()
    }

    fn cid_lifetime(&self) -> Option<std::time::Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_follows_quic_lb_plaintext() {
        let cfg = CidConfig::new(&[0xab, 0xcd], 2, 7, Some(&[1u8; 32])).unwrap();
        let cid = cfg.generate();
        assert_eq!(cid.len(), 13);
        assert_eq!(cid[0] >> 5, 2, "config rotation bits");
        assert_eq!(
            usize::from(cid[0] & 0x1f),
            cid.len() - 1,
            "length self-encoding"
        );
        assert_eq!(&cid[1..3], &[0xab, 0xcd]);
        assert_eq!(cfg.worker_offset(), Some(3));
        assert_eq!(cid[3], 7);
        assert_eq!(
            CidConfig::decode(&cid, 2),
            Some(DecodedCid {
                config_id: 2,
                server_id: vec![0xab, 0xcd],
                worker: 7
            })
        );
        assert_ne!(cfg.generate(), cid, "random part");
    }

    #[test]
    fn no_server_id_is_unroutable() {
        let cfg = CidConfig::new(&[], 3, 1, None).unwrap();
        let cid = cfg.generate();
        assert_eq!(cid.len(), 2 + NONCE_LEN);
        assert_eq!(cid[0] >> 5, UNROUTABLE_CONFIG);
        assert_eq!(cid[1], 1, "the worker octet follows the first");
    }

    #[test]
    fn every_worker_of_a_group_validates_every_cid_of_the_group() {
        let secret = [9u8; 32];
        let a = CidConfig::new(&[1], 0, 0, Some(&secret)).unwrap();
        let b = CidConfig::new(&[1], 0, 1, Some(&secret)).unwrap();
        let other = CidConfig::new(&[1], 0, 0, Some(&[8u8; 32])).unwrap();
        let cid = a.generate();
        assert!(a.validate(&cid) && b.validate(&cid));
        assert!(!other.validate(&cid), "another secret");
        let mut forged = cid.clone();
        forged[3] ^= 1;
        assert!(
            !b.validate(&forged),
            "a changed random octet breaks the MAC"
        );
        let mut moved = cid.clone();
        *moved.last_mut().unwrap() = 1;
        assert!(
            !b.validate(&moved),
            "the worker octet is covered by the MAC"
        );
        assert!(!b.validate(&cid[1..]), "length");
    }

    #[test]
    fn bad_configs_are_refused() {
        assert!(CidConfig::new(&[0; MAX_SERVER_ID_LEN + 1], 0, 0, None).is_err());
        assert!(CidConfig::new(&[0; MAX_SERVER_ID_LEN], 0, 0, None).is_ok());
        assert!(CidConfig::new(&[1], 7, 0, None).is_err());
        assert!(CidConfig::new(&[1], 0, 0, Some(&[0; 15])).is_err());
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// draft-ietf-quic-load-balancers-21, appendix "Load Balancer Test Vectors",
    /// encrypted CIDs: the single-pass example (8-octet server id, 8-octet nonce).
    const VECTOR_KEY: &str = "8f95f09245765f80256934e50c66207f";
    const VECTOR_SID: &str = "ed793a51d49b8f5f";
    const VECTOR_NONCE: &str = "ee080dbf48c0d1e5";
    const VECTOR_CID: &str = "504dd2d05a7b0de9b2b9907afb5ecf8cc3";

    #[test]
    fn single_pass_matches_the_drafts_test_vector() {
        let key = CidKey::new(&hex(VECTOR_KEY)).unwrap();
        let mut block = [0u8; 16];
        block[..8].copy_from_slice(&hex(VECTOR_SID));
        block[8..].copy_from_slice(&hex(VECTOR_NONCE));
        key.encrypt_block(&mut block);
        assert_eq!(block[..], hex(VECTOR_CID)[1..]);
        key.decrypt_block(&mut block);
        assert_eq!(block[..8], hex(VECTOR_SID)[..]);
        // A load balancer configured with server ID length 8 is one with a 7-octet
        // server id and the worker octet here.
        assert_eq!(
            CidConfig::decode_encrypted(&hex(VECTOR_CID), 7, &key),
            Some(DecodedCid {
                config_id: 2,
                server_id: hex("ed793a51d49b8f"),
                worker: 0x5f,
            })
        );
    }

    #[test]
    fn the_generator_issues_the_drafts_test_vector() {
        // Server id 7 octets + worker 0x5f: the nonce is 8 octets, all counter (no tag),
        // so the counter at the vector's nonce must give the vector's CID.
        let sid = hex(VECTOR_SID);
        let cfg = CidConfig::new(&sid[..7], 2, sid[7], None)
            .unwrap()
            .with_key(&hex(VECTOR_KEY))
            .unwrap();
        let nonce = u64::from_be_bytes(hex(VECTOR_NONCE).try_into().unwrap());
        let enc = cfg.encryption.as_ref().unwrap();
        enc.counter.store(nonce, Ordering::Relaxed);
        assert_eq!(cfg.generate(), hex(VECTOR_CID));
        assert!(cfg.validate(&hex(VECTOR_CID)));
        assert_ne!(cfg.generate(), hex(VECTOR_CID), "the counter moved on");
    }

    #[test]
    fn encrypted_cids_round_trip_for_every_server_id_length() {
        let key = hex(VECTOR_KEY);
        let lb_key = CidKey::new(&key).unwrap();
        let wrong = CidKey::new(&[0x55; 16]).unwrap();
        for len in 1..=MAX_SERVER_ID_LEN {
            let sid: Vec<u8> = (0..len as u8).map(|i| 0xa0 + i).collect();
            for worker in [0u8, 1, 63, 255] {
                let cfg = CidConfig::new(&sid, 1, worker, Some(&[2u8; 32]))
                    .unwrap()
                    .with_key(&key)
                    .unwrap();
                assert_eq!(cfg.cid_len(), 17);
                assert_eq!(cfg.worker_offset(), None);
                let (a, b) = (cfg.generate(), cfg.generate());
                assert_ne!(a, b, "a nonce per CID");
                for cid in [&a, &b] {
                    assert_eq!(cid.len(), 17);
                    assert_eq!(cid[0], (1 << 5) | 16, "config rotation 1, length 16");
                    assert!(cfg.validate(cid));
                    let got = CidConfig::decode_encrypted(cid, len, &lb_key).unwrap();
                    assert_eq!(
                        (got.config_id, &got.server_id, got.worker),
                        (1, &sid, worker)
                    );
                    let other = CidConfig::decode_encrypted(cid, len, &wrong).unwrap();
                    assert_ne!(
                        (other.server_id, other.worker),
                        (sid.clone(), worker),
                        "another key finds no such server"
                    );
                    if len >= 3 {
                        // (Shorter ids show up by chance too often to assert on.)
                        assert_ne!(&cid[1..1 + len], &sid[..], "the server id is hidden");
                    }
                }
            }
        }
    }

    #[test]
    fn encrypted_nonces_count_up_from_a_random_start() {
        let key = CidKey::new(&[7; 16]).unwrap();
        let cfg = CidConfig::new(&[1, 2, 3], 0, 4, Some(&[1u8; 32]))
            .unwrap()
            .with_key(&[7; 16])
            .unwrap();
        let plain = |cid: &[u8]| {
            let mut block = [0u8; 16];
            block.copy_from_slice(&cid[1..]);
            key.decrypt_block(&mut block);
            block
        };
        // S = 3: nonce 12 octets, 4 of tag then 8 of counter.
        let (a, b) = (plain(&cfg.generate()), plain(&cfg.generate()));
        assert_eq!(a[..4], [1, 2, 3, 4], "server id and worker");
        assert_eq!(a[4..8], b[4..8], "the tag is fixed");
        let counter = |p: &[u8; 16]| u64::from_be_bytes(p[8..].try_into().unwrap());
        assert_eq!(counter(&b), counter(&a).wrapping_add(1));
        let again = CidConfig::new(&[1, 2, 3], 0, 4, Some(&[1u8; 32]))
            .unwrap()
            .with_key(&[7; 16])
            .unwrap();
        assert_ne!(
            counter(&plain(&again.generate())),
            counter(&b).wrapping_add(1),
            "a new configuration starts elsewhere"
        );
    }

    #[test]
    fn encrypted_cids_validate_across_the_group_only() {
        let (secret, key) = ([9u8; 32], [3u8; 16]);
        let keyed = |worker: u8, secret: &[u8; 32], key: &[u8; 16]| {
            CidConfig::new(&[1], 0, worker, Some(secret))
                .unwrap()
                .with_key(key)
                .unwrap()
        };
        let (a, b) = (keyed(0, &secret, &key), keyed(1, &secret, &key));
        let cid = a.generate();
        assert!(
            a.validate(&cid) && b.validate(&cid),
            "any worker of the group"
        );
        assert!(
            !keyed(0, &[8u8; 32], &key).validate(&cid),
            "another secret (tag)"
        );
        assert!(!keyed(0, &secret, &[4u8; 16]).validate(&cid), "another key");
        let plain = CidConfig::new(&[1], 0, 0, Some(&secret)).unwrap();
        assert!(!plain.validate(&cid) && !a.validate(&plain.generate()));
        let mut forged = cid.clone();
        forged[5] ^= 1;
        assert!(!b.validate(&forged), "a changed octet decrypts to garbage");
    }

    #[test]
    fn bad_keys_are_refused() {
        for len in [0, 15, 17, 32] {
            let err = CidConfig::new(&[1], 0, 0, None)
                .unwrap()
                .with_key(&vec![0; len])
                .unwrap_err();
            assert!(err.to_string().contains("16 octets"), "{err}");
        }
        let err = CidConfig::new(&[], 0, 0, None)
            .unwrap()
            .with_key(&[0; 16])
            .unwrap_err();
        assert!(err.to_string().contains("server id"), "{err}");
        let key = CidKey::new(&[0; 16]).unwrap();
        assert_eq!(CidConfig::decode_encrypted(&[0x10; 17], 0, &key), None);
        assert_eq!(CidConfig::decode_encrypted(&[0x10; 17], 10, &key), None);
        assert_eq!(CidConfig::decode_encrypted(&[0x10; 16], 3, &key), None);
    }
}
