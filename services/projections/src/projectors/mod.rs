//! The projectors, one module each, and what they share: the per-batch row cache and small
//! conversions between events and columns.

pub mod audit;
pub mod change_requests;
pub mod config;
pub mod devices;
pub mod rollouts;
pub mod workflows;

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use netledger_domain::{Actor, RecordedEvent};
use uuid::Uuid;

/// `ON CONFLICT DO NOTHING` for an append-only insert, except in replay mode: there the
/// tables were emptied in the same transaction and each key is folded once, so the plain
/// insert (no speculative insertion) is enough.
pub(crate) fn on_conflict_skip(replay: bool) -> &'static str {
    if replay { "" } else { "ON CONFLICT DO NOTHING" }
}

/// The UUID in a stream name `<category>-<uuid>`; `None` for another kind of id.
pub(crate) fn stream_uuid(e: &RecordedEvent) -> Option<Uuid> {
    Uuid::parse_str(e.stream.id()).ok()
}

/// An actor as one text column: `user:<id>`, `api_key:<id>` or `system:<component>`.
pub fn actor_text(actor: &Actor) -> String {
    match actor {
        Actor::User { id } => format!("user:{id}"),
        Actor::ApiKey { id } => format!("api_key:{id}"),
        Actor::System { component } => format!("system:{component}"),
    }
}

/// The text of a unit-variant serde enum (`snake_case` names), as stored in the tables.
pub(crate) fn enum_text<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// A row and whether it differs from what the database holds.
#[derive(Debug, Clone)]
pub(crate) struct Entry<R> {
    pub row: R,
    pub dirty: bool,
}

/// The rows of one table that a projector has in hand: loaded from the database or created
/// by the fold, with the keys of the changed ones in the order they changed.
#[derive(Debug)]
pub(crate) struct Rows<K, R> {
    map: HashMap<K, Entry<R>>,
    dirty: Vec<K>,
    /// Replay: keys dropped from the cache after being written (they must be loaded again
    /// if an event touches them later).
    evicted: HashSet<K>,
}

impl<K, R> Default for Rows<K, R> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            dirty: Vec::new(),
            evicted: HashSet::new(),
        }
    }
}

impl<K: Hash + Eq + Clone, R> Rows<K, R> {
    /// Keys among `keys` that must be read from the database before folding: in replay mode
    /// only evicted ones, otherwise every one not in hand.
    pub fn missing<'a>(&self, keys: impl IntoIterator<Item = &'a K>, replay: bool) -> Vec<K>
    where
        K: 'a,
    {
        let mut seen = HashSet::new();
        keys.into_iter()
            .filter(|k| !self.map.contains_key(*k) && (!replay || self.evicted.contains(*k)))
            .filter(|k| seen.insert((*k).clone()))
            .cloned()
            .collect()
    }

    /// Puts a row read from the database in hand (clean).
    pub fn loaded(&mut self, key: K, row: R) {
        self.evicted.remove(&key);
        self.map.insert(key, Entry { row, dirty: false });
    }

    /// The row for `key`, if in hand.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut R> {
        self.map.get_mut(key).map(|e| &mut e.row)
    }

    /// Marks `key` changed.
    pub fn touch(&mut self, key: &K) {
        if let Some(e) = self.map.get_mut(key)
            && !e.dirty
        {
            e.dirty = true;
            self.dirty.push(key.clone());
        }
    }

    /// Adds a new row (changed).
    pub fn insert(&mut self, key: K, row: R) {
        self.evicted.remove(&key);
        let was_dirty = self.map.get(&key).is_some_and(|e| e.dirty);
        self.map.insert(key.clone(), Entry { row, dirty: true });
        if !was_dirty {
            self.dirty.push(key);
        }
    }

    /// The keys of the changed rows, in the order they first changed; marks them clean.
    pub fn take_dirty(&mut self) -> Vec<K> {
        let keys = std::mem::take(&mut self.dirty);
        for k in &keys {
            if let Some(e) = self.map.get_mut(k) {
                e.dirty = false;
            }
        }
        keys
    }

    /// How many rows are changed and not written yet.
    pub fn dirty_len(&self) -> usize {
        self.dirty.len()
    }

    /// The row for `key`, if in hand.
    pub fn get(&self, key: &K) -> Option<&R> {
        self.map.get(key).map(|e| &e.row)
    }

    /// Drops the rows for which `done` is true from the cache (replay: rows that will not
    /// change again), remembering their keys.
    pub fn evict(&mut self, done: impl Fn(&R) -> bool) {
        let keys: Vec<K> = self
            .map
            .iter()
            .filter(|(_, e)| !e.dirty && done(&e.row))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.map.remove(&k);
            self.evicted.insert(k);
        }
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.map.clear();
        self.dirty.clear();
        self.evicted.clear();
    }
}
