//! The simulator's random streams.
//!
//! Owns derivation from the one root seed: every stream (each node's core
//! seed, the network, the disks, the workload, the fault schedule) is a
//! SplitMix64 ([`xraft::rng::Rng`]) seeded from the root seed and a fixed
//! stream tag, so adding draws to one stream never shifts another.

use xraft::rng::Rng;

/// Stream tags, one per consumer of randomness.
pub mod stream {
    /// Per-seed swarm parameters.
    pub const SWARM: u64 = 1;
    /// Network delays, loss, duplication.
    pub const NET: u64 = 2;
    /// Disk latency and crash survival.
    pub const DISK: u64 = 3;
    /// Client workload.
    pub const CLIENT: u64 = 4;
    /// Fault schedule.
    pub const FAULTS: u64 = 5;
    /// Per-seed flow-control and queue bounds (a stream of their own, so
    /// adding them left every older seed's draws, and its regression
    /// scenario, as they were).
    pub const BOUNDS: u64 = 6;
    /// Node pauses (their own stream, as `BOUNDS`).
    pub const PAUSES: u64 = 7;
    /// Base of the per-node core seeds (plus node and incarnation).
    pub const NODE: u64 = 0x100;
}

/// A seeded random stream with the draws the simulator needs.
#[derive(Clone, Debug)]
pub struct SimRng(Rng);

impl SimRng {
    /// A stream seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SimRng(Rng::new(seed))
    }

    /// The stream `tag` derived from `root`.
    pub fn derive(root: u64, tag: u64) -> Self {
        SimRng::new(derive_seed(root, tag))
    }

    /// 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A value in `0..n` (0 if `n` is 0).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.range(0, n)
    }

    /// A value in `lo..=hi`.
    #[inline]
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        self.0.range(lo, hi.saturating_add(1))
    }

    /// True with probability `p`.
    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.0.chance(p)
    }

    /// A uniform float in `[0, 1)`.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An exponentially distributed value with the given mean, capped at 20x.
    pub fn exp(&mut self, mean: u64) -> u64 {
        let u = 1.0 - self.unit(); // (0, 1]
        let v = -u.ln() * mean as f64;
        (v as u64).min(mean.saturating_mul(20))
    }

    /// Picks one of `items` uniformly.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// A seed for stream `tag` of root seed `root` (a SplitMix64 finalizer mix).
pub fn derive_seed(root: u64, tag: u64) -> u64 {
    let mut r = Rng::new(root ^ tag.wrapping_mul(0xA076_1D64_78BD_642F));
    r.next_u64();
    r.next_u64()
}
