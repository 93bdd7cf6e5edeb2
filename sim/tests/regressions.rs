//! Minimal scripted reproductions of core bugs the simulator found. Each
//! names the seeds that first showed it and the failure class.

use xraft_sim::lab::cmd;
use xraft_sim::{Cluster, ClusterConfig};

/// Found by `--seeds 200` (e.g. seed 3: liveness stall after healing, the
/// leader's commit stuck while followers sat idle behind it). In Replicate
/// state, appends that are all lost fill the inflight window; nothing ever
/// answers them, so nothing frees the window, and heartbeat responses only
/// called `send_append`, which is paused by the full window. The follower
/// stays behind forever (SIM-CHECKLIST class 36, etcd's "recovers from
/// probing" family).
#[test]
fn lost_appends_filling_the_window_do_not_stall_a_follower() {
    for seed in 0..5 {
        let mut cfg = ClusterConfig::lab(3, seed);
        cfg.core.inflight_appends_max = 2;
        let mut c = Cluster::with_config(cfg);
        let l = c.check_one_leader();
        c.one(1, 3, false);
        let f = (l + 1) % 3;
        // Lose everything the leader sends to f for a while, proposals included.
        c.net_mut().set_cut(l, f, true);
        for k in 0..4 {
            c.start(l, cmd(10 + k));
            c.run_for_ms(5);
        }
        c.run_for_ms(100);
        c.net_mut().set_cut(l, f, false);
        // f must catch up: the lab's `one` waits for all three servers.
        c.one(100, 3, false);
    }
}
