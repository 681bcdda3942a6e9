//! Reading a Kafka frame's body: the size-prefixed frames of requests (read by the server) and
//! of responses (read by the client) have the same shape. Each side checks the 4-byte length
//! prefix against its own bounds before calling [`read_body`], which allocates exactly that
//! length.

use bytes::BytesMut;

/// Reads the `length` bytes of a frame body (its length prefix already checked) into a new
/// buffer, without zeroing it first: a produce request or fetch response of megabytes would
/// otherwise be written twice.
///
/// # Errors
/// IO errors; `UnexpectedEof` if the stream ends first.
pub async fn read_body<R>(reader: &mut R, length: usize) -> std::io::Result<BytesMut>
where
    R: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt as _;
    let mut body = BytesMut::with_capacity(length);
    // `take` stops the reads at the body's end whatever the buffer's spare capacity.
    let mut limited = reader.take(length as u64);
    while body.len() < length {
        if limited.read_buf(&mut body).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_exactly_the_body_and_leaves_the_rest() {
        let mut stream: &[u8] = b"bodynext";
        let body = read_body(&mut stream, 4).await.expect("enough bytes");
        assert_eq!(&body[..], b"body");
        assert_eq!(stream, b"next");
    }

    #[tokio::test]
    async fn a_short_stream_is_an_unexpected_eof() {
        let mut stream: &[u8] = b"bod";
        let error = read_body(&mut stream, 4).await.expect_err("too short");
        assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
