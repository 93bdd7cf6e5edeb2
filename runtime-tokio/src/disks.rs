//! Which disk each member was seen with, so that a member that comes back
//! without its data is refused.
//!
//! Raft assumes a node's storage survives it. A voter restarted under its
//! old id with an empty data directory has forgotten its vote and its log:
//! it could vote a second time in a term, and help elect a leader that
//! lacks committed entries. Every data directory has a random disk id (in
//! its `IDENTITY` file) and the peer handshake carries it both ways; this
//! registry remembers, for each member, the disk it was seen with, and the
//! transport refuses a connection to or from that member with another disk.
//!
//! Invariants: only members have a recorded disk, so the record is bounded
//! by the membership. A disk is recorded only from a connection this node
//! dialed, to the member's replicated address (a dial to an address a
//! stranger announced, or to a removed member's old process, does not
//! count, nor is it adopted when the id becomes a member): an inbound
//! handshake is checked, never
//! recorded, so whoever connects claiming a member's id cannot pin a disk
//! that locks the real member out. A node that leaves the membership is
//! forgotten, so one removed and added back (the way to replace a lost
//! disk) is learned afresh, also when the removal and the re-addition
//! reach this node together: the node task shows every configuration
//! written to the log, in log order, then the one in force
//! (`set_members_in_turn`), not only the one in force. A node that
//! becomes a member adopts the disk
//! of its live outbound connection if it has one, else the disk of its
//! next outbound handshake; a handshake from a non-member is never
//! recorded (a removed node's old process must not pin its old disk). The
//! transport dials every member, so each node learns every member's disk,
//! not only its leader's.
//!
//! The record is saved in the data directory's `PEERS` file by the disk
//! thread: every change bumps a version and wakes it (`unsaved`, `saved`),
//! and a restarted node starts from the saved record, so it still refuses
//! a member wiped while it was down. A crash between a change and its
//! save loses that change only: a disk learned is learned again from the
//! next dialed handshake, as on first sight; a disk forgotten stays
//! recorded (the member's replacement is refused until `PEERS` is
//! deleted: the safe side). What stays open: the first sight of a member
//! is trusted (closing that needs the disk ids in the replicated
//! membership).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use xraft::{Membership, NodeId};
use xraft_storage::DiskId;

/// The registry, shared by the listener and the writer tasks.
pub(crate) struct PeerDisks {
    inner: Mutex<Inner>,
    /// Connections refused because a member came with another disk.
    refused: AtomicU64,
    /// Asks for a save of the record (wakes the disk thread).
    wake: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for PeerDisks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerDisks").field("inner", &self.inner).finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// The membership in force; empty until this node knows one.
    members: BTreeSet<NodeId>,
    /// The members' replicated addresses (where a dial must have gone for
    /// its disk to count).
    addrs: BTreeMap<NodeId, String>,
    /// Each member's disk, once seen.
    known: BTreeMap<NodeId, DiskId>,
    /// Open dialed connections per node: the disk they came with, the
    /// address dialed, and how many.
    live: BTreeMap<NodeId, (DiskId, String, usize)>,
    /// Bumped whenever `known` changes.
    version: u64,
    /// The newest version saved.
    saved: u64,
    /// A version that forgot disks because of configurations being written
    /// to the log: nothing is saved until the group carrying that write is
    /// durable (`release`), so `PEERS` never gets ahead of the log.
    held: Option<u64>,
}

impl Inner {
    /// Whether a dial of member `id` at `addr` went to its replicated
    /// address (any address if the membership names none): only then does
    /// its disk count. A dial to an address a stranger announced, or to a
    /// removed member's old process, does not.
    fn at_member_addr(&self, id: NodeId, addr: &str) -> bool {
        self.members.contains(&id)
            && self.addrs.get(&id).is_none_or(|a| a.is_empty() || a.as_str() == addr)
    }

    /// Membership `m` takes effect: forgets those it leaves out, and
    /// newcomers adopt the disk of a live connection dialed at their
    /// replicated address. One without voters (a node not yet added)
    /// changes nothing.
    fn adopt(&mut self, m: &Membership) {
        if m.voters.is_empty() {
            return;
        }
        let now = members(m);
        self.addrs = m.addrs.iter().map(|(id, a)| (*id, a.clone())).collect();
        if now == self.members {
            return;
        }
        self.known.retain(|id, _| now.contains(id));
        // A connection opened before a member left must not give it its
        // old disk back when it returns (`Live::drop` tolerates the gap);
        // a joiner's connection (never a member yet) is kept.
        let was = &self.members;
        self.live.retain(|id, _| now.contains(id) || !was.contains(id));
        let newcomers: Vec<NodeId> = now.difference(&self.members).copied().collect();
        self.members = now;
        for id in newcomers {
            // A newcomer: whatever was known of it before it was removed
            // (if it ever was a member) was dropped above.
            let dialed = self.live.get(&id).map(|(disk, addr, _)| (*disk, addr.clone()));
            if let Some((disk, _)) = dialed.filter(|(_, a)| self.at_member_addr(id, a)) {
                self.known.insert(id, disk);
            }
        }
    }
}

/// A connection refused because a member came with another disk.
#[derive(Debug)]
pub(crate) struct Refused {
    /// Why, naming both disks and the remedy.
    pub reason: String,
    /// How many connections this registry refused so far, this one included.
    pub nth: u64,
}

impl Refused {
    /// Whether this refusal is worth a warning: the first and every 50th
    /// (a refused node keeps redialing).
    pub fn loud(&self) -> bool {
        self.nth == 1 || self.nth.is_multiple_of(50)
    }
}

/// An open connection's claim on the registry; released when dropped.
#[derive(Debug)]
pub(crate) struct Live {
    disks: Arc<PeerDisks>,
    id: NodeId,
    disk: DiskId,
    /// The address dialed; only dialed connections count in `live`.
    dialed: Option<String>,
}

impl PeerDisks {
    /// A registry for a node whose membership is `m` (without voters if it
    /// knows none yet), starting from the `recorded` disks (as saved in
    /// `PEERS`) of those still members; `wake` is called after each change
    /// of the record, to have it saved.
    pub fn new(
        m: &Membership,
        recorded: &[(NodeId, DiskId)],
        wake: Box<dyn Fn() + Send + Sync>,
    ) -> Arc<PeerDisks> {
        let members = members(m);
        let known: BTreeMap<NodeId, DiskId> = recorded
            .iter()
            .filter(|(id, _)| members.is_empty() || members.contains(id))
            .copied()
            .collect();
        // A record that lost non-members is saved again at the first chance.
        let version = u64::from(known.len() != recorded.len());
        let addrs = m.addrs.iter().map(|(id, a)| (*id, a.clone())).collect();
        let live = BTreeMap::new();
        let inner = Inner { members, addrs, known, live, version, saved: 0, held: None };
        Arc::new(PeerDisks { inner: Mutex::new(inner), refused: AtomicU64::new(0), wake })
    }

    /// The record and its version, if that version is not saved yet.
    pub fn unsaved(&self) -> Option<(u64, Vec<(NodeId, DiskId)>)> {
        let g = self.lock();
        if g.held.is_some() || g.version == g.saved {
            return None;
        }
        Some((g.version, g.known.iter().map(|(i, d)| (*i, *d)).collect()))
    }

    /// The log write carrying the configurations behind version `v` (from
    /// `set_members_in_turn`) is durable: the record may be saved again.
    pub fn release(&self, v: u64) {
        let mut g = self.lock();
        if g.held.is_some_and(|h| h <= v) {
            g.held = None;
        }
    }

    /// Version `v` of the record (from `unsaved`) is durable.
    pub fn saved(&self, v: u64) {
        let mut g = self.lock();
        g.saved = g.saved.max(v);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The sections below cannot panic half-way; a poisoned lock still
        // holds a consistent map.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection to (`dialed`, at that address) or from node `id`, whose
    /// data directory has `disk`, completed its handshake. Refuses it, with
    /// the reason, if `id` is a member known with another disk; records
    /// `disk` if `id` is a member not yet known and this node dialed it at
    /// its replicated address.
    pub fn open(
        self: &Arc<Self>,
        id: NodeId,
        disk: DiskId,
        dialed: Option<&str>,
    ) -> Result<Live, Refused> {
        let mut g = self.lock();
        let mut changed = false;
        match g.known.get(&id) {
            Some(&was) if was != disk => {
                drop(g);
                let nth = self.refused.fetch_add(1, Relaxed) + 1;
                let reason = format!(
                    "node {} came back with another data directory (disk {disk}, was {was}): \
                     it lost its state and must not vote; remove it and add it back \
                     (if that was done while this node was behind, delete PEERS in \
                     this node's data directory)",
                    id.0
                );
                return Err(Refused { reason, nth });
            }
            Some(_) => {}
            None => {
                if dialed.is_some_and(|a| g.at_member_addr(id, a)) {
                    g.known.insert(id, disk);
                    g.version += 1;
                    changed = true;
                }
            }
        }
        if let Some(addr) = dialed {
            let slot = g.live.entry(id).or_insert((disk, addr.to_owned(), 0));
            if slot.0 != disk || slot.1 != addr {
                // Two processes claim one id; the newest connection speaks.
                *slot = (disk, addr.to_owned(), 0);
            }
            slot.2 += 1;
        }
        drop(g);
        if changed {
            (self.wake)();
        }
        Ok(Live { disks: Arc::clone(self), id, disk, dialed: dialed.map(str::to_owned) })
    }

    /// The membership in force changed: forgets nodes that left it, and
    /// learns newcomers' disks from their open connections. A membership
    /// without voters (a node not yet added) leaves the registry as it is.
    pub fn set_members(&self, m: &Membership) {
        if self.set_members_in_turn(&[], m, false).is_some() {
            (self.wake)();
        }
    }

    /// Memberships `seen` were written to the log, in this order, since the last
    /// call; `in_force` is the one in force now. Each in turn, then
    /// `in_force`, as one change of the record (one save): a member that
    /// one of them leaves out is forgotten, so a member removed and added
    /// back is learned afresh even if this node never had the removal in
    /// force. If the record changed, returns its version; with `hold`, that
    /// version is held (not saved) until `release`d: the caller sends the
    /// log write behind the change with it, and the disk thread releases it
    /// once that write is durable.
    #[must_use]
    pub fn set_members_in_turn(
        &self,
        seen: &[Membership],
        in_force: &Membership,
        hold: bool,
    ) -> Option<u64> {
        let mut g = self.lock();
        let before = g.known.clone();
        for m in seen.iter().chain(std::iter::once(in_force)) {
            g.adopt(m);
        }
        if g.known == before {
            return None;
        }
        g.version += 1;
        let v = g.version;
        if hold {
            g.held = Some(v);
        }
        Some(v)
    }

    /// Members whose disk is known.
    pub fn known(&self) -> usize {
        self.lock().known.len()
    }

    /// Connections refused so far because a member came with another disk.
    pub fn refused(&self) -> u64 {
        self.refused.load(Relaxed)
    }
}

/// Voters and learners; none if there are no voters.
fn members(m: &Membership) -> BTreeSet<NodeId> {
    if m.voters.is_empty() {
        return BTreeSet::new();
    }
    m.voters.iter().chain(&m.learners).copied().collect()
}

impl Drop for Live {
    fn drop(&mut self) {
        let Some(addr) = &self.dialed else { return };
        let mut g = self.disks.lock();
        if let Some(slot) = g.live.get_mut(&self.id) {
            if slot.0 == self.disk && &slot.1 == addr {
                slot.2 -= 1;
                if slot.2 == 0 {
                    g.live.remove(&self.id);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn registry(m: &Membership) -> Arc<PeerDisks> {
        PeerDisks::new(m, &[], Box::new(|| {}))
    }

    fn voters(ids: &[u64]) -> Membership {
        Membership::with_voters(ids.iter().map(|i| NodeId(*i)))
    }

    const A: DiskId = DiskId(0xa);
    const B: DiskId = DiskId(0xb);

    #[test]
    fn a_member_with_another_disk_is_refused() {
        let d = registry(&voters(&[1, 2]));
        let first = d.open(NodeId(2), A, Some("a")).expect("first sight");
        drop(first);
        let again = d.open(NodeId(2), A, Some("a")).expect("same disk again");
        let r = d.open(NodeId(2), B, Some("a")).unwrap_err();
        assert!(r.reason.contains("node 2 came back"), "{}", r.reason);
        assert!(r.loud() && r.nth == 1);
        assert_eq!(d.refused(), 1);
        drop(again);
        // Closing every connection does not forget the member's disk.
        let r = d.open(NodeId(2), B, Some("a")).unwrap_err();
        assert!(!r.loud() && r.nth == 2, "later refusals are quiet");
        assert_eq!(d.refused(), 2);
    }

    /// A handshake this node did not dial (anyone can connect and claim a
    /// member's id) is checked but never recorded, nor adopted.
    #[test]
    fn only_dialed_connections_record_a_disk() {
        let d = registry(&voters(&[1, 2, 3]));
        // A spoofer connects first, claiming node 2 with disk B.
        let spoof = d.open(NodeId(2), B, None).expect("nothing known yet");
        // The real node 2, dialed at its address, has disk A: accepted.
        drop(d.open(NodeId(2), A, Some("a")).expect("the dialed disk is recorded"));
        // From now on the spoofer's disk is refused either way.
        assert!(d.open(NodeId(2), B, None).is_err());
        assert!(d.open(NodeId(2), A, None).is_ok());
        drop(spoof);
        // A newcomer does not adopt the disk of an inbound connection.
        let inbound = d.open(NodeId(4), B, None).unwrap();
        d.set_members(&voters(&[1, 2, 3, 4]));
        assert_eq!(d.known(), 1, "only node 2's dialed disk");
        drop(inbound);
        drop(d.open(NodeId(4), A, Some("a")).unwrap());
        assert!(d.open(NodeId(4), B, None).is_err());
    }

    #[test]
    fn a_removed_and_re_added_member_is_learned_afresh() {
        let d = registry(&voters(&[1, 2, 3]));
        drop(d.open(NodeId(3), A, Some("a")).unwrap());
        d.set_members(&voters(&[1, 2]));
        // The removed node's old process still dials: not recorded.
        drop(d.open(NodeId(3), A, Some("a")).unwrap());
        // Its replacement, with an empty directory, is added back.
        let new = d.open(NodeId(3), B, Some("a")).expect("a non-member is not checked");
        d.set_members(&voters(&[1, 2, 3]));
        drop(new);
        assert!(d.open(NodeId(3), A, Some("a")).is_err(), "the new disk is the one recorded");
        assert!(d.open(NodeId(3), B, Some("a")).is_ok());
    }

    #[test]
    fn a_newcomer_adopts_its_live_connection_only() {
        let d = registry(&voters(&[1, 2]));
        // A joiner connected before it was added, and is still connected.
        let live = d.open(NodeId(4), A, Some("a")).unwrap();
        // A node that came and went while not a member is not adopted.
        drop(d.open(NodeId(5), A, Some("a")).unwrap());
        d.set_members(&voters(&[1, 2, 4, 5]));
        assert!(d.open(NodeId(4), B, Some("a")).is_err(), "adopted from the live connection");
        assert!(d.open(NodeId(5), B, Some("a")).is_ok(), "first handshake as a member is recorded");
        assert!(d.open(NodeId(5), A, Some("a")).is_err());
        drop(live);
    }

    #[test]
    fn a_membership_without_voters_changes_nothing() {
        let d = registry(&Membership::default());
        drop(d.open(NodeId(1), A, Some("a")).unwrap());
        d.set_members(&Membership::default());
        assert!(d.open(NodeId(1), B, Some("a")).is_ok(), "not a known member");
        let live = d.open(NodeId(1), B, Some("a")).unwrap();
        d.set_members(&voters(&[1, 2]));
        assert!(d.open(NodeId(1), A, Some("a")).is_err());
        drop(live);
        // Learners are members too.
        let mut m = voters(&[1]);
        m.learners.insert(NodeId(2));
        d.set_members(&m);
        drop(d.open(NodeId(2), A, Some("a")).unwrap());
        assert!(d.open(NodeId(2), B, Some("a")).is_err());
    }

    #[test]
    fn a_restarted_registry_starts_from_the_saved_record_of_members() {
        let wakes = Arc::new(AtomicU64::new(0));
        let w = Arc::clone(&wakes);
        let recorded = [(NodeId(2), A), (NodeId(9), B)];
        let wake = Box::new(move || {
            w.fetch_add(1, Relaxed);
        });
        let d = PeerDisks::new(&voters(&[1, 2, 3]), &recorded, wake);
        // Node 9 left while this node was down: dropped, and saved again.
        let (v, list) = d.unsaved().expect("the filtered record is unsaved");
        assert_eq!(list, vec![(NodeId(2), A)]);
        d.saved(v);
        assert!(d.unsaved().is_none());
        assert!(
            d.open(NodeId(2), B, Some("a")).is_err(),
            "the saved disk is enforced after a restart"
        );
        assert_eq!(wakes.load(Relaxed), 0, "a refusal changes nothing to save");
        // Learning a disk and forgetting a member each ask for a save.
        drop(d.open(NodeId(3), B, Some("a")).unwrap());
        assert_eq!(wakes.load(Relaxed), 1);
        let (v3, list) = d.unsaved().expect("learned");
        assert_eq!(list, vec![(NodeId(2), A), (NodeId(3), B)]);
        d.set_members(&voters(&[1, 2]));
        assert_eq!(wakes.load(Relaxed), 2);
        // A save of an older version does not hide the newer one.
        d.saved(v3);
        let (v, list) = d.unsaved().expect("forgot 3");
        assert_eq!(list, vec![(NodeId(2), A)]);
        d.saved(v);
        assert!(d.unsaved().is_none());
        // A record read before any membership is known is kept whole.
        let d = PeerDisks::new(&Membership::default(), &recorded, Box::new(|| {}));
        assert!(d.unsaved().is_none());
        assert_eq!(d.known(), 2);
    }

    /// A member removed and added back in one write, its old process still
    /// connected: the old connection does not give it its old disk back.
    #[test]
    fn a_member_re_added_does_not_get_its_old_disk_from_an_old_connection() {
        let d = registry(&voters(&[1, 2, 3, 4]));
        let old = d.open(NodeId(4), A, Some("a")).expect("recorded");
        let v = d.set_members_in_turn(&[voters(&[1, 2, 3])], &voters(&[1, 2, 3, 4]), true);
        let v = v.expect("changed");
        assert!(d.unsaved().is_none(), "held until the write is durable");
        d.release(v);
        assert!(d.unsaved().is_some());
        assert_eq!(d.known(), 0, "forgotten, not adopted from the old connection");
        drop(d.open(NodeId(4), B, Some("a")).expect("the replacement is learned"));
        assert!(d.open(NodeId(4), A, None).is_err(), "the old disk is refused now");
        drop(old);
        assert!(d.open(NodeId(4), B, None).is_ok());
    }

    /// A change from configurations being written is not saved before the
    /// write is durable, nor is anything after it; releasing an older
    /// write's version does not release a newer one.
    #[test]
    fn a_forget_is_saved_only_after_its_write_is_durable() {
        let d = registry(&voters(&[1, 2, 3, 4]));
        drop(d.open(NodeId(3), A, Some("a")).unwrap());
        drop(d.open(NodeId(4), A, Some("a")).unwrap());
        let (v0, _) = d.unsaved().expect("learned");
        d.saved(v0);
        let v1 = d.set_members_in_turn(&[voters(&[1, 2, 3])], &voters(&[1, 2, 3]), true).unwrap();
        assert!(d.unsaved().is_none(), "held");
        let v2 = d.set_members_in_turn(&[voters(&[1, 2])], &voters(&[1, 2]), true).unwrap();
        d.release(v1);
        assert!(d.unsaved().is_none(), "the newer write is not durable yet");
        d.release(v2);
        let (v, list) = d.unsaved().expect("released");
        assert_eq!((v, list), (v2, vec![]));
    }

    /// Only a dial to the member's replicated address counts: a live
    /// connection to another address (a stranger's announced one, a
    /// removed process's old one) is neither recorded nor adopted.
    #[test]
    fn only_dials_to_the_replicated_address_count() {
        let with_addrs = |ids: &[(u64, &str)]| {
            Membership::with_addrs(ids.iter().map(|(i, a)| (NodeId(*i), (*a).to_owned())))
        };
        let d = registry(&with_addrs(&[(1, "h1"), (2, "h2")]));
        // Node 3 announced "evil" before it was added; a writer dialed it.
        let stray = d.open(NodeId(3), A, Some("evil")).unwrap();
        assert!(
            d.set_members_in_turn(&[], &with_addrs(&[(1, "h1"), (2, "h2"), (3, "h3")]), false)
                .is_none(),
            "nothing adopted from the stray connection"
        );
        // A dial to node 2 somewhere else is not recorded either.
        drop(d.open(NodeId(2), A, Some("elsewhere")).unwrap());
        assert_eq!(d.known(), 0);
        // The dials to the replicated addresses are.
        drop(d.open(NodeId(3), B, Some("h3")).unwrap());
        drop(d.open(NodeId(2), B, Some("h2")).unwrap());
        assert_eq!(d.known(), 2);
        assert!(d.open(NodeId(3), A, None).is_err());
        drop(stray);
    }
}
