//! What a stream subscribes to, per type: every resource, or a list of names (the
//! snapshot's own set of names when it is exactly those).
//!
//! The xDS protocol's wildcard rules: a request listing `*` subscribes to every resource
//! of the type (with or without other names). An empty list does too for a type that
//! supports the legacy wildcard (clusters and listeners), until the stream has once sent a
//! list that is not empty (names, or `*` itself); after that, or for any other type, an
//! empty list subscribes to nothing.

use std::collections::BTreeSet;
use std::sync::Arc;

/// The names a stream subscribes to for one type.
#[derive(Debug, Clone, Default)]
pub(super) enum Names {
    /// Every resource of the type (wildcard).
    #[default]
    All,
    /// These names. When they are exactly the snapshot's names of the type, this is the
    /// snapshot's own set, shared: the usual case (Envoy asks for the endpoints of every
    /// cluster it was sent), so 10,000 proxies of a 1,000-cluster fleet hold one set of
    /// names, not 10,000.
    Listed(Arc<BTreeSet<String>>),
}

impl Names {
    /// The names a request listing `names` subscribes to, shared with `current` (the
    /// snapshot's names of the type) when they are the same. `legacy_wildcard`: an empty
    /// list means every resource.
    pub(super) fn of_request(
        names: &[String],
        legacy_wildcard: bool,
        current: &Arc<BTreeSet<String>>,
    ) -> Names {
        if is_wildcard(names, legacy_wildcard) {
            return Names::All;
        }
        if current.len() == names.len() && current.iter().eq(names.iter()) {
            return Names::Listed(current.clone());
        }
        let set: BTreeSet<String> = names.iter().cloned().collect();
        if set == **current {
            Names::Listed(current.clone())
        } else {
            Names::Listed(Arc::new(set))
        }
    }

    /// Exactly `names`, shared with `current` (the snapshot's names of the type) when
    /// they are the same.
    pub(super) fn of_set(names: &Arc<BTreeSet<String>>, current: &Arc<BTreeSet<String>>) -> Names {
        if Arc::ptr_eq(names, current) || **names == **current {
            Names::Listed(current.clone())
        } else {
            Names::Listed(names.clone())
        }
    }

    /// The names; `None` for every resource.
    pub(super) fn list(&self) -> Option<&Arc<BTreeSet<String>>> {
        match self {
            Names::All => None,
            Names::Listed(set) => Some(set),
        }
    }

    /// Does a request listing `names` subscribe to exactly these? Cheap, without building
    /// a set, when the request lists the names in order (an ACK repeating a sorted list);
    /// a `false` only means "build the subscription and compare".
    pub(super) fn listed_by(&self, names: &[String], legacy_wildcard: bool) -> bool {
        match self.list() {
            None => is_wildcard(names, legacy_wildcard),
            Some(set) => set.len() == names.len() && set.iter().eq(names.iter()),
        }
    }

    /// The same names?
    pub(super) fn same(&self, other: &Names) -> bool {
        match (self.list(), other.list()) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
            _ => false,
        }
    }
}

/// Does a request listing `names` ask for every resource?
fn is_wildcard(names: &[String], legacy_wildcard: bool) -> bool {
    names.is_empty() && legacy_wildcard || names.iter().any(|n| n == "*")
}
