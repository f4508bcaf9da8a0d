use crate::error::{Error, Result};
use std::net::SocketAddr;

/// Binds a UDP socket for an endpoint with large kernel buffers.
///
/// One socket carries every session of an endpoint, so a server tick that sends a
/// datagram to 1,000 sessions lands as a burst of 1,000 packets in the client's (or,
/// the other way, the server's) socket. With the kernel's default receive buffer
/// (~208 KiB, a few hundred packets) the tail of such a burst is dropped. The kernel
/// caps the size at `net.core.rmem_max` / `wmem_max`; failing to enlarge is not an error.
pub(crate) fn bind_udp(addr: SocketAddr, buffer_bytes: usize) -> Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)
        .map_err(|e| Error::Io(format!("cannot bind {addr}: {e}")))?;
    enlarge_buffers(&socket, buffer_bytes);
    Ok(socket)
}

/// Enlarges the kernel buffers of a socket made elsewhere (an inherited one), as
/// [`bind_udp`] does; failing to is not an error.
pub(crate) fn enlarge_buffers(socket: &std::net::UdpSocket, buffer_bytes: usize) {
    if buffer_bytes > 0 {
        if let Ok(state) = quinn::udp::UdpSocketState::new(socket.into()) {
            let _ = state.set_recv_buffer_size(socket.into(), buffer_bytes);
            let _ = state.set_send_buffer_size(socket.into(), buffer_bytes);
        }
    }
}

/// Makes a quinn endpoint on a socket from [`bind_udp`]. Must run inside tokio.
pub(crate) fn endpoint(
    socket: std::net::UdpSocket,
    server: Option<quinn::ServerConfig>,
    config: quinn::EndpointConfig,
) -> Result<quinn::Endpoint> {
    let runtime = quinn::default_runtime().ok_or_else(|| {
        Error::Config("no async runtime: endpoints must be made inside tokio".into())
    })?;
    Ok(quinn::Endpoint::new(config, server, socket, runtime)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_enlarged_up_to_the_kernel_cap() {
        let socket = bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        let state = quinn::udp::UdpSocketState::new((&socket).into()).unwrap();
        let size = state.recv_buffer_size((&socket).into()).unwrap();
        assert!(
            size > 212_992 || size >= (1 << 20),
            "receive buffer stayed at {size}"
        );
    }
}
