//! The counting allocator counts: what the corpus replays and allocation bounds rely on.

use cairn_testkit::alloc::{Counting, largest_allocation};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: usize = 1024 * 1024;

#[test]
fn the_counting_allocator_counts() {
    let ((), largest) = largest_allocation(|| drop(std::hint::black_box(vec![0u8; 3 * MIB])));
    assert!(largest >= 3 * MIB, "{largest}");
    let ((), largest) = largest_allocation(|| {});
    assert_eq!(largest, 0);
}
