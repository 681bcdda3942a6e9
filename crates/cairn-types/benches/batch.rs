//! Micro-benchmarks of batch validation: the CRC32C pass every produced batch pays.

use cairn_types::batch::{BatchBuilder, Batches};
use cairn_types::limits::BATCH_BYTES_MAX;

fn main() {
    divan::main();
}

/// Validates a buffer of 1 KiB-record batches of the given total size.
#[divan::bench(args = [16 * 1024, 256 * 1024, 1024 * 1024])]
fn validate(bencher: divan::Bencher, buffer_bytes: usize) {
    let value = vec![0x5a; 1000];
    let mut buffer = Vec::new();
    while buffer.len() < buffer_bytes {
        let mut builder = BatchBuilder::new(0);
        for _ in 0..16 {
            builder = builder.record(Some(b"key"), Some(&value), &[]);
        }
        buffer.extend_from_slice(&builder.build());
    }
    bencher.counter(divan::counter::BytesCount::new(buffer.len())).bench(|| {
        Batches::new(divan::black_box(&buffer), BATCH_BYTES_MAX).filter(Result::is_err).count()
    });
}
