//! A receiver over TLS speaking HTTP/2 that keeps every connection's bytes as they arrived
//! and decodes the header blocks in them itself, to show how each field was sent: from
//! the compression table, as a literal, or as a literal never to be indexed (RFC 7541,
//! section 6.2.3). No HTTP/2 server reports the last, and it is what keeps a secret out
//! of every compression table on the way (section 7.1.3).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use hyper::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::{JoinHandle, JoinSet};

use crate::receiver::{CertificateDer, Offer, listen_on_loopback, tls_acceptor};

/// The client's connection preface (RFC 9113, section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// How a header block carried a field (RFC 7541, section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Representation {
    /// From the compression table, or a literal not added to it.
    Other,
    /// A literal added to the connection's compression table.
    Indexing,
    /// A literal never to be indexed, on this hop or any after it.
    NeverIndexed,
}

/// One field of one request's header block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub value: String,
    pub representation: Representation,
}

/// The field `name` of a header block; panics, showing the block, when it has none.
pub fn field<'a>(block: &'a [Field], name: &str) -> &'a Field {
    block
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no {name} in {block:?}"))
}

type Recording = Arc<Mutex<Vec<u8>>>;

/// Answers every request 200 with no body (but the first, refused with
/// `REFUSED_STREAM` when asked), keeping what each connection was sent.
pub struct HeaderBlockReceiver {
    addr: std::net::SocketAddr,
    root: CertificateDer<'static>,
    connections: Arc<Mutex<Vec<Recording>>>,
    server: JoinHandle<()>,
}

impl HeaderBlockReceiver {
    pub async fn start() -> Self {
        Self::listen(false).await
    }

    /// One that refuses its first stream, as a server at its limit does: the sender
    /// sends that POST once more, on a new connection.
    pub async fn start_refusing_first() -> Self {
        Self::listen(true).await
    }

    async fn listen(refuse_first: bool) -> Self {
        let refused = Arc::new(std::sync::atomic::AtomicBool::new(!refuse_first));
        let listener = listen_on_loopback();
        let addr = listener.local_addr().expect("the receiver's address");
        let (acceptor, root) = tls_acceptor(Offer::Http2);
        let connections = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&connections);
        let server = tokio::spawn(async move {
            let mut open = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let recording = Recording::default();
                kept.lock().unwrap().push(Arc::clone(&recording));
                let acceptor = acceptor.clone();
                let refused = Arc::clone(&refused);
                open.spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let stream = Recorded {
                        inner: stream,
                        recording,
                    };
                    let Ok(mut connection) = h2::server::handshake(stream).await else {
                        return;
                    };
                    while let Some(Ok((_request, mut respond))) = connection.accept().await {
                        if !refused.swap(true, std::sync::atomic::Ordering::SeqCst) {
                            respond.send_reset(h2::Reason::REFUSED_STREAM);
                        } else {
                            let _ = respond.send_response(Response::new(()), true);
                        }
                    }
                });
            }
        });
        Self {
            addr,
            root,
            connections,
            server,
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}/webhooks", self.addr)
    }

    pub fn root(&self) -> &CertificateDer<'static> {
        &self.root
    }

    /// Each connection's requests, in the order they were sent, each its header block's
    /// fields in order.
    pub fn header_blocks(&self) -> Vec<Vec<Vec<Field>>> {
        let recordings: Vec<Recording> = self.connections.lock().unwrap().clone();
        recordings
            .iter()
            .map(|recording| decode_connection(&recording.lock().unwrap()))
            .collect()
    }
}

impl Drop for HeaderBlockReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The header blocks of one connection's bytes, decoded in order with one decoder, as
/// the compression table is the connection's. Panics on bytes that are not HTTP/2: a
/// test that reads them wants to know.
fn decode_connection(bytes: &[u8]) -> Vec<Vec<Field>> {
    let mut rest = bytes
        .strip_prefix(PREFACE)
        .expect("a connection that began with HTTP/2's preface");
    let mut decoder = httlib_hpack::Decoder::default();
    let mut blocks = Vec::new();
    let mut block: Vec<u8> = Vec::new();
    while rest.len() >= 9 {
        let length = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        let (kind, flags) = (rest[3], rest[4]);
        let Some(payload) = rest.get(9..9 + length) else {
            break; // A frame still arriving when the test looked.
        };
        rest = &rest[9 + length..];
        let fragment = match kind {
            HEADERS => {
                let padding = if flags & PADDED != 0 {
                    usize::from(payload[0])
                } else {
                    0
                };
                let start =
                    usize::from(flags & PADDED != 0) + if flags & PRIORITY != 0 { 5 } else { 0 };
                &payload[start..payload.len() - padding]
            }
            CONTINUATION => payload,
            _ => continue,
        };
        block.extend_from_slice(fragment);
        if flags & END_HEADERS != 0 {
            let mut fields = Vec::new();
            decoder
                .decode(&mut std::mem::take(&mut block), &mut fields)
                .expect("a header block HPACK decodes");
            blocks.push(fields.into_iter().map(decoded).collect());
        }
    }
    blocks
}

fn decoded((name, value, flags): (Vec<u8>, Vec<u8>, u8)) -> Field {
    let representation = if flags & httlib_hpack::Decoder::NEVER_INDEXED != 0 {
        Representation::NeverIndexed
    } else if flags & httlib_hpack::Decoder::WITH_INDEXING != 0 {
        Representation::Indexing
    } else {
        Representation::Other
    };
    Field {
        name: String::from_utf8_lossy(&name).into_owned(),
        value: String::from_utf8_lossy(&value).into_owned(),
        representation,
    }
}

/// A stream that keeps a copy of everything read from it.
struct Recorded<S> {
    inner: S,
    recording: Recording,
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let read = &buf.filled()[before..];
            self.recording.lock().unwrap().extend_from_slice(read);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recorded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
