//! hyper-util's TCP connector, its connections told as made with nothing recorded of them.
//!
//! hyper-util's TCP stream reports each connection with both ends' addresses
//! (`HttpInfo`): every time it is asked, it asks the operating system for them
//! (`getpeername` and `getsockname`), and the client copies them into the extensions of
//! every answer the connection carries, a map, its table and a box an answer. The client
//! asks once a connection, and the first-connection layer once more over TLS. Herald reads
//! neither address: the guard judged the address before the connection was made
//! (`GuardedResolver`), and the attempt log keeps the URL, not the address. So this
//! connector hands the client the same stream without them. The bytes on the wire are the
//! same.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::TryFutureExt;
use futures::future::MapOk;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;

/// The TCP connector `inner`, its streams told as [`Stream`]s.
#[derive(Clone)]
pub(crate) struct Tcp<R>(HttpConnector<R>);

impl<R> Tcp<R> {
    pub(crate) fn new(inner: HttpConnector<R>) -> Self {
        Self(inner)
    }
}

/// A TCP connection as hyper-util made it.
pub(crate) struct Stream(TokioIo<tokio::net::TcpStream>);

type Inner<R> = <HttpConnector<R> as tower_service::Service<http::Uri>>::Future;

impl<R> tower_service::Service<http::Uri> for Tcp<R>
where
    HttpConnector<R>: tower_service::Service<http::Uri, Response = TokioIo<tokio::net::TcpStream>>,
{
    type Response = Stream;
    type Error = <HttpConnector<R> as tower_service::Service<http::Uri>>::Error;
    type Future = MapOk<Inner<R>, fn(TokioIo<tokio::net::TcpStream>) -> Stream>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, destination: http::Uri) -> Self::Future {
        self.0.call(destination).map_ok(Stream as fn(_) -> _)
    }
}

impl Connection for Stream {
    /// Made, plain TCP (TLS says what it negotiated above this), no proxy, and no
    /// addresses asked for.
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    /// As the socket: hyper then writes a request's head and body in one `writev`.
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_service::Service;

    async fn connected_to_a_listener() -> Stream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (_socket, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
        });
        let mut tcp = Tcp::new(HttpConnector::new());
        let uri: http::Uri = format!("http://{addr}/").parse().unwrap();
        std::future::poll_fn(|cx| tcp.poll_ready(cx)).await.unwrap();
        tcp.call(uri).await.unwrap()
    }

    #[tokio::test]
    async fn a_connection_is_told_as_made_without_its_addresses() {
        let stream = connected_to_a_listener().await;
        let mut extensions = http::Extensions::new();
        stream.connected().get_extras(&mut extensions);
        assert!(
            extensions
                .get::<hyper_util::client::legacy::connect::HttpInfo>()
                .is_none()
        );
        assert!(!stream.connected().is_negotiated_h2());
        // hyper-util's own stream records them, which is what this connector leaves out.
        let mut theirs = http::Extensions::new();
        stream.0.connected().get_extras(&mut theirs);
        assert!(
            theirs
                .get::<hyper_util::client::legacy::connect::HttpInfo>()
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_connection_writes_vectored_as_its_socket_does() {
        let stream = connected_to_a_listener().await;
        assert!(stream.0.is_write_vectored());
        assert!(stream.is_write_vectored());
    }
}
