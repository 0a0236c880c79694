//! Byte-level helpers shared by the on-disk and WAL encodings: varints, little-endian integers
//! and length-prefixed strings, written to a `Vec<u8>` and read from a shrinking `&[u8]`.
//! Readers return `None` when the input ends early or is malformed; callers turn that into
//! their own error.

pub fn put_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub fn put_varint(out: &mut Vec<u8>, value: i64) {
    put_uvarint(out, ((value << 1) ^ (value >> 63)) as u64);
}

pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_uvarint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[inline]
pub fn get_uvarint(input: &mut &[u8]) -> Option<u64> {
    // Most varints (lengths, counts, small numbers) are one byte.
    if let Some((&byte, rest)) = input.split_first()
        && byte < 0x80
    {
        *input = rest;
        return Some(u64::from(byte));
    }
    let mut value = 0u64;
    for (index, byte) in input.iter().enumerate().take(10) {
        let shift = 7 * index as u32;
        if index == 9 && *byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            *input = &input[index + 1..];
            return Some(value);
        }
    }
    None
}

pub fn get_varint(input: &mut &[u8]) -> Option<i64> {
    let raw = get_uvarint(input)?;
    Some(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

pub fn get_u8(input: &mut &[u8]) -> Option<u8> {
    let (&first, rest) = input.split_first()?;
    *input = rest;
    Some(first)
}

pub fn get_u32(input: &mut &[u8]) -> Option<u32> {
    let bytes = get_array::<4>(input)?;
    Some(u32::from_le_bytes(bytes))
}

pub fn get_u64(input: &mut &[u8]) -> Option<u64> {
    let bytes = get_array::<8>(input)?;
    Some(u64::from_le_bytes(bytes))
}

pub fn get_array<const N: usize>(input: &mut &[u8]) -> Option<[u8; N]> {
    if input.len() < N {
        return None;
    }
    let mut bytes = [0u8; N];
    bytes.copy_from_slice(&input[..N]);
    *input = &input[N..];
    Some(bytes)
}

/// A length-prefixed byte string; the length is checked against what remains.
pub fn get_bytes<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(get_uvarint(input)?).ok()?;
    if input.len() < len {
        return None;
    }
    let (bytes, rest) = input.split_at(len);
    *input = rest;
    Some(bytes)
}

pub fn get_str<'a>(input: &mut &'a [u8]) -> Option<&'a str> {
    str_of(get_bytes(input)?)
}

/// `bytes` as text, if they are UTF-8.
#[inline]
pub fn str_of(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: ASCII is UTF-8 (the common case, checked a word at a time).
        return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let mut out = Vec::new();
        for value in [0u64, 1, 127, 128, 300, u64::MAX] {
            put_uvarint(&mut out, value);
        }
        for value in [0i64, -1, 63, -64, i64::MIN, i64::MAX] {
            put_varint(&mut out, value);
        }
        put_bytes(&mut out, b"hello");
        let mut input = out.as_slice();
        for value in [0u64, 1, 127, 128, 300, u64::MAX] {
            assert_eq!(get_uvarint(&mut input), Some(value));
        }
        for value in [0i64, -1, 63, -64, i64::MIN, i64::MAX] {
            assert_eq!(get_varint(&mut input), Some(value));
        }
        assert_eq!(get_str(&mut input), Some("hello"));
        assert!(input.is_empty());
        assert_eq!(get_uvarint(&mut input), None);
        assert_eq!(get_bytes(&mut &[5u8, b'a'][..]), None);
        assert_eq!(get_uvarint(&mut &[0xffu8; 11][..]), None);
        // Strings: ASCII, other UTF-8, and bytes that are not UTF-8.
        for (text, expected) in [
            (&b"plain"[..], Some("plain")),
            ("caf\u{e9} \u{1f600}".as_bytes(), Some("caf\u{e9} \u{1f600}")),
            (&b"a\xff"[..], None),
            (&b"\xe2\x82"[..], None),
        ] {
            let mut out = Vec::new();
            put_bytes(&mut out, text);
            assert_eq!(get_str(&mut out.as_slice()), expected);
        }
    }
}
