#![allow(clippy::unwrap_used)]

use super::*;

/// Seals `plain` whole: the blob and its [`FileRef`].
fn seal(plain: &[u8]) -> (Vec<u8>, FileRef) {
    let key = FileKey::generate();
    let (k, nonce) = key.encoded();
    let mut encryptor = Encryptor::new(key, plain, plain.len() as u64).unwrap();
    let mut blob = Vec::new();
    while let Some(segment) = encryptor.next_segment().unwrap() {
        blob.extend_from_slice(&segment);
    }
    let sha256 = encryptor.finish().unwrap();
    let file = FileRef {
        blob_id: "b".into(),
        key: k,
        nonce,
        size: plain.len() as u64,
        sha256,
        name: "f.bin".into(),
        media_type: "application/octet-stream".into(),
    };
    (blob, file)
}

fn open(blob: &[u8], file: &FileRef, piece: usize) -> Result<Vec<u8>, AttachmentError> {
    let mut decryptor = Decryptor::new(file)?;
    let mut out = Vec::new();
    for chunk in blob.chunks(piece.max(1)) {
        decryptor.push(chunk, &mut out).map_err(|e| match e {
            DecryptError::Attachment(a) => a,
            DecryptError::Write(_) => unreachable!("a Vec takes everything"),
        })?;
    }
    decryptor.finish()?;
    Ok(out)
}

fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn every_size_round_trips_in_any_pieces() {
    for len in [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT + 5] {
        let plain = sample(len);
        let (blob, file) = seal(&plain);
        assert_eq!(blob.len() as u64, sealed_len(len as u64), "size {len}");
        for piece in [1000, SEALED_SEGMENT, 7 * SEGMENT] {
            assert_eq!(open(&blob, &file, piece).unwrap(), plain, "size {len}");
        }
    }
}

#[test]
fn a_cut_reordered_extended_or_altered_blob_is_refused() {
    let plain = sample(3 * SEGMENT + 5);
    let (blob, file) = seal(&plain);
    // Cut at a segment boundary: the last segment is missing.
    let cut = &blob[..2 * SEALED_SEGMENT];
    assert_eq!(open(cut, &file, 4096), Err(AttachmentError::Truncated));
    // Cut inside a segment.
    assert_eq!(
        open(&blob[..blob.len() - 3], &file, 4096),
        Err(AttachmentError::Truncated)
    );
    // The first two segments swapped.
    let mut swapped = blob.clone();
    swapped[..SEALED_SEGMENT].copy_from_slice(&blob[SEALED_SEGMENT..2 * SEALED_SEGMENT]);
    swapped[SEALED_SEGMENT..2 * SEALED_SEGMENT].copy_from_slice(&blob[..SEALED_SEGMENT]);
    assert_eq!(
        open(&swapped, &file, 4096),
        Err(AttachmentError::Segment(0))
    );
    // One more byte.
    let mut longer = blob.clone();
    longer.push(0);
    assert_eq!(open(&longer, &file, 4096), Err(AttachmentError::TooLong));
    // One bit flipped in the third segment.
    let mut altered = blob.clone();
    altered[2 * SEALED_SEGMENT + 10] ^= 1;
    assert_eq!(
        open(&altered, &file, 4096),
        Err(AttachmentError::Segment(2))
    );
    // A full segment presented as the last one (the file claims to be shorter).
    let mut shorter = file.clone();
    shorter.size = 2 * SEGMENT as u64;
    assert_eq!(
        open(&blob[..2 * SEALED_SEGMENT], &shorter, 4096),
        Err(AttachmentError::Segment(1))
    );
    // Another key.
    let (_, other) = seal(&plain);
    let mut wrong = file.clone();
    wrong.key = other.key;
    assert_eq!(open(&blob, &wrong, 4096), Err(AttachmentError::Segment(0)));
    // Decrypts, but is not the file the message describes.
    let mut lied = file.clone();
    lied.sha256 = "00".repeat(32);
    assert_eq!(open(&blob, &lied, 4096), Err(AttachmentError::HashMismatch));
    // A malformed key or nonce.
    let mut bad = file.clone();
    bad.nonce = "AAAA".into();
    assert_eq!(open(&blob, &bad, 4096), Err(AttachmentError::BadKey));
}

#[test]
fn a_download_resumes_at_a_segment() {
    let plain = sample(4 * SEGMENT + 100);
    let (blob, file) = seal(&plain);
    let mut hasher = Sha256::new();
    hasher.update(&plain[..2 * SEGMENT]);
    let mut decryptor = Decryptor::resume(&file, 2, hasher).unwrap();
    let mut rest = Vec::new();
    decryptor
        .push(&blob[Decryptor::offset_of(2) as usize..], &mut rest)
        .unwrap();
    decryptor.finish().unwrap();
    assert_eq!(rest, &plain[2 * SEGMENT..]);
    assert!(matches!(
        Decryptor::resume(&file, 5, Sha256::new()),
        Err(AttachmentError::TooLong)
    ));
}

#[test]
fn segments_are_addressed_by_position() {
    // An upload resumes at segment 1 without sealing segment 0 again.
    let plain = sample(2 * SEGMENT + 1);
    let key = FileKey::generate();
    let whole = {
        let mut e = Encryptor::new(
            FileKey::from_ref(&file_of(&key)).unwrap(),
            &plain[..],
            plain.len() as u64,
        )
        .unwrap();
        let mut out = Vec::new();
        while let Some(s) = e.next_segment().unwrap() {
            out.push(s);
        }
        out
    };
    let again = key
        .encrypt_segment(plain.len() as u64, 1, &plain[SEGMENT..2 * SEGMENT])
        .unwrap();
    assert_eq!(again, whole[1]);
}

fn file_of(key: &FileKey) -> FileRef {
    let (k, nonce) = key.encoded();
    FileRef {
        blob_id: String::new(),
        key: k,
        nonce,
        size: 0,
        sha256: String::new(),
        name: String::new(),
        media_type: String::new(),
    }
}

#[test]
fn a_file_that_changes_while_it_is_sent_is_refused() {
    let plain = sample(SEGMENT + 10);
    let shorter = Encryptor::new(FileKey::generate(), &plain[..SEGMENT], plain.len() as u64);
    let mut shorter = shorter.unwrap();
    assert!(shorter.next_segment().unwrap().is_some());
    assert!(matches!(shorter.next_segment(), Err(EncryptError::Changed)));
    let mut longer = Encryptor::new(FileKey::generate(), &plain[..], SEGMENT as u64).unwrap();
    assert!(matches!(longer.next_segment(), Err(EncryptError::Changed)));
}

#[test]
fn the_key_never_shows_in_debug() {
    let (_, file) = seal(b"secret");
    assert!(!format!("{file:?}").contains(&file.key));
    assert!(!crate::implements_debug!(FileKey));
}
