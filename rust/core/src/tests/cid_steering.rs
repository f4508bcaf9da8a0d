//! Connection IDs for worker steering, seen on the wire: the CIDs a server with a
//! `CidConfig` issues carry its server id and worker octet where the BPF program and a
//! QUIC-LB load balancer read them, and workers that share a secret share the
//! stateless-reset key (a worker that gets another's packets resets the connection at
//! once; one with another secret finds the CID invalid and stays silent).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use crate::cid::{CidConfig, CidKey, DecodedCid};
use crate::{Identity, Server, ServerOptions};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;

/// A UDP relay between one client and a server it can be pointed at anew; it keeps
/// every client-to-server datagram.
struct Relay {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

async fn relay(target: SocketAddr) -> Relay {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let target = Arc::new(Mutex::new(target));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let client = Arc::new(Mutex::new(None::<SocketAddr>));
    let addr = front.local_addr().unwrap();
    {
        let (front, back, target, seen, client) = (
            front.clone(),
            back.clone(),
            target.clone(),
            seen.clone(),
            client.clone(),
        );
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                *client.lock().unwrap() = Some(from);
                seen.lock().unwrap().push(buf[..n].to_vec());
                let to = *target.lock().unwrap();
                let _ = back.send_to(&buf[..n], to).await;
            }
        });
    }
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, _)) = back.recv_from(&mut buf).await {
            let to = *client.lock().unwrap();
            if let Some(to) = to {
                let _ = front.send_to(&buf[..n], to).await;
            }
        }
    });
    Relay { addr, target, seen }
}

fn server(cid: CidConfig, identity: &Identity) -> Server {
    Server::bind(
        ServerOptions {
            bind: vec!["127.0.0.1:0".parse().unwrap()],
            cid: Some(cid),
            ..Default::default()
        },
        identity,
    )
    .unwrap()
}

fn client_for(identity: &Identity) -> crate::Client {
    crate::Client::new(crate::ClientOptions {
        trust: crate::TrustMode::CertificateHashes(vec![identity.certificate_hash()]),
        ..Default::default()
    })
    .unwrap()
}

async fn write_something(conn: &quinn::Connection) {
    let mut s = conn.open_uni().await.unwrap();
    // 0x21 is a reserved HTTP/3 stream type (0x1f * N + 0x21), which servers ignore.
    let _ = s.write_all(&[0x21; 200]).await;
}

#[tokio::test]
async fn short_header_packets_carry_the_server_id_and_worker_octet() {
    let identity = Identity::development().unwrap();
    let cid = CidConfig::new(&[0x0a, 0x0b], 1, 5, Some(&[7u8; 32])).unwrap();
    let (len, worker_at) = (cid.cid_len(), cid.worker_offset().unwrap());
    assert_eq!(worker_at, 3, "the worker octet ends the QUIC-LB server ID");
    let server = server(cid.clone(), &identity);
    let relay = relay(server.local_addrs()[0]).await;
    let client = client_for(&identity);
    let conn = common::raw_connection(&client, relay.addr).await;
    write_something(&conn).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = relay.seen.lock().unwrap().clone();
    let short: Vec<_> = seen.iter().filter(|p| p[0] & 0x80 == 0).collect();
    assert!(
        !short.is_empty(),
        "no short-header packet in {} seen",
        seen.len()
    );
    for packet in short {
        let dcid = &packet[1..1 + len];
        assert!(cid.validate(dcid), "a CID of the group: {dcid:02x?}");
        assert_eq!(dcid[0] >> 5, 1, "config rotation");
        assert_eq!(usize::from(dcid[0] & 0x1f), len - 1, "length self-encoding");
        assert_eq!(&dcid[1..3], &[0x0a, 0x0b], "server id");
        // The BPF program reads the worker at UDP payload offset 1 + worker_offset.
        assert_eq!(packet[1 + worker_at], 5, "worker octet");
    }
    // Long-header packets after the server's first reply carry its CID too (the
    // BPF program steers those by the worker octet as well).
    let long_ours = seen
        .iter()
        .filter(|p| p[0] & 0x80 != 0 && usize::from(p[5]) == len)
        .filter(|p| cid.validate(&p[6..6 + len]))
        .count();
    assert!(long_ours > 0, "no long-header packet to the server's CID");
}

#[tokio::test]
async fn short_header_packets_carry_encrypted_cids_a_load_balancer_with_the_key_decodes() {
    let identity = Identity::development().unwrap();
    let key = [0x42u8; 16];
    let cid = CidConfig::new(&[0x0a, 0x0b], 1, 5, Some(&[7u8; 32]))
        .unwrap()
        .with_key(&key)
        .unwrap();
    assert_eq!((cid.cid_len(), cid.worker_offset()), (17, None));
    let server = server(cid.clone(), &identity);
    let relay = relay(server.local_addrs()[0]).await;
    let client = client_for(&identity);
    let conn = common::raw_connection(&client, relay.addr).await;
    write_something(&conn).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = relay.seen.lock().unwrap().clone();
    let short: Vec<_> = seen.iter().filter(|p| p[0] & 0x80 == 0).collect();
    assert!(!short.is_empty(), "no short-header packet");
    let lb = CidKey::new(&key).unwrap();
    let wrong = CidKey::new(&[0x43u8; 16]).unwrap();
    for packet in &short {
        let dcid = &packet[1..18];
        assert!(cid.validate(dcid), "a CID of the group: {dcid:02x?}");
        assert_eq!(dcid[0], (1 << 5) | 16, "config rotation 1, length 16");
        assert_eq!(
            CidConfig::decode_encrypted(dcid, 2, &lb),
            Some(DecodedCid {
                config_id: 1,
                server_id: vec![0x0a, 0x0b],
                worker: 5
            })
        );
        let other = CidConfig::decode_encrypted(dcid, 2, &wrong).unwrap();
        assert_ne!((other.server_id, other.worker), (vec![0x0a, 0x0b], 5));
    }
    assert!(
        short.iter().any(|p| p[2..4] != [0x0a, 0x0b]),
        "the server id is not in the clear"
    );
}

/// Connects through a relay to worker A, then points the relay at worker B (as the
/// kernel would on a steering mistake): how the connection ends says whether B took
/// A's CIDs as its group's. `key`: both workers' CIDs encrypted with it.
async fn moved_to_other_worker(
    secret_b: [u8; 32],
    key: Option<[u8; 16]>,
) -> Result<quinn::ConnectionError, ()> {
    let identity = Identity::development().unwrap();
    let keyed = |cid: CidConfig| match key {
        Some(key) => cid.with_key(&key).unwrap(),
        None => cid,
    };
    let a = server(
        keyed(CidConfig::new(&[1], 0, 0, Some(&[3u8; 32])).unwrap()),
        &identity,
    );
    let b = server(
        keyed(CidConfig::new(&[1], 0, 1, Some(&secret_b)).unwrap()),
        &identity,
    );
    let relay = relay(a.local_addrs()[0]).await;
    let client = client_for(&identity);
    let conn = common::raw_connection(&client, relay.addr).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    *relay.target.lock().unwrap() = b.local_addrs()[0];
    write_something(&conn).await;
    tokio::time::timeout(Duration::from_secs(2), conn.closed())
        .await
        .map_err(|_| ())
}

#[tokio::test]
async fn workers_sharing_a_secret_reset_each_others_connections() {
    let ended = moved_to_other_worker([3u8; 32], None).await;
    assert!(
        matches!(ended, Ok(quinn::ConnectionError::Reset)),
        "expected a stateless reset, got {ended:?}"
    );
}

#[tokio::test]
async fn encrypted_workers_sharing_a_secret_and_key_reset_each_others_connections() {
    let ended = moved_to_other_worker([3u8; 32], Some([6u8; 16])).await;
    assert!(
        matches!(ended, Ok(quinn::ConnectionError::Reset)),
        "expected a stateless reset, got {ended:?}"
    );
}

#[tokio::test]
async fn a_worker_with_another_secret_does_not_reset() {
    let ended = moved_to_other_worker([4u8; 32], None).await;
    assert!(ended.is_err(), "the connection ended: {ended:?}");
}

#[tokio::test]
async fn an_encrypted_worker_with_another_secret_does_not_reset() {
    let ended = moved_to_other_worker([4u8; 32], Some([6u8; 16])).await;
    assert!(ended.is_err(), "the connection ended: {ended:?}");
}

/// quinn's `Endpoint::rebind` through `Client::rebind`: a session on a server issuing
/// these CIDs carries on from new local ports (path validation on the server, CIDs
/// the generator validates as its own).
#[tokio::test]
async fn a_session_survives_the_client_moving_to_new_ports() {
    let identity = Identity::development().unwrap();
    let server = server(
        CidConfig::new(&[0x0c], 0, 2, Some(&[5u8; 32])).unwrap(),
        &identity,
    );
    let url = format!("https://127.0.0.1:{}/", server.local_addrs()[0].port());
    let echo = tokio::spawn(async move {
        let session = server.accept().await.unwrap();
        session.accept(vec![], None).await.unwrap();
        while let Ok(d) = session.read_datagram().await {
            if session.send_datagram(&d).is_err() {
                break;
            }
        }
        server
    });
    let client = client_for(&identity);
    let session = client.connect(&url, vec![], None).await.unwrap();
    let mut ports = std::collections::HashSet::new();
    for round in 0u8..5 {
        let now = client.rebind().unwrap();
        assert_eq!(now.len(), 1);
        assert!(ports.insert(now[0].port()), "a new port each time");
        // A datagram can be lost while the path is validated: send until one returns.
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                session.send_datagram(&[round; 32]).unwrap();
                let got =
                    tokio::time::timeout(Duration::from_millis(200), session.read_datagram()).await;
                // An echo of an earlier round's resend may come first: skip it.
                match got {
                    Ok(Ok(d)) if d[..] == [round; 32] => break,
                    _ => {}
                }
            }
        })
        .await
        .expect("no echo after the move");
    }
    session.close(0, "").await.unwrap();
    drop(echo);
}
