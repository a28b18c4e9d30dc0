//! One pool's consistent-hash ring: built with the `hashring` crate from
//! `(server id, replica)` virtual nodes, then flattened for the request
//! path (sorted points, owners, the first [`PREFIX`] distinct servers of
//! every slot, and a bucket index over the points).

use std::hash::{BuildHasher, Hash, Hasher};

use hashring::{DefaultHashBuilder, HashRing};

use super::{PREFIX, VNODES_PER_WEIGHT};
use crate::config::{Pool, ServerIdx};

/// One virtual node: hashed from the server's id and the replica number.
#[derive(Clone, Debug)]
struct VNode<'a> {
    id: &'a str,
    replica: u32,
    server: ServerIdx,
}

impl Hash for VNode<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
        self.replica.hash(state);
    }
}

/// The ring of one pool.
#[derive(Debug, Clone)]
pub struct Ring {
    /// Sorted ring points.
    points: Box<[u64]>,
    /// The server owning each point.
    owners: Box<[ServerIdx]>,
    /// For each point, the first `PREFIX` distinct servers from there on.
    firsts: Box<[[ServerIdx; PREFIX]]>,
    servers: usize,
    /// `buckets[b]`: the first slot whose point is at or after bucket `b`'s
    /// start (the top `bucket_bits` of a point), so a lookup scans a slot or
    /// two instead of binary-searching the ring.
    buckets: Box<[u32]>,
    bucket_bits: u32,
}

impl Ring {
    pub fn build(pool: &Pool) -> Ring {
        let mut ring: HashRing<VNode<'_>> = HashRing::new();
        let vnodes: Vec<VNode<'_>> = pool
            .servers
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                (0..s.weight * VNODES_PER_WEIGHT).map(move |replica| VNode {
                    id: &s.id,
                    replica,
                    server: i as ServerIdx,
                })
            })
            .collect();
        ring.batch_add(vnodes);
        // `hashring` keeps its points private but iterates in ring order and
        // hashes with a public, fixed-key hasher: recompute the points.
        let nodes: Vec<VNode<'_>> = ring.into_iter().collect();
        let points: Box<[u64]> = nodes
            .iter()
            .map(|n| DefaultHashBuilder.hash_one(n))
            .collect();
        let owners: Box<[ServerIdx]> = nodes.iter().map(|n| n.server).collect();
        let servers = pool.servers.len();
        let depth = PREFIX.min(servers);
        let firsts = (0..owners.len())
            .map(|start| {
                let mut out = [0; PREFIX];
                let mut n = 0;
                for &s in owners[start..].iter().chain(owners[..start].iter()) {
                    if n == depth {
                        break;
                    }
                    if !out[..n].contains(&s) {
                        out[n] = s;
                        n += 1;
                    }
                }
                out
            })
            .collect();
        // About one ring point per bucket.
        let bucket_bits = (points.len().max(1).next_power_of_two().trailing_zeros()).clamp(1, 24);
        let buckets = (0..1u64 << bucket_bits)
            .map(|b| {
                let start = b << (64 - bucket_bits);
                points.partition_point(|&p| p < start) as u32
            })
            .collect();
        Ring {
            points,
            owners,
            firsts,
            servers,
            buckets,
            bucket_bits,
        }
    }

    /// Number of servers on the ring.
    pub fn servers(&self) -> usize {
        self.servers
    }

    /// The slot a point falls on: the first ring point at or after it.
    #[inline]
    fn slot(&self, point: u32) -> usize {
        let bucket = point >> (32 - self.bucket_bits);
        let point = u64::from(point) << 32;
        let mut i = self.buckets[bucket as usize] as usize;
        while i < self.points.len() && self.points[i] < point {
            i += 1;
        }
        if i == self.points.len() { 0 } else { i }
    }

    /// Fills `out` with the first distinct servers of the preference list of
    /// `point`; returns how many (at most the number of servers).
    #[inline]
    pub fn preference_into(&self, point: u32, out: &mut [ServerIdx]) -> usize {
        if self.points.is_empty() {
            return 0;
        }
        let slot = self.slot(point);
        let want = out.len().min(self.servers);
        let fast = want.min(PREFIX);
        out[..fast].copy_from_slice(&self.firsts[slot][..fast]);
        if want == fast {
            return fast;
        }
        let mut n = fast;
        for &s in self.owners[slot..].iter().chain(self.owners[..slot].iter()) {
            if n == want {
                break;
            }
            if !out[..n].contains(&s) {
                out[n] = s;
                n += 1;
            }
        }
        n
    }

    /// The whole preference list of `point` (every server, ring order).
    pub fn preference(&self, point: u32) -> Vec<ServerIdx> {
        let mut out = Vec::with_capacity(self.servers);
        if self.points.is_empty() {
            return out;
        }
        let mut seen = vec![false; self.servers];
        let slot = self.slot(point);
        for &s in self.owners[slot..].iter().chain(self.owners[..slot].iter()) {
            if !std::mem::replace(&mut seen[usize::from(s)], true) {
                out.push(s);
                if out.len() == self.servers {
                    break;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Server;
    use crate::placement::{MAX_ATTEMPTS, ring_point};

    fn pool(n: usize) -> Pool {
        Pool {
            name: "p".into(),
            servers: (0..n)
                .map(|i| Server {
                    id: format!("web-{i:02}"),
                    address: format!("127.0.0.1:{}", 8000 + i).parse().unwrap(),
                    weight: 1,
                })
                .collect(),
            check: None,
            agent: None,
            eject: crate::config::Eject {
                failures: 0,
                on: crate::config::EjectOn::Gateway,
                base: std::time::Duration::from_secs(1),
                max: std::time::Duration::from_secs(1),
            },
        }
    }

    /// Differs only when a ring point falls within the truncated 2^32
    /// window below a tenant's hash: none of these 2000 names does.
    #[test]
    fn first_server_is_what_hashring_says() {
        let p = pool(10);
        let ring = Ring::build(&p);
        let mut reference: HashRing<VNode<'_>> = HashRing::new();
        reference.batch_add(
            p.servers
                .iter()
                .enumerate()
                .flat_map(|(i, s)| {
                    (0..VNODES_PER_WEIGHT).map(move |replica| VNode {
                        id: &s.id,
                        replica,
                        server: i as u16,
                    })
                })
                .collect(),
        );
        for t in 0..2000 {
            let name = format!("tenant-{t}");
            let mut out = [0; 1];
            assert_eq!(ring.preference_into(ring_point(&name), &mut out), 1);
            assert_eq!(
                out[0],
                reference.get(&name.as_str()).unwrap().server,
                "{name}"
            );
        }
    }

    #[test]
    fn preference_lists_are_distinct_and_agree() {
        let ring = Ring::build(&pool(7));
        for t in 0..500 {
            let point = ring_point(&format!("t{t}"));
            let full = ring.preference(point);
            let mut sorted = full.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..7).collect::<Vec<_>>());
            let mut out = [0; MAX_ATTEMPTS];
            let n = ring.preference_into(point, &mut out);
            assert_eq!(n, 7);
            assert_eq!(&out[..n], &full[..]);
            let mut two = [0; 2];
            assert_eq!(ring.preference_into(point, &mut two), 2);
            assert_eq!(&two[..], &full[..2]);
        }
    }

    #[test]
    fn removing_a_server_moves_only_its_tenants() {
        let before = pool(20);
        let mut after = before.clone();
        after.servers.remove(5);
        let (a, b) = (Ring::build(&before), Ring::build(&after));
        let mut moved = 0;
        for t in 0..5000 {
            let point = ring_point(&format!("t{t}"));
            let (mut x, mut y) = ([0; 1], [0; 1]);
            a.preference_into(point, &mut x);
            b.preference_into(point, &mut y);
            let (x, y) = (
                &before.servers[usize::from(x[0])].id,
                &after.servers[usize::from(y[0])].id,
            );
            if x != y {
                assert_eq!(x, "web-05", "a tenant moved off a server that stayed");
                moved += 1;
            }
        }
        // About 1/20 of the tenants were on the removed server.
        assert!((150..=350).contains(&moved), "{moved}");
    }

    #[test]
    fn weight_gives_a_proportional_share() {
        let mut p = pool(2);
        p.servers[1].weight = 3;
        let ring = Ring::build(&p);
        let heavy = (0..8000)
            .filter(|t| {
                let mut out = [0; 1];
                ring.preference_into(ring_point(&format!("t{t}")), &mut out);
                out[0] == 1
            })
            .count();
        assert!((5600..=6400).contains(&heavy), "{heavy}");
    }

    proptest::proptest! {
        /// Preference lists hold every server once, and depend on server
        /// ids, not on the order they are listed in.
        #[test]
        fn preference_is_distinct_and_independent_of_list_order(
            n in 1usize..40,
            rotate in 0usize..40,
            tenants in proptest::collection::vec("[a-z0-9-]{1,20}", 1..30),
        ) {
            let p = pool(n);
            let mut shuffled = p.clone();
            shuffled.servers.rotate_left(rotate % n);
            let (a, b) = (Ring::build(&p), Ring::build(&shuffled));
            for t in &tenants {
                let point = ring_point(t);
                let x = a.preference(point);
                let mut sorted = x.clone();
                sorted.sort_unstable();
                sorted.dedup();
                proptest::prop_assert_eq!(sorted.len(), n);
                let ids = |pool: &Pool, l: Vec<ServerIdx>| -> Vec<String> {
                    l.into_iter().map(|s| pool.servers[usize::from(s)].id.clone()).collect()
                };
                proptest::prop_assert_eq!(ids(&p, x), ids(&shuffled, b.preference(point)));
            }
        }
    }

    #[test]
    fn bucketed_slots_agree_with_a_binary_search() {
        let ring = Ring::build(&pool(13));
        let mut points: Vec<u32> = (0..20_000u32)
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect();
        points.extend([0, 1, u32::MAX, u32::MAX - 1]);
        points.extend(ring.points.iter().map(|&p| (p >> 32) as u32));
        for point in points {
            let wide = u64::from(point) << 32;
            let i = ring.points.partition_point(|&p| p < wide);
            let expected = if i == ring.points.len() { 0 } else { i };
            assert_eq!(ring.slot(point), expected, "{point}");
        }
    }

    #[test]
    fn a_one_server_pool_and_an_empty_one() {
        let ring = Ring::build(&pool(1));
        let mut out = [9; 3];
        assert_eq!(ring.preference_into(42, &mut out), 1);
        assert_eq!(out[0], 0);
        let empty = Ring::build(&pool(0));
        assert_eq!(empty.preference_into(42, &mut out), 0);
        assert!(empty.preference(42).is_empty());
    }
}
