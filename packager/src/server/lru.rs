//! A bounded map for a node's caches that drops the entry used least recently when full.
//!
//! Exact least-recently-used order: each entry carries the stamp of its last use, and an
//! ordered index of the stamps finds the oldest; a use moves the entry's stamp to the newest
//! (`O(log n)`: a few hundred nanoseconds beside a validation's ~600 µs). So every entry
//! used at least once per `max` other entries stays, whatever the rest do. Emptying the
//! whole map when full (the first version) sent every active copy's next request to the
//! database at once; two generations of half the bound each (the second) kept only about
//! half the bound of active entries — 80,000 copies validating in turn in a map of 100,000
//! missed on most requests.
//!
//! Nothing in these caches is trusted on its own (each is a copy of what the database
//! holds, checked again where it matters), so a miss only costs a read.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// A map holding at most `max` entries, dropping the least recently used one to make
/// room. Not locked itself: its owner holds it in a `Mutex`.
pub(crate) struct Lru<K, V> {
    entries: HashMap<K, (V, u64)>,
    /// Each entry's key under the stamp of its last use; the first is the oldest.
    order: BTreeMap<u64, K>,
    next: u64,
    max: usize,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    /// An empty map holding at most `max` entries (at least 1).
    pub(crate) fn new(max: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
            max: max.max(1),
        }
    }

    fn stamp(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// The entry under `key`, now the most recently used.
    pub(crate) fn get<Q>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.stamp();
        let (_, stamp) = self.entries.get_mut(key)?;
        let was = std::mem::replace(stamp, now);
        if let Some(k) = self.order.remove(&was) {
            self.order.insert(now, k);
        }
        self.entries.get(key).map(|(v, _)| v)
    }

    /// Puts `value` under `key`, the most recently used; when the map is full and `key` is
    /// new, the least recently used entry goes.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        let now = self.stamp();
        if let Some((_, was)) = self.entries.remove(&key) {
            self.order.remove(&was);
        } else if self.entries.len() >= self.max
            && let Some((_, oldest)) = self.order.pop_first()
        {
            self.entries.remove(&oldest);
        }
        self.order.insert(now, key.clone());
        self.entries.insert(key, (value, now));
    }

    /// Removes the entry under `key`.
    pub(crate) fn remove<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some((_, was)) = self.entries.remove(key) {
            self.order.remove(&was);
        }
    }

    /// Whether `key` has an entry (without counting as a use).
    #[cfg(test)]
    pub(crate) fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.contains_key(key)
    }

    /// How many entries are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        debug_assert_eq!(self.entries.len(), self.order.len());
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_never_holds_more_than_its_bound() {
        let mut m = Lru::new(10);
        for n in 0..1000 {
            m.insert(n, n);
            assert!(m.len() <= 10, "{} entries after {n}", m.len());
        }
        assert!(m.contains(&999) && m.contains(&990));
        assert!(!m.contains(&989) && !m.contains(&0));
    }

    #[test]
    fn an_entry_in_use_survives_any_number_of_new_ones() {
        // Emptying the whole map when full (the first version) fails this: the hot entry
        // goes with the rest.
        let mut m = Lru::new(4);
        m.insert("hot", 0);
        for n in 1..100 {
            m.insert("new", n);
            m.insert(if n % 2 == 0 { "a" } else { "b" }, n);
            assert_eq!(m.get(&"hot"), Some(&0), "lost after {n} rounds");
        }
    }

    #[test]
    fn active_entries_up_to_the_bound_all_stay() {
        // 800 entries used in turn, in a map of 1,000, with new ones coming in between: each
        // is used again before 1,000 others, so none is ever missed. Two generations of
        // half the bound each (the second version) missed most of them.
        let mut m = Lru::new(1000);
        for n in 0..800 {
            m.insert(n, n);
        }
        let mut fresh = 10_000;
        for round in 0..5 {
            for n in 0..800 {
                assert_eq!(m.get(&n), Some(&n), "entry {n} missed in round {round}");
                if n % 10 == 0 {
                    m.insert(fresh, fresh);
                    fresh += 1;
                }
            }
        }
        assert_eq!(m.len(), 1000);
    }

    #[test]
    fn the_least_recently_used_goes_first() {
        let mut m = Lru::new(3);
        m.insert(0, ());
        m.insert(1, ());
        m.insert(2, ());
        assert!(m.get(&0).is_some()); // 1 is now the oldest
        m.insert(3, ());
        assert!(!m.contains(&1));
        assert!(m.contains(&0) && m.contains(&2) && m.contains(&3));
    }

    #[test]
    fn a_removed_entry_is_gone_and_frees_its_place() {
        let mut m = Lru::new(3);
        for n in 0..3 {
            m.insert(n, n);
        }
        m.remove(&1);
        assert_eq!(m.len(), 2);
        assert!(!m.contains(&1));
        m.insert(3, 3); // room: nothing else goes
        assert!(m.contains(&0) && m.contains(&2) && m.contains(&3));
        m.remove(&7); // absent: nothing happens
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn a_value_put_again_replaces_the_old_one() {
        let mut m = Lru::new(3);
        for n in 0..3 {
            m.insert(n, n);
        }
        m.insert(0, 10);
        assert_eq!(m.len(), 3);
        assert_eq!(m.get(&0), Some(&10));
        m.insert(3, 3); // 1 is the oldest now, not 0
        assert!(m.contains(&0) && !m.contains(&1));
    }
}
