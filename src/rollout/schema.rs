//! The schema guard: whether a color may take traffic given its database's current schema
//! version, and the warnings `validate` and `diff` give about a file that would strand a
//! color. Pure.

use std::collections::BTreeMap;

use crate::state::{Color, DesiredState, Service};

/// What is known of a database's current schema version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaVersion {
    Known(String),
    /// Not read yet, or unreadable: why.
    Unknown(String),
}

/// Database name -> its current schema version.
pub type Versions = BTreeMap<String, SchemaVersion>;

/// Whether `color` of `service` may take traffic: `Err(why)` when its `schemas` do not list
/// the database's current version, or when that version is unknown.
pub fn check(service: &Service, color: Color, versions: &Versions) -> Result<(), String> {
    let Some(db) = &service.database else {
        return Ok(());
    };
    let supported = &service.color(color).schemas;
    match versions.get(db) {
        Some(SchemaVersion::Known(v)) if supported.contains(v) => Ok(()),
        Some(SchemaVersion::Known(v)) => Err(format!(
            "{color} runs against schema {} of database `{db}`, which is at {v}",
            supported.join(", ")
        )),
        Some(SchemaVersion::Unknown(why)) => Err(format!(
            "the schema version of database `{db}` is unknown ({why})"
        )),
        None => Err(format!(
            "the schema version of database `{db}` is not known yet"
        )),
    }
}

/// Both colors' verdicts, in `Color` order.
pub fn check_both(service: &Service, versions: &Versions) -> [Result<(), String>; 2] {
    Color::ALL.map(|c| check(service, c, versions))
}

/// Warnings about `state` against the current schema versions: a switch that would be held,
/// a color that could not take the traffic back, colors that share no version.
pub fn warnings(state: &DesiredState, versions: &Versions) -> Vec<String> {
    let mut out = Vec::new();
    for s in state.services.iter().filter(|s| s.database.is_some()) {
        let db = s.database.as_deref().unwrap_or_default();
        let idle = s.active.other();
        if let Some(SchemaVersion::Known(v)) = versions.get(db) {
            if let Err(why) = check(s, s.active, versions) {
                out.push(format!(
                    "service `{}`: the switch to {} would be held: {why}",
                    s.name, s.active
                ));
            }
            if !s.color(idle).schemas.contains(v) {
                out.push(format!(
                    "service `{}`: {idle} cannot take the traffic back (no rollback): it runs against schema {} and database `{db}` is at {v}",
                    s.name,
                    s.color(idle).schemas.join(", ")
                ));
            }
        }
        let shared = s.blue.schemas.iter().any(|v| s.green.schemas.contains(v));
        if !shared {
            out.push(format!(
                "service `{}`: blue and green share no schema version of database `{db}`: whichever migration comes next strands one of them",
                s.name
            ));
        }
    }
    out
}

/// Warnings a change from `before` to `after` earns: a color that supported the current
/// version and no longer does.
pub fn change_warnings(
    before: &DesiredState,
    after: &DesiredState,
    versions: &Versions,
) -> Vec<String> {
    let mut out = Vec::new();
    for a in &after.services {
        let (Some(b), Some(db)) = (before.service(&a.name), a.database.as_deref()) else {
            continue;
        };
        let Some(SchemaVersion::Known(v)) = versions.get(db) else {
            continue;
        };
        for c in Color::ALL {
            if b.color(c).schemas.contains(v) && !a.color(c).schemas.contains(v) {
                out.push(format!(
                    "service `{}`: this change strands {c}: it no longer lists schema {v}, the current version of database `{db}`",
                    a.name
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::parse_str;

    fn state(blue: &str, green: &str, active: &str) -> DesiredState {
        parse_str(&format!(
            "databases:\n  - name: records\n    file: /tmp/v\nlisteners:\n  - name: public\n    address: 127.0.0.1\n    port: 10000\nservices:\n  - name: s\n    listener: public\n    database: records\n    blue:\n      endpoints: [\"127.0.0.1:8081\"]\n      schemas: [{blue}]\n    green:\n      endpoints: [\"127.0.0.1:8082\"]\n      schemas: [{green}]\n    active: {active}\n"
        ))
        .unwrap()
    }

    fn at(v: &str) -> Versions {
        [("records".to_owned(), SchemaVersion::Known(v.to_owned()))].into()
    }

    #[test]
    fn a_color_runs_only_against_a_schema_it_lists() {
        let s = state("41, 42", "42, 43", "green");
        let svc = &s.services[0];
        assert_eq!(check(svc, Color::Blue, &at("42")), Ok(()));
        assert_eq!(check(svc, Color::Green, &at("42")), Ok(()));
        assert_eq!(
            check(svc, Color::Blue, &at("43")),
            Err("blue runs against schema 41, 42 of database `records`, which is at 43".into())
        );
    }

    #[test]
    fn an_unknown_version_refuses_every_color() {
        let s = state("41", "41", "blue");
        let unknown: Versions = [(
            "records".to_owned(),
            SchemaVersion::Unknown("cannot read /tmp/v".into()),
        )]
        .into();
        assert!(check(&s.services[0], Color::Blue, &unknown).is_err());
        assert!(check(&s.services[0], Color::Green, &Versions::new()).is_err());
    }

    #[test]
    fn a_service_without_a_database_is_never_refused() {
        let s = parse_str(include_str!("../../tests/fixtures/one_service.yaml")).unwrap();
        assert_eq!(
            check_both(&s.services[0], &Versions::new()),
            [Ok(()), Ok(())]
        );
    }

    #[test]
    fn warnings_name_a_held_switch_a_stranded_rollback_and_disjoint_colors() {
        let w = warnings(&state("41", "42", "green"), &at("41"));
        assert_eq!(w.len(), 2, "{w:#?}");
        assert!(w[0].contains("the switch to green would be held"), "{w:#?}");
        assert!(w[1].contains("share no schema version"), "{w:#?}");
        let w = warnings(&state("41", "42", "green"), &at("42"));
        assert!(w[0].contains("blue cannot take the traffic back"), "{w:#?}");
        assert!(warnings(&state("41, 42", "42", "green"), &at("42")).is_empty());
    }

    #[test]
    fn a_change_that_drops_the_current_version_from_a_color_strands_it() {
        let before = state("41, 42", "42", "green");
        let after = state("41", "42", "green");
        let w = change_warnings(&before, &after, &at("42"));
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("this change strands blue"), "{w:#?}");
    }
}
