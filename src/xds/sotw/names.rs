//! What a stream subscribes to, per type: every resource, or a list of names (shared with
//! the snapshot when it is exactly the snapshot's names).

use std::collections::{BTreeSet, btree_map, btree_set};
use std::sync::Arc;

use super::super::ResourceType;
use super::super::snapshot::Resource;
use super::ResourceSet;

/// The names a stream subscribes to for one type.
#[derive(Debug, Clone, Default)]
pub(super) enum Names {
    /// Every resource of the type (wildcard).
    #[default]
    All,
    /// Exactly the names of a snapshot's resources of the type, shared with the snapshot
    /// instead of copied: the usual case (Envoy asks for the endpoints of every cluster it
    /// was sent), so 10,000 proxies of a 1,000-cluster fleet do not hold 10 million names.
    KeysOf(Arc<ResourceSet>),
    /// Any other list.
    Listed(BTreeSet<String>),
}

impl Names {
    /// The names a request listing `names` subscribes to, shared with `current` (the
    /// snapshot's resources of the type) when they are exactly its names.
    pub(super) fn of_request(
        t: ResourceType,
        names: &[String],
        current: &Arc<ResourceSet>,
    ) -> Names {
        if is_wildcard(t, names) {
            return Names::All;
        }
        if current.len() == names.len() && current.keys().eq(names.iter()) {
            return Names::KeysOf(current.clone());
        }
        let set: BTreeSet<String> = names.iter().cloned().collect();
        if set.iter().eq(current.keys()) {
            Names::KeysOf(current.clone())
        } else {
            Names::Listed(set)
        }
    }

    /// The names, sorted; `None` for every resource.
    pub(super) fn list(&self) -> Option<NameIter<'_>> {
        match self {
            Names::All => None,
            Names::KeysOf(set) => Some(NameIter::Keys(set.keys())),
            Names::Listed(set) => Some(NameIter::Set(set.iter())),
        }
    }

    /// Does a request listing `names` subscribe to exactly these? Cheap, without building
    /// a set, when the request lists the names in order (an ACK repeating a sorted list);
    /// a `false` only means "build the subscription and compare".
    pub(super) fn listed_by(&self, t: ResourceType, names: &[String]) -> bool {
        match self.list() {
            None => is_wildcard(t, names),
            Some(list) => list.len() == names.len() && list.eq(names.iter()),
        }
    }

    /// The same names?
    pub(super) fn same(&self, other: &Names) -> bool {
        match (self, other) {
            (Names::KeysOf(a), Names::KeysOf(b)) if Arc::ptr_eq(a, b) => true,
            _ => match (self.list(), other.list()) {
                (None, None) => true,
                (Some(a), Some(b)) => a.len() == b.len() && a.eq(b),
                _ => false,
            },
        }
    }
}

/// The names of a [`Names`] list, in order.
#[derive(Clone)]
pub(super) enum NameIter<'a> {
    Keys(btree_map::Keys<'a, String, Arc<Resource>>),
    Set(btree_set::Iter<'a, String>),
}

impl<'a> Iterator for NameIter<'a> {
    type Item = &'a String;

    fn next(&mut self) -> Option<&'a String> {
        match self {
            NameIter::Keys(k) => k.next(),
            NameIter::Set(s) => s.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            NameIter::Keys(k) => k.size_hint(),
            NameIter::Set(s) => s.size_hint(),
        }
    }
}

impl ExactSizeIterator for NameIter<'_> {}

/// Does a request listing `names` ask for every resource of `t`?
fn is_wildcard(t: ResourceType, names: &[String]) -> bool {
    names.is_empty() && t.is_wildcard_type() || names.iter().any(|n| n == "*")
}
