//! Connection IDs that say where a connection lives: the QUIC-LB plaintext format
//! (draft-ietf-quic-load-balancers-21) whose server ID ends with a worker octet, a MAC
//! any worker of the group can check, and a stateless-reset key shared by every worker.
//!
//! Layout of every CID this module issues (`S` = `server_id.len()`, `L` = `S + 11`):
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
//! match). The encrypted QUIC-LB modes are not built: they would hide the worker octet
//! from the BPF program.

use crate::error::{Error, Result};
use quinn::crypto::HmacKey;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
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
static FALLBACK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// What the CIDs of one server (or one worker of a group) carry, and the group's keys.
#[derive(Clone)]
pub struct CidConfig {
    config_id: u8,
    server_id: Vec<u8>,
    worker: u8,
    keys: Arc<Keys>,
}

struct Keys {
    /// Keys the 3-octet MAC of each CID.
    mac: hmac::Key,
    /// The key quinn derives stateless-reset tokens from.
    reset: hmac::Key,
}

impl std::fmt::Debug for CidConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys stay out of logs.
        f.debug_struct("CidConfig")
            .field("config_id", &self.config_id)
            .field("server_id", &self.server_id)
            .field("worker", &self.worker)
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
        Ok(Self {
            config_id,
            server_id: server_id.to_vec(),
            worker,
            keys: Arc::new(Keys {
                mac: derive(b"fastwt connection id mac"),
                reset: derive(b"fastwt stateless reset"),
            }),
        })
    }

    /// Length of every CID issued.
    pub fn cid_len(&self) -> usize {
        1 + self.server_id.len() + 1 + NONCE_LEN
    }

    /// Offset of the worker octet in a CID (the BPF program reads it there).
    pub fn worker_offset(&self) -> usize {
        1 + self.server_id.len()
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

    /// A fresh CID (random part from the system generator).
    pub fn generate(&self) -> Vec<u8> {
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

    /// Whether `cid` was issued by a worker of this group (same length, config, server
    /// id and secret; any worker octet). False positives: one in 2^24.
    pub fn validate(&self, cid: &[u8]) -> bool {
        if cid.len() != self.cid_len() || cid[0] != self.first_octet() {
            return false;
        }
        if cid[1..self.worker_offset()] != self.server_id[..] {
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
        assert_eq!(cid[cfg.worker_offset()], 7);
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
}
