//! The client address used for per-IP limits: the socket peer, unless the peer
//! is a configured trusted proxy, in which case `X-Forwarded-For` is read from
//! the right, skipping trusted proxies, and the first other address is the
//! client. A header from an untrusted peer is ignored, so it cannot be spoofed.

use std::net::IpAddr;

use ipnet::IpNet;
use poem::Request;

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
