//! What a connection ID costs to issue and to check, plaintext (HMAC-SHA256 MAC) against
//! encrypted (QUIC-LB single-pass AES-128): `cargo run --release -p fastwt-core
//! --example cid_encode`. Rounds alternate the two so that a busy machine slows both
//! alike; prints the median and range of ns per CID over the rounds, and their ratio.

use fastwt_core::CidConfig;
use std::hint::black_box;
use std::time::Instant;

const ROUNDS: usize = 15;
const PER_ROUND: u32 = 200_000;

fn per_cid(f: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..PER_ROUND {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(PER_ROUND)
}

fn summary(name: &str, mut ns: Vec<f64>) -> f64 {
    ns.sort_by(f64::total_cmp);
    let median = ns[ns.len() / 2];
    println!(
        "{name:<28} median {median:7.1} ns  range {:7.1} .. {:7.1}",
        ns[0],
        ns[ns.len() - 1]
    );
    median
}

fn main() -> Result<(), fastwt_core::Error> {
    let secret = [7u8; 32];
    let plain = CidConfig::new(&[0x0a, 0x0b], 0, 1, Some(&secret))?;
    let encrypted = CidConfig::new(&[0x0a, 0x0b], 0, 1, Some(&secret))?.with_key(&[9u8; 16])?;
    let (plain_cid, encrypted_cid) = (plain.generate(), encrypted.generate());
    let mut results: [Vec<f64>; 4] = Default::default();
    for _ in 0..ROUNDS {
        results[0].push(per_cid(&mut || {
            black_box(plain.generate());
        }));
        results[1].push(per_cid(&mut || {
            black_box(encrypted.generate());
        }));
        results[2].push(per_cid(&mut || {
            black_box(plain.validate(black_box(&plain_cid)));
        }));
        results[3].push(per_cid(&mut || {
            black_box(encrypted.validate(black_box(&encrypted_cid)));
        }));
    }
    let [g_plain, g_enc, v_plain, v_enc] = results;
    println!("{ROUNDS} alternating rounds of {PER_ROUND} CIDs, server id 2 octets");
    let a = summary("generate, plaintext (MAC)", g_plain);
    let b = summary("generate, encrypted (AES)", g_enc);
    let c = summary("validate, plaintext (MAC)", v_plain);
    let d = summary("validate, encrypted (AES)", v_enc);
    println!(
        "ratio encrypted/plaintext: generate {:.2}, validate {:.2}",
        b / a,
        d / c
    );
    Ok(())
}
