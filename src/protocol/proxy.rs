//! PROXY protocol v1 and v2 prefix parsing (haproxy.org/download/2.6/doc/proxy-protocol.txt).
//!
//! A listener behind a load balancer may require each connection to start with a PROXY
//! header naming the real client. This module only reads bytes: it returns `Ok(None)` while the
//! header is incomplete, the client address (or `Local` for a proxy's own health check) with
//! the bytes consumed once complete, and an error as soon as the bytes cannot be a valid
//! header. It never reads past [`MAX_PROXY_HEADER_LEN`] bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Longest header accepted: v1 is at most 107 bytes; v2 carries 16 bytes plus up to 216 of
/// addresses for the families we read, and we allow TLVs up to this total.
pub const MAX_PROXY_HEADER_LEN: usize = 536;

/// The v2 signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8] = b"PROXY ";
const V1_MAX_LEN: usize = 107;

/// What a complete header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyHeader {
    /// A connection relayed for this client.
    Proxied {
        /// The original client's address.
        source: SocketAddr,
    },
    /// The proxy speaking for itself (v2 LOCAL, v1 UNKNOWN): a health check; the connection's
    /// own peer address stands.
    Local,
}

/// Why bytes are not a PROXY header we accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyError {
    /// Neither the v1 nor the v2 signature.
    NotProxy,
    /// A v1 line that does not parse.
    BadV1,
    /// A v2 header with an unknown version, command or address family, or a bad length.
    BadV2,
    /// Longer than [`MAX_PROXY_HEADER_LEN`].
    TooLong,
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProxyError::NotProxy => "the connection did not start with a PROXY protocol header",
            ProxyError::BadV1 => "malformed PROXY protocol v1 header",
            ProxyError::BadV2 => "malformed or unsupported PROXY protocol v2 header",
            ProxyError::TooLong => "PROXY protocol header too long",
        })
    }
}

impl std::error::Error for ProxyError {}

/// Parses a PROXY header at the start of `buf`.
///
/// # Errors
/// [`ProxyError`] as soon as the bytes seen cannot start a valid header.
pub fn parse_proxy_header(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let seen = buf.len().min(V2_SIGNATURE.len());
    if buf.get(..seen) == V2_SIGNATURE.get(..seen) {
        return if buf.len() < V2_SIGNATURE.len() {
            Ok(None)
        } else {
            parse_v2(buf)
        };
    }
    let seen = buf.len().min(V1_PREFIX.len());
    if buf.get(..seen) == V1_PREFIX.get(..seen) {
        return if buf.len() < V1_PREFIX.len() {
            Ok(None)
        } else {
            parse_v1(buf)
        };
    }
    Err(ProxyError::NotProxy)
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let window = buf.get(..buf.len().min(V1_MAX_LEN)).unwrap_or(buf);
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX_LEN {
            Err(ProxyError::TooLong)
        } else {
            Ok(None)
        };
    };
    let line = std::str::from_utf8(window.get(..end).unwrap_or_default())
        .map_err(|_| ProxyError::BadV1)?;
    let mut parts = line.split(' ');
    let (Some("PROXY"), Some(family)) = (parts.next(), parts.next()) else {
        return Err(ProxyError::BadV1);
    };
    let consumed = end + 2;
    if family == "UNKNOWN" {
        return Ok(Some((ProxyHeader::Local, consumed)));
    }
    let fields: Vec<&str> = parts.collect();
    let [source, _destination, source_port, _destination_port] = fields[..] else {
        return Err(ProxyError::BadV1);
    };
    let ip: IpAddr = match family {
        "TCP4" => IpAddr::V4(source.parse().map_err(|_| ProxyError::BadV1)?),
        "TCP6" => IpAddr::V6(source.parse().map_err(|_| ProxyError::BadV1)?),
        _ => return Err(ProxyError::BadV1),
    };
    let port: u16 = source_port.parse().map_err(|_| ProxyError::BadV1)?;
    Ok(Some((
        ProxyHeader::Proxied {
            source: SocketAddr::new(ip, port),
        },
        consumed,
    )))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let Some(fixed) = buf.get(..16).and_then(|b| <&[u8; 16]>::try_from(b).ok()) else {
        return Ok(None);
    };
    let (version_command, family) = (fixed[12], fixed[13]);
    if version_command >> 4 != 2 {
        return Err(ProxyError::BadV2);
    }
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    let total = 16 + len;
    if total > MAX_PROXY_HEADER_LEN {
        return Err(ProxyError::TooLong);
    }
    let command = version_command & 0x0F;
    if command > 1 {
        return Err(ProxyError::BadV2);
    }
    let Some(addresses) = buf.get(16..total) else {
        return Ok(None);
    };
    if command == 0 {
        // LOCAL: a health check from the proxy itself; addresses, if any, are ignored.
        return Ok(Some((ProxyHeader::Local, total)));
    }
    let source = match family {
        // TCP over IPv4: source address, destination address, source port, destination port.
        0x11 => {
            let a = addresses
                .get(..12)
                .and_then(|b| <&[u8; 12]>::try_from(b).ok())
                .ok_or(ProxyError::BadV2)?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([a[8], a[9]]))
        }
        0x21 => {
            let a = addresses
                .get(..36)
                .and_then(|b| <&[u8; 36]>::try_from(b).ok())
                .ok_or(ProxyError::BadV2)?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(a.get(..16).unwrap_or(&[0; 16]));
            let ip = Ipv6Addr::from(octets);
            SocketAddr::new(IpAddr::V6(ip), u16::from_be_bytes([a[32], a[33]]))
        }
        // UNSPEC with PROXY: the proxy does not know the source; keep the connection's own.
        0x00 => return Ok(Some((ProxyHeader::Local, total))),
        _ => return Err(ProxyError::BadV2),
    };
    Ok(Some((ProxyHeader::Proxied { source }, total)))
}

/// An IP network (`10.0.0.0/8`, `::1`, `127.0.0.1`) for `trusted_proxies`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `ADDR` or `ADDR/PREFIX`.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(text: &str) -> Result<IpNet, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: prefix must be 0 to {max}"))?,
        };
        Ok(IpNet { addr, prefix })
    }

    /// True if `ip` is inside this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
        out.extend_from_slice(addresses);
        out
    }

    #[test]
    fn v1_tcp4_gives_the_source_address_and_the_bytes_used() {
        let header = b"PROXY TCP4 192.0.2.1 198.51.100.2 5555 7400\r\nrest";
        let (parsed, used) = parse_proxy_header(header).unwrap().unwrap();
        assert_eq!(
            parsed,
            ProxyHeader::Proxied {
                source: "192.0.2.1:5555".parse().unwrap()
            }
        );
        assert_eq!(&header[used..], b"rest");
    }

    #[test]
    fn v1_tcp6_and_unknown() {
        let header = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n";
        let (parsed, _) = parse_proxy_header(header).unwrap().unwrap();
        assert_eq!(
            parsed,
            ProxyHeader::Proxied {
                source: "[2001:db8::1]:1".parse().unwrap()
            }
        );
        let (parsed, used) = parse_proxy_header(b"PROXY UNKNOWN\r\n").unwrap().unwrap();
        assert_eq!((parsed, used), (ProxyHeader::Local, 15));
    }

    #[test]
    fn v2_proxy_tcp4_and_local() {
        let mut addresses = vec![192, 0, 2, 1, 198, 51, 100, 2];
        addresses.extend_from_slice(&5555u16.to_be_bytes());
        addresses.extend_from_slice(&7400u16.to_be_bytes());
        let header = v2(1, 0x11, &addresses);
        let (parsed, used) = parse_proxy_header(&header).unwrap().unwrap();
        assert_eq!(
            parsed,
            ProxyHeader::Proxied {
                source: "192.0.2.1:5555".parse().unwrap()
            }
        );
        assert_eq!(
            used, 28,
            "the 28 bytes HAProxy's send-proxy-v2 writes for TCP4"
        );
        let local = v2(0, 0x00, &[]);
        assert_eq!(
            parse_proxy_header(&local).unwrap(),
            Some((ProxyHeader::Local, 16))
        );
    }

    #[test]
    fn every_prefix_of_a_valid_header_is_incomplete_not_an_error() {
        let v1 = b"PROXY TCP4 192.0.2.1 198.51.100.2 5555 7400\r\n".to_vec();
        let v2 = v2(1, 0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
        for header in [v1, v2] {
            for cut in 0..header.len() {
                assert_eq!(parse_proxy_header(&header[..cut]), Ok(None), "cut at {cut}");
            }
        }
    }

    #[test]
    fn junk_oversized_and_unsupported_headers_are_refused() {
        assert_eq!(
            parse_proxy_header(b"\x00\x00\x00\x10"),
            Err(ProxyError::NotProxy)
        );
        assert_eq!(
            parse_proxy_header(b"GET / HTTP/1.1\r\n"),
            Err(ProxyError::NotProxy)
        );
        assert_eq!(
            parse_proxy_header(b"PROXY TCP4 nonsense\r\n"),
            Err(ProxyError::BadV1)
        );
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert_eq!(parse_proxy_header(&long), Err(ProxyError::TooLong));
        let mut huge = v2(1, 0x11, &[]);
        huge[14..16].copy_from_slice(&1000u16.to_be_bytes());
        assert_eq!(parse_proxy_header(&huge), Err(ProxyError::TooLong));
        let mut version3 = v2(1, 0x11, &[0; 12]);
        version3[12] = 0x31;
        assert_eq!(parse_proxy_header(&version3), Err(ProxyError::BadV2));
        assert_eq!(
            parse_proxy_header(&v2(1, 0x11, &[0; 4])),
            Err(ProxyError::BadV2)
        );
    }

    #[test]
    fn networks_match_their_addresses_only() {
        let net = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.9.9.9".parse().unwrap()));
        let one = IpNet::parse("::1").unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!(!one.contains("127.0.0.1".parse().unwrap()));
        assert!(IpNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(IpNet::parse("10.0.0.0/33").is_err());
        assert!(IpNet::parse("example.com").is_err());
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = parse_proxy_header(&bytes);
            let mut with_sig = V2_SIGNATURE.to_vec();
            with_sig.extend_from_slice(&bytes);
            let _ = parse_proxy_header(&with_sig);
            let mut with_v1 = V1_PREFIX.to_vec();
            with_v1.extend_from_slice(&bytes);
            let _ = parse_proxy_header(&with_v1);
        }
    }
}
