//! Sends Herald's spans (`herald_core::trace`) to the X-Ray daemon, which Lambda runs
//! beside every function when tracing is on and names in `AWS_XRAY_DAEMON_ADDRESS`.
//!
//! The daemon takes one document per UDP datagram, after a header line:
//! `{"format": "json", "version": 1}` then a newline then the segment document ("Sending
//! segment documents to the X-Ray daemon",
//! <https://docs.aws.amazon.com/xray/latest/devguide/xray-api-sendingdata.html#xray-api-daemon>).
//! A datagram is sent without waiting for anything, and one that cannot be sent is dropped
//! (and logged at debug): a trace is never worth a delivery.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};

use herald_core::trace::{Span, TraceHeader};
use serde_json::Value;

/// The daemon protocol's header line.
const HEADER: &[u8] = b"{\"format\": \"json\", \"version\": 1}\n";
/// A UDP datagram's payload is at most 64 KiB; a document larger than this is dropped.
const MAX_DATAGRAM: usize = 64 * 1024 - 8;

/// Where spans go: the daemon, or nowhere.
#[derive(Debug, Default)]
pub struct XRay {
    sink: Option<(UdpSocket, SocketAddr)>,
}

impl XRay {
    /// Tracing off: nothing is timed or sent.
    pub fn off() -> Self {
        Self { sink: None }
    }

    /// Spans sent to the daemon at `daemon`.
    pub fn to(daemon: SocketAddr) -> std::io::Result<Self> {
        let local: SocketAddr = if daemon.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)?;
        socket.set_nonblocking(true)?;
        Ok(Self {
            sink: Some((socket, daemon)),
        })
    }

    /// The daemon Lambda names in `AWS_XRAY_DAEMON_ADDRESS` (`host:port`, or
    /// `udp:host:port tcp:host:port`), if any; off when there is none or it cannot be used.
    pub fn from_address(address: Option<&str>) -> Self {
        let Some(address) = address.map(str::trim).filter(|a| !a.is_empty()) else {
            return Self::off();
        };
        match daemon_address(address).and_then(|addr| Self::to(addr).ok()) {
            Some(xray) => xray,
            None => {
                tracing::warn!(
                    address,
                    "AWS_XRAY_DAEMON_ADDRESS cannot be used; tracing is off"
                );
                Self::off()
            }
        }
    }

    /// Whether spans are sent anywhere.
    pub fn is_on(&self) -> bool {
        self.sink.is_some()
    }

    /// Whether a trace with `header` is recorded: the daemon is there and the trace is
    /// sampled.
    pub fn records(&self, header: Option<&TraceHeader>) -> bool {
        self.sink.is_some() && header.is_some_and(|h| h.sampled)
    }

    /// Sends `span` as a subsegment under `header`'s parent.
    pub fn send_subsegment(&self, span: &Span, header: &TraceHeader) {
        if let Some(doc) = span.subsegment_document(header) {
            self.send(&doc);
        }
    }

    /// Sends `span` as a segment of `header`'s trace, continuing its parent.
    pub fn send_segment(&self, span: &Span, header: &TraceHeader) {
        self.send(&span.segment_document(header));
    }

    fn send(&self, doc: &Value) {
        let Some((socket, daemon)) = &self.sink else {
            return;
        };
        let mut datagram = HEADER.to_vec();
        if serde_json::to_writer(&mut datagram, doc).is_err() {
            return;
        }
        if datagram.len() > MAX_DATAGRAM {
            tracing::debug!(bytes = datagram.len(), "a trace document too large to send");
            return;
        }
        if let Err(e) = socket.send_to(&datagram, daemon) {
            tracing::debug!(error = %e, "a trace document was not sent");
        }
    }
}

/// The UDP address in an `AWS_XRAY_DAEMON_ADDRESS` value.
fn daemon_address(value: &str) -> Option<SocketAddr> {
    let udp = value
        .split_whitespace()
        .find_map(|part| part.strip_prefix("udp:"))
        .unwrap_or_else(|| value.split_whitespace().next().unwrap_or_default());
    udp.to_socket_addrs().ok()?.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_forms_of_the_daemon_address() {
        assert_eq!(
            daemon_address("169.254.79.129:2000"),
            Some("169.254.79.129:2000".parse().unwrap())
        );
        assert_eq!(
            daemon_address("tcp:127.0.0.1:2001 udp:127.0.0.1:2002"),
            Some("127.0.0.1:2002".parse().unwrap())
        );
        assert_eq!(daemon_address("not an address"), None);
        assert!(!XRay::from_address(None).records(None));
        assert!(XRay::from_address(Some("nowhere")).sink.is_none());
    }

    #[test]
    fn sends_a_datagram_the_daemon_reads() {
        let daemon = UdpSocket::bind("127.0.0.1:0").unwrap();
        daemon
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let xray = XRay::to(daemon.local_addr().unwrap()).unwrap();
        let header: TraceHeader =
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
                .parse()
                .unwrap();
        assert!(xray.records(Some(&header)));
        assert!(!xray.records(Some(&TraceHeader {
            sampled: false,
            ..header.clone()
        })));
        let span = Span::begin("publish", chrono::Utc::now(), &mut rand::rng());
        xray.send_subsegment(&span, &header);
        let mut buf = [0u8; 65536];
        let n = daemon.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        let (first, doc) = text.split_once('\n').unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(first).unwrap(),
            serde_json::json!({"format": "json", "version": 1})
        );
        let doc: Value = serde_json::from_str(doc).unwrap();
        assert_eq!(doc["type"], "subsegment");
        assert_eq!(doc["id"], span.id);
        assert_eq!(doc["parent_id"], "53995c3f42cd8ad8");
    }
}
