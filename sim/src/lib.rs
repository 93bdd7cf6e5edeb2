//! xraft-sim: a deterministic cluster simulator for the xraft core.
//!
//! One root seed drives everything: each node's core seed, the network, the
//! disks, the client workload and the fault schedule ([`sim_rng`]). A
//! [`Cluster`] runs real [`xraft::Node`]s on virtual time with one event
//! queue, a lossy, reordering, partitionable [`net::Network`] and a
//! [`disk::Disk`] per node that loses unsynced writes on a crash. Ghost
//! oracle checkers ([`check::Oracle`]) run after every event. A
//! [`swarm::SeedRun`] draws a fault mix per seed and runs the two phases
//! (faults, then healing with a liveness bound); the `xraft-sim` binary runs
//! many seeds. The scripted API on [`Cluster`] (crash, restart, disconnect,
//! propose, ...) carries the lab and paper scenario tests.
//!
//! The library is pure and deterministic: no clock, no threads, no hash
//! iteration order reaching behaviour. Only the runner binary reads the wall
//! clock, to report speed.
#![forbid(unsafe_code)]

pub mod app;
pub mod check;
pub mod cluster;
pub mod disk;
pub mod lab;
pub mod linear;
pub mod net;
pub mod sim_rng;
pub mod swarm;
pub mod trace;

pub use check::{EntryId, Oracle, Violation};
pub use cluster::{
    Canary, ClientOp, Cluster, ClusterConfig, CoreKnobs, Failure, Op, OpState, Outcome, Proposed,
    Stats, TICK_US,
};
pub use disk::CrashMode;
pub use net::LinkModel;
pub use swarm::{Params, SeedOptions, SeedRun};
