//! Hot tenants: a tenant whose affinity set keeps being full grows its
//! `k` (up to its tier's `k_max`) and shrinks back once calm, with
//! hysteresis so that it does not flap.
//!
//! Pure: one tenant's record is a [`Hot`] value (packed into a `u64` by the
//! caller's table) and [`step`] is its transition on one request's
//! [`Pressure`]. The score counts requests that found every member over
//! its cap up and requests that found every member at most half full
//! down (others change nothing): at [`GROW`], `k` grows by one; at
//! -[`SHRINK`], and `hold` seconds after the last change, it shrinks by
//! one. The gap between the two thresholds, and the hold, are the
//! hysteresis: load that hovers around the cap moves nothing.

use super::choose::Pressure;

/// Full-set requests (net of calm ones) that grow `k` by one.
pub const GROW: i16 = 16;
/// Calm requests (net of full ones) that shrink `k` by one.
pub const SHRINK: i16 = 64;

/// One tenant's record: extra servers over `k_min`, the score, and when
/// `k` last changed (seconds, wrapping at 2^16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hot {
    /// The tenant's ring point (its key in the table).
    pub key: u32,
    pub extra: u8,
    pub score: i16,
    pub stamp: u16,
}

impl Hot {
    /// Packs into 64 bits: key 32, extra 4, score 12 (offset), stamp 16.
    pub fn pack(self) -> u64 {
        let score = (self.score.clamp(-2047, 2047) + 2048) as u64;
        u64::from(self.key) << 32
            | u64::from(self.extra & 0xf) << 28
            | score << 16
            | u64::from(self.stamp)
    }

    pub fn unpack(v: u64) -> Hot {
        Hot {
            key: (v >> 32) as u32,
            extra: ((v >> 28) & 0xf) as u8,
            score: ((v >> 16) & 0xfff) as i16 - 2048,
            stamp: v as u16,
        }
    }

    /// The tenant's `k` given this record.
    pub fn k(self, k_min: usize, k_max: usize) -> usize {
        (k_min + usize::from(self.extra)).min(k_max)
    }
}

/// The record after one request of `key` met `pressure`, or `None` when
/// nothing changes (no write). `slot` is what the table holds for the
/// tenant's slot (maybe another tenant's record, or empty).
pub fn step(
    slot: Hot,
    key: u32,
    pressure: Pressure,
    now_s: u16,
    hold_s: u16,
    k_min: usize,
    k_max: usize,
) -> Option<Hot> {
    let since = now_s.wrapping_sub(slot.stamp);
    if slot.key != key || slot == Hot::default() {
        // Another tenant's slot (or an empty one): taken over only by a
        // full set, and only from a record that is back at k_min and quiet.
        let idle = slot.extra == 0 && (slot.score <= 0 || since >= hold_s);
        return (pressure == Pressure::Over && idle && k_max > k_min).then_some(Hot {
            key,
            extra: 0,
            score: 1,
            stamp: now_s,
        });
    }
    let mut h = slot;
    match pressure {
        Pressure::Over => {
            h.score = (h.score + 1).min(GROW);
            if h.score >= GROW && h.k(k_min, k_max) < k_max {
                h.extra += 1;
                h.score = 0;
                h.stamp = now_s;
            }
        }
        Pressure::Calm => {
            if h.extra == 0 && h.score <= 0 {
                return None;
            }
            h.score = (h.score - 1).max(-SHRINK);
            if h.score <= -SHRINK && h.extra > 0 && since >= hold_s {
                h.extra -= 1;
                h.score = 0;
                h.stamp = now_s;
            }
        }
        Pressure::Normal => return None,
    }
    (h != slot).then_some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mut h: Hot, p: Pressure, n: usize, now: u16) -> Hot {
        for _ in 0..n {
            if let Some(next) = step(h, 7, p, now, 5, 1, 3) {
                h = next;
            }
        }
        h
    }

    #[test]
    fn packs_and_unpacks() {
        for h in [
            Hot {
                key: u32::MAX,
                extra: 7,
                score: -64,
                stamp: 65535,
            },
            Hot {
                key: 1,
                extra: 0,
                score: 16,
                stamp: 0,
            },
            Hot::default(),
        ] {
            assert_eq!(Hot::unpack(h.pack()), h);
        }
    }

    #[test]
    fn grows_under_sustained_pressure_up_to_k_max() {
        let h = run(Hot::default(), Pressure::Over, 1, 100);
        assert_eq!((h.key, h.k(1, 3)), (7, 1), "the slot is taken");
        let h = run(h, Pressure::Over, GROW as usize - 2, 100);
        assert_eq!(h.k(1, 3), 1, "not yet");
        let h = run(h, Pressure::Over, 1, 100);
        assert_eq!(h.k(1, 3), 2);
        let h = run(h, Pressure::Over, 1000, 100);
        assert_eq!(h.k(1, 3), 3, "capped at k_max");
    }

    #[test]
    fn shrinks_only_when_calm_and_after_the_hold() {
        let hot = run(Hot::default(), Pressure::Over, 100, 100);
        assert_eq!(hot.k(1, 3), 3);
        // Calm, but within the hold: stays.
        let h = run(hot, Pressure::Calm, 1000, 102);
        assert_eq!(h.k(1, 3), 3);
        // Normal load changes nothing at all.
        assert_eq!(step(h, 7, Pressure::Normal, 200, 5, 1, 3), None);
        // After the hold, SHRINK calm requests per step down.
        let h = run(h, Pressure::Calm, SHRINK as usize, 110);
        assert_eq!(h.k(1, 3), 2);
        let h = run(h, Pressure::Calm, 1000, 110);
        assert_eq!(h.k(1, 3), 2, "the next step waits for the hold again");
        let h = run(h, Pressure::Calm, SHRINK as usize, 116);
        assert_eq!(h.k(1, 3), 1);
    }

    #[test]
    fn alternating_pressure_does_not_flap() {
        let mut h = run(Hot::default(), Pressure::Over, 2 * GROW as usize, 0);
        let k = h.k(1, 3);
        for t in 0..200u16 {
            h = run(h, Pressure::Over, 1, t);
            h = run(h, Pressure::Calm, 1, t);
        }
        assert_eq!(h.k(1, 3), k);
    }

    #[test]
    fn a_busy_slot_is_not_taken_over() {
        let other = Hot {
            key: 9,
            extra: 1,
            score: 0,
            stamp: 100,
        };
        assert_eq!(step(other, 7, Pressure::Over, 101, 5, 1, 3), None);
        let quiet = Hot {
            key: 9,
            extra: 0,
            score: -3,
            stamp: 100,
        };
        assert_eq!(
            step(quiet, 7, Pressure::Over, 101, 5, 1, 3).map(|h| h.key),
            Some(7)
        );
        // A tier that cannot grow never takes a slot.
        assert_eq!(step(Hot::default(), 7, Pressure::Over, 1, 5, 2, 2), None);
    }
}
