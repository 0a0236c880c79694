//! Metrics chunk decoding (XOR and packed): any bytes decode or are refused, never panic, and
//! the column reader takes the same bytes as the sample reader and reads the same samples.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use tripod_storage::metrics::chunk::{decode, decode_columns};
    let mut samples = Vec::new();
    let by_samples = decode(data, &mut samples);
    let (mut times, mut values) = (Vec::new(), Vec::new());
    let by_columns = decode_columns(data, &mut times, &mut values);
    assert_eq!(by_samples.is_ok(), by_columns.is_ok());
    if by_samples.is_ok() {
        assert_eq!(samples.len(), times.len());
        for (sample, (t_ms, value)) in samples.iter().zip(times.iter().zip(&values)) {
            assert_eq!((sample.t_ms, sample.value.to_bits()), (*t_ms, value.to_bits()));
        }
    }
});
