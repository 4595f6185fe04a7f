//! Reading a request body into memory under a size limit and a deadline: a client trickling its body
//! holds its place for `deadline` at most, and no body grows past `limit`.

use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;

#[derive(Debug, PartialEq)]
pub enum BodyError {
    TooLarge,
    TimedOut,
    /// The connection failed or the framing was invalid.
    Broken(String),
}

/// The whole body. `declared` (Content-Length) sizes the buffer up front, so a body that says its size
/// is held once, without reallocation; a chunked one grows by doubling, capped at `limit`.
pub async fn read(body: Body, limit: usize, declared: Option<u64>, deadline: Duration) -> Result<Vec<u8>, BodyError> {
    let collect = async move {
        let mut body = body;
        let mut buf: Vec<u8> = Vec::new();
        if let Some(n) = declared {
            if n > limit as u64 {
                return Err(BodyError::TooLarge);
            }
            buf.reserve_exact(n as usize);
        }
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| BodyError::Broken(e.to_string()))?;
            let Ok(data) = frame.into_data() else { continue };
            let need = buf.len() + data.len();
            if need > limit {
                return Err(BodyError::TooLarge);
            }
            if need > buf.capacity() {
                let grown = (buf.capacity() * 2).clamp(need, limit);
                buf.reserve_exact(grown - buf.len());
            }
            buf.extend_from_slice(&data);
        }
        Ok(buf)
    };
    tokio::time::timeout(deadline, collect).await.unwrap_or(Err(BodyError::TimedOut))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;
    use http_body_util::channel::Channel;

    /// A body whose parts arrive `gap` apart, as from a trickling client.
    fn trickle(parts: Vec<&'static [u8]>, gap: Duration) -> Body {
        let (mut tx, body) = Channel::<Bytes, std::io::Error>::new(1);
        tokio::spawn(async move {
            for p in parts {
                tokio::time::sleep(gap).await;
                if tx.send_data(Bytes::from_static(p)).await.is_err() {
                    return;
                }
            }
        });
        Body::new(body)
    }

    #[tokio::test]
    async fn limit_and_deadline() {
        let second = Duration::from_secs(1);
        let ok = read(trickle(vec![b"ab", b"cd"], Duration::ZERO), 4, None, second).await;
        assert_eq!(ok, Ok(b"abcd".to_vec()));
        let ok = read(trickle(vec![b"ab", b"cd"], Duration::ZERO), 4, Some(4), second).await.unwrap();
        assert_eq!((ok.len(), ok.capacity()), (4, 4), "a declared size is allocated once");
        let big = read(trickle(vec![b"ab", b"cde"], Duration::ZERO), 4, None, second).await;
        assert_eq!(big, Err(BodyError::TooLarge));
        assert_eq!(read(Body::empty(), 4, Some(5), second).await, Err(BodyError::TooLarge));
        // One byte every 50 ms for 20 bytes is past a 300 ms deadline, though no gap is long.
        let slow = read(trickle(vec![b"x"; 20], Duration::from_millis(50)), 64, None, Duration::from_millis(300));
        assert_eq!(slow.await, Err(BodyError::TimedOut));
    }
}
