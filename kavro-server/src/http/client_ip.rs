//! The client address used for per-IP limits: the socket peer, unless the peer
//! is a configured trusted proxy, in which case `X-Forwarded-For` is read from
//! the right, skipping trusted proxies, and the first other address is the
//! client. A header from an untrusted peer is ignored, so it cannot be spoofed.
//!
//! Per-IP limits and the login lockout count a client by its network
//! ([`ClientPrefixes`]): an IPv6 host usually holds a whole /64 and can pick
//! any address in it, so counting single IPv6 addresses would not limit it.

use std::net::IpAddr;

use ipnet::IpNet;
use poem::Request;

/// The prefix lengths that make one client for per-IP limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientPrefixes {
    pub v4: u8,
    pub v6: u8,
}

impl Default for ClientPrefixes {
    fn default() -> Self {
        Self { v4: 32, v6: 64 }
    }
}

impl ClientPrefixes {
    /// The network `ip` is counted in, e.g. `2001:db8:1:2::/64`. Lengths past
    /// the address size are clamped (the config refuses them anyway).
    pub fn network(self, ip: IpAddr) -> IpNet {
        let len = match ip {
            IpAddr::V4(_) => self.v4.min(32),
            IpAddr::V6(_) => self.v6.min(128),
        };
        IpNet::new(ip, len).map_or_else(|_| IpNet::from(ip), |net| net.trunc())
    }

    /// The limiter subject for a client: its network, or `unknown` when the
    /// request has no socket address (all such requests share one bucket).
    pub fn subject(self, ip: Option<IpAddr>) -> String {
        ip.map_or_else(|| "unknown".to_owned(), |ip| self.network(ip).to_string())
    }
}

pub fn client_ip(req: &Request, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = req
        .remote_addr()
        .as_socket_addr()
        .map(|a| a.ip().to_canonical())?;
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    let mut client = peer;
    let hops = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Ok(addr) = hop.parse::<IpAddr>() else {
            // Garbage in the chain: stop at the last address we could trust.
            break;
        };
        client = addr.to_canonical();
        if !is_trusted(client, trusted) {
            break;
        }
    }
    Some(client)
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn request(peer: &str, xff: Option<&str>) -> Request {
        let mut builder = poem::http::Request::builder();
        if let Some(xff) = xff {
            builder = builder.header("x-forwarded-for", xff);
        }
        let (parts, ()) = builder.body(()).unwrap().into_parts();
        let peer: SocketAddr = peer.parse().unwrap();
        let parts = poem::RequestParts::from((
            parts,
            poem::web::LocalAddr::default(),
            poem::web::RemoteAddr(poem::Addr::SocketAddr(peer)),
            poem::http::uri::Scheme::HTTP,
        ));
        Request::from_parts(parts, poem::Body::empty())
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peer_header_is_ignored() {
        let req = request("203.0.113.9:5000", Some("1.2.3.4"));
        assert_eq!(
            client_ip(&req, &nets(&["10.0.0.0/8"])),
            "203.0.113.9".parse().ok()
        );
        assert_eq!(client_ip(&req, &[]), "203.0.113.9".parse().ok());
    }

    #[test]
    fn clients_are_counted_by_network() {
        let prefixes = ClientPrefixes::default();
        let subject = |ip: &str| prefixes.subject(ip.parse().ok());
        assert_eq!(subject("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(
            subject("2001:db8:1:2:ffff:ffff:ffff:fffe"),
            subject("2001:db8:1:2::1"),
            "one /64"
        );
        assert_ne!(subject("2001:db8:1:3::1"), subject("2001:db8:1:2::1"));
        assert_eq!(subject("198.51.100.7"), "198.51.100.7/32");
        assert_ne!(subject("198.51.100.8"), subject("198.51.100.7"));
        assert_eq!(prefixes.subject(None), "unknown");
        let wide = ClientPrefixes { v4: 24, v6: 48 };
        assert_eq!(
            wide.subject("198.51.100.200".parse().ok()),
            "198.51.100.0/24"
        );
        assert_eq!(
            wide.subject("2001:db8:1:ffff::9".parse().ok()),
            "2001:db8:1::/48"
        );
        let clamped = ClientPrefixes { v4: 99, v6: 200 };
        assert_eq!(clamped.subject("10.1.2.3".parse().ok()), "10.1.2.3/32");
        // An IPv4 client behind a dual-stack proxy arrives mapped; `client_ip`
        // makes it plain IPv4 before it is counted.
        let req = request("10.0.0.1:5000", Some("::ffff:198.51.100.7"));
        let ip = client_ip(&req, &nets(&["10.0.0.0/8"]));
        assert_eq!(prefixes.subject(ip), "198.51.100.7/32");
    }

    #[test]
    fn trusted_proxy_chain_is_walked_from_the_right() {
        let trusted = nets(&["10.0.0.0/8"]);
        // client spoofs 6.6.6.6; the real client 198.51.100.7 went through two proxies.
        let req = request("10.0.0.1:5000", Some("6.6.6.6, 198.51.100.7, 10.0.0.2"));
        assert_eq!(client_ip(&req, &trusted), "198.51.100.7".parse().ok());
        let req = request("10.0.0.1:5000", None);
        assert_eq!(client_ip(&req, &trusted), "10.0.0.1".parse().ok());
        let req = request("10.0.0.1:5000", Some("garbage"));
        assert_eq!(client_ip(&req, &trusted), "10.0.0.1".parse().ok());
    }
}
