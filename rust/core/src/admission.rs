//! Admission control: how many sessions and handshakes a server holds at once, in all and
//! per client IP address, across every address it is bound to.
//!
//! A connection takes a [`Ticket`] when its first packet arrives (a handshake), turns it
//! into a session ticket when its CONNECT request is read, and gives it back when the
//! session ends (or the connection fails before). Counting tickets, not connections per
//! endpoint, is what makes `max_sessions` one limit for N bound addresses and keeps
//! connections that never send CONNECT from counting as sessions.

use crate::sync::lock;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The limits, from [`crate::ServerOptions`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_sessions: usize,
    pub(crate) max_sessions_per_ip: Option<usize>,
    pub(crate) max_handshakes: usize,
}

#[derive(Default)]
struct Counts {
    sessions: usize,
    handshakes: usize,
    /// Sessions and handshakes of each client address.
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a connection or request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `max_sessions` reached.
    Sessions,
    /// `max_sessions_per_ip` reached for this address.
    PerIp,
    /// `max_handshakes` connections are between their first packet and CONNECT.
    Handshakes,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Sessions => "max_sessions reached",
            Refusal::PerIp => "max_sessions_per_ip reached",
            Refusal::Handshakes => "max_handshakes reached",
        })
    }
}

/// The server's counts and limits; shared by its accept loops.
pub(crate) struct Admission {
    limits: Limits,
    counts: Mutex<Counts>,
}

impl Admission {
    pub(crate) fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Whether `max_sessions` and the address's `max_sessions_per_ip` leave room for one
    /// more (a handshake, which may become a session, or a pooled session).
    fn session_room(&self, c: &Counts, ip: IpAddr) -> Result<(), Refusal> {
        if c.sessions >= self.limits.max_sessions {
            return Err(Refusal::Sessions);
        }
        let of_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
        if self
            .limits
            .max_sessions_per_ip
            .is_some_and(|max| of_ip >= max)
        {
            return Err(Refusal::PerIp);
        }
        Ok(())
    }

    /// Admits a new connection's handshake, or says why not.
    pub(crate) fn begin_handshake(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refusal> {
        let ip = ip.to_canonical();
        let mut c = lock(&self.counts);
        if c.handshakes >= self.limits.max_handshakes {
            return Err(Refusal::Handshakes);
        }
        // Only sessions count against max_sessions: connections that never send CONNECT
        // are bounded by max_handshakes (and request_timeout), not by taking session room.
        self.session_room(&c, ip)?;
        c.handshakes += 1;
        *c.per_ip.entry(ip).or_insert(0) += 1;
        Ok(Ticket {
            admission: self.clone(),
            ip,
            session: false,
        })
    }

    /// Admits one more session on a connection that already holds one (pooling): it
    /// counts against `max_sessions` and the address's `max_sessions_per_ip` like a
    /// connection's first session.
    pub(crate) fn admit_session(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refusal> {
        let ip = ip.to_canonical();
        let mut c = lock(&self.counts);
        self.session_room(&c, ip)?;
        c.sessions += 1;
        *c.per_ip.entry(ip).or_insert(0) += 1;
        Ok(Ticket {
            admission: self.clone(),
            ip,
            session: true,
        })
    }

    /// Sessions held now (requested or accepted).
    pub(crate) fn sessions(&self) -> usize {
        lock(&self.counts).sessions
    }

    /// Handshakes in flight now.
    pub(crate) fn handshakes(&self) -> usize {
        lock(&self.counts).handshakes
    }
}

/// One connection's place in the counts, given back on drop.
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    ip: IpAddr,
    session: bool,
}

impl Ticket {
    /// The connection sent its CONNECT request: it now holds a session, if there is room.
    /// On refusal the ticket is given back.
    pub(crate) fn into_session(mut self) -> Result<Ticket, Refusal> {
        let mut c = lock(&self.admission.counts);
        if c.sessions >= self.admission.limits.max_sessions {
            return Err(Refusal::Sessions);
        }
        c.handshakes -= 1;
        c.sessions += 1;
        drop(c);
        self.session = true;
        Ok(self)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut c = lock(&self.admission.counts);
        if self.session {
            c.sessions -= 1;
        } else {
            c.handshakes -= 1;
        }
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(max_sessions: usize, per_ip: Option<usize>, handshakes: usize) -> Arc<Admission> {
        Admission::new(Limits {
            max_sessions,
            max_sessions_per_ip: per_ip,
            max_handshakes: handshakes,
        })
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn sessions_count_once_and_come_back_on_drop() {
        let adm = admission(2, None, 10);
        let one = adm.begin_handshake(A).unwrap().into_session().unwrap();
        let two = adm.begin_handshake(B).unwrap();
        let three = adm.begin_handshake(B).unwrap();
        let two = two.into_session().unwrap();
        assert_eq!(adm.begin_handshake(B).err(), Some(Refusal::Sessions));
        assert_eq!(three.into_session().err(), Some(Refusal::Sessions));
        assert_eq!((adm.sessions(), adm.handshakes()), (2, 0));
        drop(one);
        assert_eq!(adm.sessions(), 1);
        drop(two);
        assert_eq!((adm.sessions(), lock(&adm.counts).per_ip.len()), (0, 0));
    }

    #[test]
    fn pooled_sessions_count_in_all_and_per_ip() {
        let adm = admission(3, Some(2), 10);
        let first = adm.begin_handshake(A).unwrap().into_session().unwrap();
        let second = adm.admit_session(A).unwrap();
        assert_eq!(adm.admit_session(A).err(), Some(Refusal::PerIp));
        let other = adm.admit_session(B).unwrap();
        assert_eq!(adm.admit_session(B).err(), Some(Refusal::Sessions));
        assert_eq!(adm.sessions(), 3);
        drop((first, second, other));
        assert_eq!((adm.sessions(), lock(&adm.counts).per_ip.len()), (0, 0));
    }

    #[test]
    fn per_ip_and_handshake_limits_are_separate() {
        let adm = admission(100, Some(2), 3);
        let _a1 = adm.begin_handshake(A).unwrap();
        let _a2 = adm.begin_handshake(A).unwrap();
        assert_eq!(adm.begin_handshake(A).err(), Some(Refusal::PerIp));
        // An IPv4-mapped IPv6 address is the same client.
        let mapped = IpAddr::V6(std::net::Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert_eq!(adm.begin_handshake(mapped).err(), Some(Refusal::PerIp));
        let _b1 = adm.begin_handshake(B).unwrap();
        assert_eq!(adm.begin_handshake(B).err(), Some(Refusal::Handshakes));
    }
}
