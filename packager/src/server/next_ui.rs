//! What a node remembers about a copy between two of its validations, found by the UI the
//! copy's next request will present (the one its last VAL_OK's IV rolled it to): its
//! registered card, its row as last written.
//!
//! One entry per copy: moving a copy on removes the entry under the UI it just presented,
//! so the map holds the copies this node validated, not every UI they ever had. Nothing
//! here is trusted: a remembered card is the registered one (a copy's card never changes),
//! and a remembered row is written back only if the database still holds it.

use super::lru::Lru;
use std::sync::Mutex;
use tally_core::icv::Ui;

/// A bounded map from a copy's next UI to what this node remembers of it; when full, the
/// copy validated least recently is dropped ([`Lru`]; a miss costs a read, never a wrong
/// answer).
pub(crate) struct NextUi<V> {
    map: Mutex<Lru<Ui, V>>,
}

impl<V: Clone> NextUi<V> {
    /// An empty map holding at most `max` copies.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            map: Mutex::new(Lru::new(max)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru<Ui, V>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What is remembered under `ui`.
    pub(crate) fn get(&self, ui: &Ui) -> Option<V> {
        self.lock().get(ui).cloned()
    }

    /// The copy that presented `presented` moves on to `next`: remembered under `next`
    /// only. A retry of `presented` (its answer lost) misses and is read.
    pub(crate) fn advance(&self, presented: &Ui, next: Ui, value: V) {
        let mut map = self.lock();
        map.remove(presented);
        map.insert(next, value);
    }

    /// Forgets what is remembered under `ui`.
    pub(crate) fn forget(&self, ui: &Ui) {
        self.lock().remove(ui);
    }

    /// How many copies are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ui(n: u8) -> Ui {
        Ui([n; 16])
    }

    #[test]
    fn a_copy_validated_many_times_is_one_entry() {
        let m = NextUi::new(100);
        let mut presented = ui(0);
        for n in 1..=50 {
            m.advance(&presented, ui(n), n);
            presented = ui(n);
        }
        assert_eq!(m.len(), 1);
        assert_eq!(m.get(&ui(50)), Some(50));
        assert_eq!(m.get(&ui(49)), None, "a presented UI is not remembered");
    }

    #[test]
    fn a_full_map_keeps_the_copies_in_use() {
        let m = NextUi::new(4);
        // Copy "a" validates again and again while new copies come and go.
        let mut presented = ui(0);
        for n in 1..50u8 {
            m.advance(&presented, ui(n), n);
            presented = ui(n);
            m.advance(&ui(200), ui(100 + n), n);
            assert!(m.len() <= 4);
            assert_eq!(m.get(&ui(n)), Some(n), "copy a lost after {n}");
        }
        assert_eq!(m.get(&ui(101)), None, "a copy not seen since is dropped");
    }

    #[test]
    fn a_forgotten_copy_is_read_again() {
        let m = NextUi::new(10);
        m.advance(&ui(0), ui(1), "row");
        m.forget(&ui(1));
        assert_eq!(m.get(&ui(1)), None);
        assert_eq!(m.len(), 0);
    }
}
