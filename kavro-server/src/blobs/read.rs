//! Reading a stored chunk object as a stream of large pieces.
//! `object_store`'s `GetResult::into_stream` reads a local file 8 KiB at a
//! time, each read one trip to the blocking pool: 131 072 trips for a 1 GiB
//! blob, most of a download's time. A local file is read here in pieces of
//! [`PIECE`] bytes instead (one trip each); another store's stream (S3)
//! passes through as it comes.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::ops::Range;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt as _, TryStreamExt as _};
use object_store::{GetResult, GetResultPayload};

/// Bytes read from a local object at once. Large enough that the trips to
/// the blocking pool do not count, small enough that a download holds
/// little memory (hyper takes a piece or two ahead of the socket).
pub const PIECE: usize = 1024 * 1024;

/// The bytes of `got` (the range it was asked for).
pub fn object_stream(got: GetResult) -> BoxStream<'static, Result<Bytes, std::io::Error>> {
    match got.payload {
        GetResultPayload::File(file, _) => file_stream(file, got.range, PIECE),
        GetResultPayload::Stream(bytes) => bytes.map_err(std::io::Error::other).boxed(),
    }
}

/// `range` of `file` in pieces of at most `piece` bytes; a file shorter than
/// the range ends the stream with an error, never with short data.
fn file_stream(
    file: std::fs::File,
    range: Range<u64>,
    piece: usize,
) -> BoxStream<'static, Result<Bytes, std::io::Error>> {
    stream::try_unfold((file, range), move |(mut file, range)| async move {
        if range.start >= range.end {
            return Ok(None);
        }
        let want = usize::try_from(range.end - range.start)
            .unwrap_or(piece)
            .min(piece);
        let at = range.start;
        let (file, read) = tokio::task::spawn_blocking(move || {
            let mut buffer = vec![0u8; want];
            let read = file
                .seek(SeekFrom::Start(at))
                .and_then(|_| file.read_exact(&mut buffer));
            (file, read.map(|()| buffer))
        })
        .await
        .map_err(std::io::Error::other)?;
        let buffer = read?;
        Ok(Some((
            Bytes::from(buffer),
            (file, at + want as u64..range.end),
        )))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    async fn collect(
        file: std::fs::File,
        range: Range<u64>,
        piece: usize,
    ) -> Result<Vec<Vec<u8>>, std::io::Error> {
        file_stream(file, range, piece)
            .map_ok(|b| b.to_vec())
            .try_collect()
            .await
    }

    #[tokio::test]
    async fn a_range_comes_in_pieces_and_a_short_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o");
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&data)
            .unwrap();

        let pieces = collect(std::fs::File::open(&path).unwrap(), 10..1000, 400)
            .await
            .unwrap();
        assert_eq!(
            pieces.iter().map(Vec::len).collect::<Vec<_>>(),
            [400, 400, 190]
        );
        assert_eq!(pieces.concat(), data[10..1000]);
        assert!(
            collect(std::fs::File::open(&path).unwrap(), 5..5, 400)
                .await
                .unwrap()
                .is_empty()
        );

        // The object is shorter than the range asked for: an error, not short data.
        let err = collect(std::fs::File::open(&path).unwrap(), 900..1200, 400)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
