//! What changed between two desired states, in the state's own terms: listeners and
//! services added, removed or changed, and for a changed service what changed in it. The
//! one walk that the server's events and logs and `switchyard diff`'s summary all read.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::model::{Color, DesiredState, Listener, Service};

/// One named entry as it was and as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a, T> {
    Added(&'a T),
    Removed(&'a T),
    Changed { before: &'a T, after: &'a T },
}

impl<'a, T> Change<'a, T> {
    /// The entry before the change (`None` when added).
    pub fn before(&self) -> Option<&'a T> {
        match *self {
            Change::Added(_) => None,
            Change::Removed(b) | Change::Changed { before: b, .. } => Some(b),
        }
    }

    /// The entry after the change (`None` when removed).
    pub fn after(&self) -> Option<&'a T> {
        match *self {
            Change::Removed(_) => None,
            Change::Added(a) | Change::Changed { after: a, .. } => Some(a),
        }
    }
}

/// Every listener and service that differs between two states, each sorted by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChanges<'a> {
    pub listeners: Vec<Change<'a, Listener>>,
    pub services: Vec<Change<'a, Service>>,
}

/// What changed from `before` (`None`: nothing was in force) to `after`.
pub fn changes<'a>(before: Option<&'a DesiredState>, after: &'a DesiredState) -> StateChanges<'a> {
    let listeners = |s: Option<&'a DesiredState>| -> BTreeMap<&'a str, &'a Listener> {
        s.map(|s| s.listeners.iter().map(|l| (l.name.as_str(), l)).collect())
            .unwrap_or_default()
    };
    let services = |s: Option<&'a DesiredState>| -> BTreeMap<&'a str, &'a Service> {
        s.map(|s| s.services.iter().map(|x| (x.name.as_str(), x)).collect())
            .unwrap_or_default()
    };
    StateChanges {
        listeners: compare(listeners(before), listeners(Some(after))),
        services: compare(services(before), services(Some(after))),
    }
}

/// The entries of `a` and `b` (by name) that differ.
fn compare<'a, T: PartialEq>(
    a: BTreeMap<&'a str, &'a T>,
    b: BTreeMap<&'a str, &'a T>,
) -> Vec<Change<'a, T>> {
    let mut names: Vec<&str> = a.keys().chain(b.keys()).copied().collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .filter_map(|n| match (a.get(n), b.get(n)) {
            (Some(x), None) => Some(Change::Removed(*x)),
            (None, Some(y)) => Some(Change::Added(*y)),
            (Some(x), Some(y)) if x != y => Some(Change::Changed {
                before: *x,
                after: *y,
            }),
            _ => None,
        })
        .collect()
}

impl StateChanges<'_> {
    /// The services whose active color changed, as (before, after).
    pub fn switches(&self) -> impl Iterator<Item = (&Service, &Service)> {
        self.services.iter().filter_map(|c| match *c {
            Change::Changed { before, after } if before.active != after.active => {
                Some((before, after))
            }
            _ => None,
        })
    }
}

/// What changed in a service besides its active color, one line each.
pub fn service_details(before: &Service, after: &Service) -> Vec<String> {
    let name = &before.name;
    let mut out = Vec::new();
    if before.listener != after.listener {
        out.push(format!(
            "{name}: listener {} -> {}",
            before.listener, after.listener
        ));
    }
    if before.domains != after.domains {
        out.push(format!(
            "{name}: domains {} -> {}",
            before.domains.join(", "),
            after.domains.join(", ")
        ));
    }
    let (split_before, split_after) = (before.split(), after.split());
    if before.active == after.active && split_before != split_after {
        out.push(format!(
            "{name}: weights {}/{} -> {}/{} (blue/green)",
            split_before.blue, split_before.green, split_after.blue, split_after.green
        ));
    }
    for color in Color::ALL {
        let (ea, eb) = (
            &before.color(color).endpoints,
            &after.color(color).endpoints,
        );
        if ea == eb {
            continue;
        }
        let added = eb
            .iter()
            .filter(|e| !ea.contains(e))
            .map(|e| format!("+{e}"));
        let removed = ea
            .iter()
            .filter(|e| !eb.contains(e))
            .map(|e| format!("-{e}"));
        let moves: Vec<String> = added.chain(removed).collect();
        if moves.is_empty() {
            out.push(format!("{name}: {color} endpoints reordered"));
        } else {
            out.push(format!("{name}: {color} endpoints {}", moves.join(" ")));
        }
    }
    out
}

/// A listener's address, as the summary prints it.
pub fn listener_address(l: &Listener) -> SocketAddr {
    SocketAddr::new(l.address, l.port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::parse_str;

    const STATE: &str = include_str!("../../tests/fixtures/one_service.yaml");

    fn with_extra(text: &str) -> String {
        format!(
            "{text}  - name: extra
    listener: public
    domains: [\"extra.example\"]
    blue: {{ endpoints: [\"127.0.0.1:9001\"] }}
    green: {{ endpoints: [\"127.0.0.1:9002\"] }}
    active: green
"
        )
    }

    #[test]
    fn the_same_state_has_no_changes() {
        let a = parse_str(STATE).unwrap();
        let c = changes(Some(&a), &a);
        assert!(c.listeners.is_empty() && c.services.is_empty());
    }

    #[test]
    fn with_nothing_before_everything_is_added() {
        let a = parse_str(STATE).unwrap();
        let c = changes(None, &a);
        assert_eq!(c.listeners, [Change::Added(&a.listeners[0])]);
        assert_eq!(c.services, [Change::Added(&a.services[0])]);
    }

    #[test]
    fn a_switch_is_a_changed_service_and_a_switch() {
        let a = parse_str(STATE).unwrap();
        let b = parse_str(&STATE.replace("active: blue", "active: green")).unwrap();
        let c = changes(Some(&a), &b);
        assert!(c.listeners.is_empty());
        assert_eq!(
            c.services,
            [Change::Changed {
                before: &a.services[0],
                after: &b.services[0]
            }]
        );
        let switches: Vec<_> = c
            .switches()
            .map(|(b, a)| (a.name.as_str(), b.active, a.active))
            .collect();
        assert_eq!(switches, [("summarizer", Color::Blue, Color::Green)]);
        assert!(service_details(&a.services[0], &b.services[0]).is_empty());
    }

    #[test]
    fn added_and_removed_services_are_sorted_by_name() {
        let a = parse_str(STATE).unwrap();
        let b = parse_str(&with_extra(STATE)).unwrap();
        let c = changes(Some(&a), &b);
        assert_eq!(c.services, [Change::Added(&b.services[1])]);
        let back = changes(Some(&b), &a);
        assert_eq!(back.services, [Change::Removed(&b.services[1])]);
        assert_eq!(back.switches().count(), 0);
    }

    #[test]
    fn a_new_split_that_keeps_the_active_color_is_a_detail() {
        let a = parse_str(STATE).unwrap();
        let b =
            parse_str(&STATE.replace("active: blue", "weights: {blue: 90, green: 10}")).unwrap();
        assert_eq!(changes(Some(&a), &b).switches().count(), 0);
        assert_eq!(
            service_details(&a.services[0], &b.services[0]),
            ["summarizer: weights 100/0 -> 90/10 (blue/green)"]
        );
    }

    #[test]
    fn moved_endpoints_are_listed_per_color() {
        let a = parse_str(STATE).unwrap();
        let b = parse_str(&STATE.replace("127.0.0.1:8082", "127.0.0.1:9082")).unwrap();
        let details = service_details(&a.services[0], &b.services[0]);
        assert_eq!(
            details,
            ["summarizer: green endpoints +127.0.0.1:9082 -127.0.0.1:8082"]
        );
    }
}
