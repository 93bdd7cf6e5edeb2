//! The simulated network.
//!
//! Owns per-directed-link behaviour and connectivity. Each link has a
//! [`LinkModel`]: a uniform base delay (so messages reorder), random loss,
//! duplication (a replay with its own delay) and rare long holds. Links are
//! cut by partitions (symmetric, asymmetric/send-only, single node, random
//! directed cuts) and by the scripted `disconnect`, which mirrors the lab's
//! per-server `connected` flag. A message must find its link up both when
//! sent and when delivered.

use crate::sim_rng::SimRng;

/// How one directed link behaves. Times in microseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkModel {
    /// Smallest delay.
    pub delay_min_us: u64,
    /// Largest ordinary delay (uniform between min and max: reorders).
    pub delay_max_us: u64,
    /// Probability a message is lost.
    pub loss: f64,
    /// Probability a message is also delivered a second time.
    pub dup: f64,
    /// Probability a message is held for a long time.
    pub long_prob: f64,
    /// Fixed part of a long hold.
    pub long_base_us: u64,
    /// Random part of a long hold: `rand(rand(long_max))` as in the lab.
    pub long_max_us: u64,
    /// Deliver in send order, like one TCP connection (no reordering).
    pub fifo: bool,
}

impl LinkModel {
    /// The lab's reliable network: fast, in-order enough, nothing lost.
    pub const RELIABLE: LinkModel = LinkModel {
        delay_min_us: 50,
        delay_max_us: 1_000,
        loss: 0.0,
        dup: 0.0,
        long_prob: 0.0,
        long_base_us: 0,
        long_max_us: 0,
        fifo: false,
    };

    /// The lab's unreliable network: 0-26 ms delays, 10 % loss.
    pub const UNRELIABLE: LinkModel = LinkModel {
        delay_min_us: 0,
        delay_max_us: 26_000,
        loss: 0.1,
        dup: 0.0,
        long_prob: 0.0,
        long_base_us: 0,
        long_max_us: 0,
        fifo: false,
    };

    /// Adds the lab's long reordering: 2/3 of messages held 200 + rand(rand(2000)) ms.
    pub fn with_long_reordering(mut self) -> LinkModel {
        self.long_prob = 600.0 / 900.0;
        self.long_base_us = 200_000;
        self.long_max_us = 2_000_000;
        self
    }

    /// Draws one delivery delay.
    pub fn delay(&self, rng: &mut SimRng) -> (u64, bool) {
        let mut d = rng.between(self.delay_min_us, self.delay_max_us.max(self.delay_min_us));
        let long = rng.chance(self.long_prob);
        if long {
            let inner = rng.below(self.long_max_us.max(1));
            d += self.long_base_us + rng.below(inner.max(1));
        }
        (d, long)
    }
}

/// Connectivity and link models for `n` nodes.
#[derive(Clone, Debug)]
pub struct Network {
    n: usize,
    links: Vec<LinkModel>,
    /// Latest delivery time scheduled on each link (for FIFO links).
    last_delivery: Vec<u64>,
    cut: Vec<bool>,
    connected: Vec<bool>,
}

impl Network {
    /// `n` nodes, every link `model`, all connected.
    pub fn new(n: usize, model: LinkModel) -> Self {
        Network {
            n,
            links: vec![model; n * n],
            last_delivery: vec![0; n * n],
            cut: vec![false; n * n],
            connected: vec![true; n],
        }
    }

    /// The delivery time of a message sent now on `from -> to` with `delay`:
    /// never before an earlier message on a FIFO link.
    pub fn delivery_time(&mut self, from: usize, to: usize, now: u64, delay: u64) -> u64 {
        let k = from * self.n + to;
        let mut t = now + delay;
        if self.links[k].fifo {
            t = t.max(self.last_delivery[k]);
        }
        self.last_delivery[k] = self.last_delivery[k].max(t);
        t
    }

    /// Whether `from` can reach `to` now.
    #[inline]
    pub fn up(&self, from: usize, to: usize) -> bool {
        self.connected[from] && self.connected[to] && !self.cut[from * self.n + to]
    }

    /// The latest delivery time scheduled on any link so far.
    pub fn last_delivery_any(&self) -> u64 {
        self.last_delivery.iter().copied().max().unwrap_or(0)
    }

    /// The model of link `from -> to`.
    #[inline]
    pub fn link(&self, from: usize, to: usize) -> &LinkModel {
        &self.links[from * self.n + to]
    }

    /// Sets the model of link `from -> to`.
    pub fn set_link(&mut self, from: usize, to: usize, model: LinkModel) {
        self.links[from * self.n + to] = model;
    }

    /// Sets every link's model.
    pub fn set_all(&mut self, model: LinkModel) {
        self.links.iter_mut().for_each(|l| *l = model);
    }

    /// Applies `f` to every link's model.
    pub fn map_all(&mut self, f: impl Fn(&mut LinkModel)) {
        self.links.iter_mut().for_each(f);
    }

    /// The lab's `connect(i)`/`disconnect(i)`.
    pub fn set_connected(&mut self, i: usize, on: bool) {
        self.connected[i] = on;
    }

    /// Whether node `i` is connected (lab sense).
    pub fn connected(&self, i: usize) -> bool {
        self.connected[i]
    }

    /// Removes every partition cut (not the lab's disconnects).
    pub fn heal(&mut self) {
        self.cut.iter_mut().for_each(|c| *c = false);
    }

    /// Cuts or restores the directed link `from -> to`.
    pub fn set_cut(&mut self, from: usize, to: usize, cut: bool) {
        self.cut[from * self.n + to] = cut;
    }

    /// Splits the nodes into the set `mask` and the rest, both directions.
    pub fn split(&mut self, mask: u64) {
        for a in 0..self.n {
            for b in 0..self.n {
                let side = |x: usize| mask >> x & 1;
                if a != b && side(a) != side(b) {
                    self.set_cut(a, b, true);
                }
            }
        }
    }

    /// Node `i` can send but not receive (an asymmetric partition).
    pub fn send_only(&mut self, i: usize) {
        for j in 0..self.n {
            if j != i {
                self.set_cut(j, i, true);
            }
        }
    }

    /// Node `i` can receive but not send.
    pub fn receive_only(&mut self, i: usize) {
        for j in 0..self.n {
            if j != i {
                self.set_cut(i, j, true);
            }
        }
    }

    /// Cuts each directed link independently with probability `p`.
    pub fn random_cuts(&mut self, p: f64, rng: &mut SimRng) -> u64 {
        let mut mask = 0u64;
        for a in 0..self.n {
            for b in 0..self.n {
                if a != b && rng.chance(p) {
                    self.set_cut(a, b, true);
                    mask |= 1 << (a * self.n + b);
                }
            }
        }
        mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_cut_the_right_links() {
        let mut net = Network::new(3, LinkModel::RELIABLE);
        net.split(0b001);
        assert!(!net.up(0, 1) && !net.up(1, 0) && net.up(1, 2));
        net.heal();
        net.send_only(2);
        assert!(net.up(2, 0) && !net.up(0, 2));
        net.heal();
        net.set_connected(1, false);
        assert!(!net.up(0, 1) && !net.up(1, 2) && net.up(0, 2));
    }

    #[test]
    fn long_reordering_delays_most_messages() {
        let model = LinkModel::RELIABLE.with_long_reordering();
        let mut rng = SimRng::new(1);
        let long = (0..900).filter(|_| model.delay(&mut rng).1).count();
        assert!((500..700).contains(&long), "{long}");
    }
}
