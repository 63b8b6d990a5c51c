//! The listing order of a kind of record and the keyset pages over it.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;

use chrono::{DateTime, Utc};
use pientegra_shared::time::Timestamp;
use uuid::Uuid;

/// Position of a record in a listing: `(createdAt, id)`, newest last.
pub type Key = (Timestamp, Uuid);

/// A record that can be listed newest first.
pub trait Row {
    /// Its place in the listing order.
    fn key(&self) -> Key;
}

/// Records by id plus their listing order.
#[derive(Debug)]
pub struct Table<T> {
    pub(super) rows: HashMap<Uuid, T>,
    pub(super) order: BTreeSet<Key>,
}

/// Which slice of a table one listing page covers.
#[derive(Clone, Debug)]
pub struct Window {
    /// Inclusive lower bound of the creation time.
    pub from: Option<Timestamp>,
    /// Exclusive upper bound of the creation time; `None` is "now", which
    /// includes records made in the current millisecond.
    pub to: Option<Timestamp>,
    /// Only records strictly older than this key (the cursor).
    pub before: Option<Key>,
    /// Page size.
    pub limit: usize,
}

impl<T: Row> Table<T> {
    pub(super) fn new() -> Table<T> {
        Table { rows: HashMap::new(), order: BTreeSet::new() }
    }

    pub(super) fn insert(&mut self, row: T) {
        let key = row.key();
        self.order.insert(key);
        self.rows.insert(key.1, row);
    }

    /// The record with this id.
    pub fn get(&self, id: &Uuid) -> Option<&T> {
        self.rows.get(id)
    }

    pub(super) fn get_mut(&mut self, id: &Uuid) -> Option<&mut T> {
        self.rows.get_mut(id)
    }

    /// Every record, newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = &T> {
        self.order.iter().rev().filter_map(|(_, id)| self.rows.get(id))
    }

    /// One page of the records `keep` accepts, newest first, and the key to
    /// continue after when more follow.
    ///
    /// A keyset page: records inserted while a client walks the pages are
    /// newer than the first page's start, so they never shift later pages
    /// (no duplicates, no gaps among the records that were already there).
    pub fn page(&self, window: &Window, keep: impl Fn(&T) -> bool) -> (Vec<&T>, Option<Key>) {
        // `Uuid::nil()` is the smallest id: `(to, nil)` excludes all of `to`'s millisecond.
        let mut upper = (window.to.unwrap_or(DateTime::<Utc>::MAX_UTC), Uuid::nil());
        if let Some(before) = window.before {
            upper = upper.min(before);
        }
        let lower = (window.from.unwrap_or(DateTime::<Utc>::MIN_UTC), Uuid::nil());
        if lower >= upper {
            return (Vec::new(), None);
        }
        let mut items: Vec<&T> = self
            .order
            .range((Bound::Included(lower), Bound::Excluded(upper)))
            .rev()
            .filter_map(|(_, id)| self.rows.get(id))
            .filter(|row| keep(row))
            .take(window.limit.saturating_add(1))
            .collect();
        if items.len() > window.limit {
            items.truncate(window.limit);
            let next = items.last().map(|row| row.key());
            (items, next)
        } else {
            (items, None)
        }
    }
}
