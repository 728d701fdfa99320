//! The least any HTTP/1.1 client does for a batch of POSTs on this machine: each POST
//! written by hand on a socket of its own and its answer read, on one thread, to the
//! same receiver as the handler's batches. No signing, no record, no pool, no
//! connection task: what is left is the kernel's work for loopback connections and
//! writes (both ends of each, on the sending thread) and the runtime's readiness events.
//! A batch efficiency here is a floor for the handler's: whatever Herald adds, its batch
//! cannot be quicker than this one on this machine.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{RECEIVER_DELAY, REPEATS, handler_cpu, sort_by_wall};

/// A batch of POSTs by hand: its wall time and CPU.
pub struct BareBatch {
    pub wall_ms: f64,
    pub efficiency: f64,
    pub cpu_us_per_post: f64,
}

/// The first batch on new connections and the second on the same ones, each the median
/// by wall time of [`REPEATS`].
pub struct BareSeries {
    pub first: BareBatch,
    pub pooled: BareBatch,
}

/// A POST the size of one of the handler's: the same header names, values of the same
/// lengths, and a body of the bench's event in the standard format.
fn request(addr: SocketAddr, i: usize) -> Vec<u8> {
    let id = format!("msg_{:052}", i);
    let body = format!(
        r#"{{"data":{{"amount":1250,"order_id":"ord_{i}"}},"timestamp":"2026-12-05T22:46:11.123456Z","type":"order.paid"}}"#
    );
    let head = format!(
        "POST /webhooks HTTP/1.1\r\n\
         accept: */*\r\n\
         content-type: application/json\r\n\
         user-agent: Herald-Webhooks/0.1.0\r\n\
         webhook-id: {id}\r\n\
         webhook-timestamp: 1796510771\r\n\
         webhook-signature: v1,{sig}\r\n\
         idempotency-key: ffm_wh_{id}\r\n\
         host: {addr}\r\n\
         content-length: {len}\r\n\r\n",
        sig = "A".repeat(44),
        len = body.len(),
    );
    [head.into_bytes(), body.into_bytes()].concat()
}

/// One POST on `stream` and its whole answer read: a 200 with the body its
/// `content-length` says. An answer framed otherwise (chunked) is an error, not misread:
/// the bench's receiver always sends a length.
async fn post(stream: &mut TcpStream, request: &[u8]) -> std::io::Result<()> {
    stream.write_all(request).await?;
    let mut answer = [0u8; 1024];
    let mut read = 0;
    let head_end = loop {
        let n = stream.read(&mut answer[read..]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        read += n;
        if let Some(at) = answer[..read].windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if read == answer.len() {
            return Err(std::io::Error::other("an answer's head over 1 KiB"));
        }
    };
    let head = std::str::from_utf8(&answer[..head_end]).map_err(std::io::Error::other)?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("not a 200: {head}")));
    }
    let header = |wanted: &str| {
        head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case(wanted).then_some(value.trim())
        })
    };
    if header("transfer-encoding").is_some() {
        return Err(std::io::Error::other(format!(
            "an answer framed by transfer-encoding, not a length: {head}"
        )));
    }
    let length: usize = header("content-length")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    let mut left = (head_end + length).saturating_sub(read);
    while left > 0 {
        let n = stream.read(&mut answer).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        left = left.saturating_sub(n);
    }
    Ok(())
}

async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// `requests` POSTed at once, each on a new connection or on `streams`' own; the
/// connections are handed back for the next batch.
async fn batch(
    addr: SocketAddr,
    requests: &[Vec<u8>],
    streams: Option<Vec<TcpStream>>,
) -> (BareBatch, Vec<TcpStream>) {
    let cpu = handler_cpu();
    let started = Instant::now();
    let sent: Vec<std::io::Result<TcpStream>> = match streams {
        None => {
            futures::future::join_all(requests.iter().map(|request| async move {
                let mut stream = connect(addr).await?;
                post(&mut stream, request).await?;
                Ok(stream)
            }))
            .await
        }
        Some(streams) => {
            futures::future::join_all(streams.into_iter().zip(requests).map(
                |(mut stream, request)| async move {
                    post(&mut stream, request).await?;
                    Ok(stream)
                },
            ))
            .await
        }
    };
    let wall = started.elapsed();
    let cpu = handler_cpu().saturating_sub(cpu);
    let streams: Vec<TcpStream> = sent
        .into_iter()
        .collect::<std::io::Result<_>>()
        .expect("a bare POST to the bench's receiver failed");
    let measured = BareBatch {
        wall_ms: wall.as_secs_f64() * 1e3,
        efficiency: wall.as_secs_f64() / RECEIVER_DELAY.as_secs_f64(),
        cpu_us_per_post: cpu.as_secs_f64() * 1e6 / requests.len() as f64,
    };
    (measured, streams)
}

fn median(mut runs: Vec<BareBatch>) -> BareBatch {
    sort_by_wall(&mut runs, |m| m.wall_ms);
    runs.swap_remove(runs.len() / 2)
}

/// [`REPEATS`] times: `n` POSTs on new connections, then `n` more on the same ones, with
/// the connections closed and let settle between rounds as the handler's series does.
pub async fn series(addr: SocketAddr, n: usize, settle: Duration) -> BareSeries {
    let requests: Vec<Vec<u8>> = (0..n).map(|i| request(addr, i)).collect();
    let (mut firsts, mut pooled) = (Vec::new(), Vec::new());
    for _ in 0..REPEATS {
        let (first, streams) = batch(addr, &requests, None).await;
        let (second, streams) = batch(addr, &requests, Some(streams)).await;
        firsts.push(first);
        pooled.push(second);
        drop(streams);
        tokio::time::sleep(settle).await;
    }
    BareSeries {
        first: median(firsts),
        pooled: median(pooled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A one-connection server that answers every request with `answer`.
    async fn answering(answer: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {
                if stream.write_all(answer).await.is_err() {
                    break;
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn an_answer_with_a_length_is_read_whole_and_a_chunked_one_is_refused() {
        let request = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n";
        let addr = answering(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        let mut stream = connect(addr).await.unwrap();
        post(&mut stream, request).await.unwrap();
        post(&mut stream, request).await.unwrap();

        let addr =
            answering(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
                .await;
        let mut stream = connect(addr).await.unwrap();
        let refused = post(&mut stream, request).await.unwrap_err();
        assert!(
            refused.to_string().contains("transfer-encoding"),
            "{refused}"
        );
    }
}
