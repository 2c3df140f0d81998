//! A bounded map for a node's caches that never forgets what is in use all at once.
//!
//! Two generations: entries go into the young one; when it holds half the bound it becomes
//! the old one, and the old one before it is dropped. An entry found in the old generation
//! moves back into the young one. So anything used at least once per half-bound of new
//! entries stays, memory is bounded by the whole bound, and a full cache drops only what
//! was not used lately — where emptying the whole map sent every active copy's next
//! request to the database at once (a stall on the node that grows with its load).
//!
//! Nothing in these caches is trusted on its own (each is a copy of what the database
//! holds, checked again where it matters), so a miss only costs a read.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// A map holding at most `max` entries, dropping those least recently used in bulk (see
/// the module's comment). Not locked itself: its owner holds it in a `Mutex`.
pub(crate) struct Generations<K, V> {
    young: HashMap<K, V>,
    old: HashMap<K, V>,
    half: usize,
}

/// A generation no longer kept, given back so that it is dropped after the owner's lock is
/// released (dropping 50,000 entries takes a while).
pub(crate) type Dropped<K, V> = Option<HashMap<K, V>>;

impl<K: Hash + Eq, V> Generations<K, V> {
    /// An empty map holding at most `max` entries (at least 2).
    pub(crate) fn new(max: usize) -> Self {
        Self {
            young: HashMap::new(),
            old: HashMap::new(),
            half: (max / 2).max(1),
        }
    }

    /// The entry under `key`, moved into the young generation if it was in the old one.
    #[must_use = "the dropped generation is dropped after releasing the lock"]
    pub(crate) fn get<Q>(&mut self, key: &Q) -> (Option<&V>, Dropped<K, V>)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.young.contains_key(key) {
            return (self.young.get(key), None);
        }
        match self.old.remove_entry(key) {
            Some((k, v)) => {
                let dropped = self.insert(k, v);
                (self.young.get(key), dropped)
            }
            None => (None, None),
        }
    }

    /// Whether `key` has an entry (without moving it).
    #[cfg(test)]
    pub(crate) fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.young.contains_key(key) || self.old.contains_key(key)
    }

    /// Puts `value` under `key` in the young generation; when that one is full it becomes
    /// the old one and the previous old one is given back.
    #[must_use = "the dropped generation is dropped after releasing the lock"]
    pub(crate) fn insert(&mut self, key: K, value: V) -> Dropped<K, V> {
        self.old.remove(&key);
        let mut dropped = None;
        if !self.young.contains_key(&key) && self.young.len() >= self.half {
            let young = std::mem::take(&mut self.young);
            dropped = Some(std::mem::replace(&mut self.old, young));
        }
        self.young.insert(key, value);
        dropped
    }

    /// Removes the entry under `key`.
    pub(crate) fn remove(&mut self, key: &K) {
        if self.young.remove(key).is_none() {
            self.old.remove(key);
        }
    }

    /// How many entries are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_never_holds_more_than_its_bound() {
        let mut g = Generations::new(10);
        for n in 0..1000 {
            let _ = g.insert(n, n);
            assert!(g.len() <= 10, "{} entries after {n}", g.len());
        }
        assert!(g.contains(&999));
        assert!(!g.contains(&0));
    }

    #[test]
    fn an_entry_in_use_survives_any_number_of_new_ones() {
        // Emptying the whole map when full (the previous behaviour) fails this: the hot
        // entry goes with the rest.
        let mut g = Generations::new(4);
        let _ = g.insert("hot", 0);
        for n in 1..100 {
            let _ = g.insert("new", n);
            let _ = g.insert(if n % 2 == 0 { "a" } else { "b" }, n);
            let (found, _dropped) = g.get(&"hot");
            assert_eq!(found, Some(&0), "lost after {n} rounds");
        }
    }

    #[test]
    fn an_unused_entry_goes_after_two_generations() {
        let mut g = Generations::new(4);
        let _ = g.insert(0, ());
        let _ = g.insert(1, ());
        let _ = g.insert(2, ()); // the young generation (0, 1) becomes the old one
        assert!(g.contains(&0));
        let _ = g.insert(3, ());
        let dropped = g.insert(4, ()); // (0, 1) dropped
        assert!(dropped.is_some_and(|d| d.len() == 2));
        assert!(!g.contains(&0) && !g.contains(&1));
        assert!(g.contains(&2) && g.contains(&4));
    }

    #[test]
    fn a_removed_entry_is_gone_from_either_generation() {
        let mut g = Generations::new(4);
        for n in 0..3 {
            let _ = g.insert(n, n);
        }
        g.remove(&0); // old
        g.remove(&2); // young
        assert_eq!(g.len(), 1);
        assert!(!g.contains(&0) && !g.contains(&2));
        assert_eq!(g.get(&1).0, Some(&1));
    }

    #[test]
    fn a_value_put_again_replaces_the_old_one() {
        let mut g = Generations::new(4);
        for n in 0..3 {
            let _ = g.insert(n, n);
        }
        let _ = g.insert(0, 10); // was in the old generation
        assert_eq!(g.len(), 3);
        assert_eq!(g.get(&0).0, Some(&10));
    }
}
