//! Where a proxy stands, per resource type and overall: the one definition of "synced",
//! "stale", "rejected" and "not subscribed".
//!
//! The stream's protocol state machine works out a [`SyncStatus`] per type after every
//! step (it alone knows what was sent, acknowledged, rejected and what is due) and hands
//! it to the observer with the step; [`ProxyStatus::of`] combines a proxy's types. Every
//! view of a proxy or a type (the application's `/status`, API, CSDS, convergence, CLI)
//! reads these, and none recomputes them from versions.

use serde::Serialize;

/// How one proxy stands on one resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    /// The proxy has not asked for this type (yet).
    #[default]
    NotSubscribed,
    /// It acknowledged the latest response, and nothing newer is due or held back.
    Synced,
    /// A response is awaiting its ACK, or a newer one is due (or held back by
    /// make-before-break).
    Stale,
    /// It rejected the latest response sent (and nothing newer has been sent since).
    Rejected,
}

/// How one proxy stands overall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyStatus {
    /// Connected, but subscribed to nothing yet.
    #[default]
    Connecting,
    /// Every type it subscribes to is synced.
    Synced,
    /// Some type is stale, none rejected.
    Stale,
    /// It rejected the latest response of some type.
    Rejected,
}

impl ProxyStatus {
    /// The overall status of a proxy whose types stand as `types`.
    pub fn of(types: &[SyncStatus]) -> ProxyStatus {
        if types.contains(&SyncStatus::Rejected) {
            ProxyStatus::Rejected
        } else if types.contains(&SyncStatus::Stale) {
            ProxyStatus::Stale
        } else if types.contains(&SyncStatus::Synced) {
            ProxyStatus::Synced
        } else {
            ProxyStatus::Connecting
        }
    }

    /// Nothing is on its way to this proxy and nothing it rejected stands: it runs what it
    /// should (a proxy still connecting has nothing due either).
    pub fn is_settled(self) -> bool {
        matches!(self, ProxyStatus::Synced | ProxyStatus::Connecting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SyncStatus::*;

    #[test]
    fn a_proxy_is_as_bad_as_its_worst_type() {
        assert_eq!(
            ProxyStatus::of(&[Synced, Stale, Rejected, Synced]),
            ProxyStatus::Rejected
        );
        assert_eq!(
            ProxyStatus::of(&[Synced, Stale, NotSubscribed, Synced]),
            ProxyStatus::Stale
        );
        assert_eq!(
            ProxyStatus::of(&[Synced, Synced, NotSubscribed, NotSubscribed]),
            ProxyStatus::Synced
        );
        assert_eq!(
            ProxyStatus::of(&[NotSubscribed; 5]),
            ProxyStatus::Connecting
        );
    }

    #[test]
    fn only_synced_and_connecting_proxies_are_settled() {
        assert!(ProxyStatus::Synced.is_settled());
        assert!(ProxyStatus::Connecting.is_settled());
        assert!(!ProxyStatus::Stale.is_settled());
        assert!(!ProxyStatus::Rejected.is_settled());
    }
}
