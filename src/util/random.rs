//! Random numbers for jitter and simulations, without a dependency: a per-thread
//! xorshift64* generator seeded from the standard library's randomly keyed hasher. Fast
//! and well spread; not for anything an attacker must not guess.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    // A fresh `RandomState` has random keys; hashing the thread's id mixes them in.
    let seed = RandomState::new().hash_one(std::thread::current().id());
    seed | 1 // xorshift must not start at zero
}

/// A uniformly distributed `u64`.
pub(crate) fn u64() -> u64 {
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// A uniformly distributed `f64` in `[0, 1)`.
pub(crate) fn f64() -> f64 {
    // The top 53 bits, as the mantissa of a number in [0, 1).
    (u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn f64_is_in_the_unit_interval_and_spread() {
        let mut buckets = [0u32; 10];
        for _ in 0..100_000 {
            let x = super::f64();
            assert!((0.0..1.0).contains(&x), "{x}");
            buckets[(x * 10.0) as usize] += 1;
        }
        // Each tenth gets 10,000 ± a few hundred (the chance of being 1,000 off is nil).
        assert!(
            buckets.iter().all(|&n| (9_000..11_000).contains(&n)),
            "{buckets:?}"
        );
    }

    #[test]
    fn threads_get_different_sequences() {
        let here = super::u64();
        let there = std::thread::spawn(super::u64).join().expect("thread");
        assert_ne!(here, there);
    }
}
