//! Compression of block pages. Each page carries a codec byte, so the choice can change
//! without a new format version: 0 none, 1 zstd. Decompression is capped at the page's stated
//! size, itself capped at [`MAX_PAGE_RAW_BYTES`].

/// Stored as is.
pub(crate) const CODEC_NONE: u8 = 0;
/// One zstd frame.
pub(crate) const CODEC_ZSTD: u8 = 1;

/// Largest uncompressed page a reader accepts: a bound on what a damaged size field can make a
/// decompression allocate. Pages are cut near `TracesOptions::page_target_bytes`; one huge
/// trace can make one bigger.
pub(crate) const MAX_PAGE_RAW_BYTES: u64 = 256 << 20;

/// Compression chosen for new pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TracesCodec {
    /// Stored as is.
    None,
    /// zstd at this level (1 is fastest; 3 is zstd's default).
    Zstd { level: i32 },
}

/// Compresses with `codec`, or stores uncompressed when that is not smaller; returns the codec
/// byte that was used.
pub(crate) fn compress(codec: TracesCodec, raw: &[u8]) -> (u8, Vec<u8>) {
    let TracesCodec::Zstd { level } = codec else { return (CODEC_NONE, raw.to_vec()) };
    // One compression context per thread and level, reused: creating one costs more than
    // compressing a small page. Compression into a vector only fails on allocation failure or
    // a bad level (which zstd clamps): then the page is stored as it is.
    thread_local! {
        static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
            const { std::cell::RefCell::new(None) };
    }
    let data = COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(cached, _)| *cached != level) {
            *slot = zstd::bulk::Compressor::new(level).ok().map(|compressor| (level, compressor));
        }
        slot.as_mut().and_then(|(_, compressor)| compressor.compress(raw).ok())
    });
    match data {
        Some(data) if data.len() < raw.len() => (CODEC_ZSTD, data),
        _ => (CODEC_NONE, raw.to_vec()),
    }
}

/// Decompresses a page into `out`; the result must be exactly `raw_bytes` long.
pub(crate) fn decompress(codec: u8, data: &[u8], raw_bytes: u64, out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    if raw_bytes > MAX_PAGE_RAW_BYTES {
        return Err(format!("page claims {raw_bytes} uncompressed bytes, over the limit"));
    }
    match codec {
        CODEC_NONE => out.extend_from_slice(data),
        CODEC_ZSTD => {
            thread_local! {
                static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
                    const { std::cell::RefCell::new(None) };
            }
            out.reserve(raw_bytes as usize);
            DECOMPRESSOR.with(|cell| {
                let mut slot = cell.borrow_mut();
                if slot.is_none() {
                    *slot = Some(zstd::bulk::Decompressor::new().map_err(|error| error.to_string())?);
                }
                match slot.as_mut() {
                    // The output buffer's capacity caps what the frame may produce.
                    Some(decompressor) => decompressor
                        .decompress_to_buffer(data, out)
                        .map(|_| ())
                        .map_err(|error| format!("zstd decompression failed: {error}")),
                    None => Err("no zstd decompression context".to_string()),
                }
            })?;
        }
        other => return Err(format!("unknown codec {other}")),
    }
    if out.len() as u64 != raw_bytes {
        return Err(format!("page decompressed to {} bytes, expected {raw_bytes}", out.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_round_trip_and_damage_is_an_error() {
        let raw: Vec<u8> = (0..50_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for codec in [TracesCodec::None, TracesCodec::Zstd { level: 1 }, TracesCodec::Zstd { level: 6 }] {
            let (byte, data) = compress(codec, &raw);
            let mut out = Vec::new();
            decompress(byte, &data, raw.len() as u64, &mut out).unwrap();
            assert_eq!(out, raw);
        }
        let (byte, mut data) = compress(TracesCodec::Zstd { level: 3 }, &raw);
        assert_eq!(byte, CODEC_ZSTD);
        assert!(decompress(byte, &data, raw.len() as u64 - 1, &mut Vec::new()).is_err());
        data.truncate(data.len() / 2);
        assert!(decompress(byte, &data, raw.len() as u64, &mut Vec::new()).is_err());
        assert!(decompress(9, &raw, raw.len() as u64, &mut Vec::new()).is_err());
        assert!(decompress(CODEC_NONE, &raw, MAX_PAGE_RAW_BYTES + 1, &mut Vec::new()).is_err());
    }
}
