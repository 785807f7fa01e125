//! Envoy's node matchers (`envoy.type.matcher.v3.NodeMatcher`), as CSDS clients send them.
//!
//! Supported: node id string matchers (exact, prefix, suffix, contains, safe_regex, with
//! `ignore_case`) and node metadata struct matchers whose value matcher is a string, bool,
//! null or presence match. Other patterns never match (and are reported as such).

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    NodeMatcher, StringMatcher, StructMatcher, ValueMatcher, string_matcher, struct_matcher,
    value_matcher,
};
use envoy_types::pb::google::protobuf::{Value, value};

/// A node matcher that cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error("invalid safe_regex `{regex}`: {reason}")]
    Regex { regex: String, reason: String },
    #[error("unsupported matcher: {0}")]
    Unsupported(&'static str),
}

/// Does `node` match any of `matchers` (every node when there are none)?
pub fn matches_any(matchers: &[NodeMatcher], node: &Node) -> Result<bool, MatcherError> {
    if matchers.is_empty() {
        return Ok(true);
    }
    for m in matchers {
        if matches_node(m, node)? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn matches_node(m: &NodeMatcher, node: &Node) -> Result<bool, MatcherError> {
    if let Some(id) = &m.node_id
        && !matches_string(id, &node.id)?
    {
        return Ok(false);
    }
    for sm in &m.node_metadatas {
        if !matches_struct(sm, node)? {
            return Ok(false);
        }
    }
    Ok(true)
}

pub fn matches_string(m: &StringMatcher, s: &str) -> Result<bool, MatcherError> {
    use string_matcher::MatchPattern;
    let fold = |x: &str| {
        if m.ignore_case {
            x.to_lowercase()
        } else {
            x.to_owned()
        }
    };
    let s_folded = fold(s);
    Ok(match &m.match_pattern {
        Some(MatchPattern::Exact(e)) => s_folded == fold(e),
        Some(MatchPattern::Prefix(p)) => s_folded.starts_with(&fold(p)),
        Some(MatchPattern::Suffix(p)) => s_folded.ends_with(&fold(p)),
        Some(MatchPattern::Contains(p)) => s_folded.contains(&fold(p)),
        Some(MatchPattern::SafeRegex(r)) => {
            // Envoy's safe_regex matches the whole string.
            let re = regex::Regex::new(&format!("^(?:{})$", r.regex)).map_err(|e| {
                MatcherError::Regex {
                    regex: r.regex.clone(),
                    reason: e.to_string(),
                }
            })?;
            re.is_match(s)
        }
        Some(MatchPattern::Custom(_)) => {
            return Err(MatcherError::Unsupported("custom string matcher"));
        }
        None => {
            return Err(MatcherError::Unsupported(
                "string matcher without a pattern",
            ));
        }
    })
}

fn matches_struct(m: &StructMatcher, node: &Node) -> Result<bool, MatcherError> {
    let mut current: Option<&Value> = None;
    let mut fields = node.metadata.as_ref().map(|s| &s.fields);
    for segment in &m.path {
        let Some(struct_matcher::path_segment::Segment::Key(key)) = &segment.segment else {
            return Err(MatcherError::Unsupported(
                "struct path segment without a key",
            ));
        };
        let Some(f) = fields else {
            current = None;
            break;
        };
        current = f.get(key);
        fields = match current.and_then(|v| v.kind.as_ref()) {
            Some(value::Kind::StructValue(s)) => Some(&s.fields),
            _ => None,
        };
    }
    match &m.value {
        Some(v) => matches_value(v, current),
        None => Ok(current.is_some()),
    }
}

fn matches_value(m: &ValueMatcher, v: Option<&Value>) -> Result<bool, MatcherError> {
    use value_matcher::MatchPattern;
    let kind = v.and_then(|v| v.kind.as_ref());
    Ok(match &m.match_pattern {
        Some(MatchPattern::PresentMatch(want)) => v.is_some() == *want,
        Some(MatchPattern::NullMatch(_)) => matches!(kind, Some(value::Kind::NullValue(_))),
        Some(MatchPattern::BoolMatch(b)) => {
            matches!(kind, Some(value::Kind::BoolValue(x)) if x == b)
        }
        Some(MatchPattern::StringMatch(sm)) => match kind {
            Some(value::Kind::StringValue(s)) => matches_string(sm, s)?,
            _ => false,
        },
        Some(_) => {
            return Err(MatcherError::Unsupported(
                "value matcher other than string, bool, null or present",
            ));
        }
        None => return Err(MatcherError::Unsupported("value matcher without a pattern")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatcher;
    use envoy_types::pb::google::protobuf::Struct;

    fn node(id: &str, zone: &str) -> Node {
        let mut fields = std::collections::HashMap::new();
        fields.insert(
            "zone".to_owned(),
            Value {
                kind: Some(value::Kind::StringValue(zone.to_owned())),
            },
        );
        Node {
            id: id.to_owned(),
            metadata: Some(Struct { fields }),
            ..Default::default()
        }
    }

    fn id_matcher(p: string_matcher::MatchPattern) -> NodeMatcher {
        NodeMatcher {
            node_id: Some(StringMatcher {
                match_pattern: Some(p),
                ignore_case: false,
            }),
            node_metadatas: vec![],
        }
    }

    #[test]
    fn no_matchers_match_every_node() {
        assert!(matches_any(&[], &node("a", "z")).unwrap());
    }

    #[test]
    fn node_id_patterns_match() {
        use string_matcher::MatchPattern::*;
        let n = node("edge-eu-1", "eu");
        assert!(matches_any(&[id_matcher(Exact("edge-eu-1".into()))], &n).unwrap());
        assert!(matches_any(&[id_matcher(Prefix("edge-".into()))], &n).unwrap());
        assert!(!matches_any(&[id_matcher(Suffix("-2".into()))], &n).unwrap());
        assert!(matches_any(&[id_matcher(Contains("eu".into()))], &n).unwrap());
        let re = |r: &str| {
            SafeRegex(RegexMatcher {
                regex: r.into(),
                ..Default::default()
            })
        };
        assert!(matches_any(&[id_matcher(re("edge-[a-z]+-\\d"))], &n).unwrap());
        assert!(
            !matches_any(&[id_matcher(re("edge"))], &n).unwrap(),
            "whole-string match"
        );
        assert!(matches_any(&[id_matcher(re("("))], &n).is_err());
        // OR across matchers.
        assert!(
            matches_any(
                &[
                    id_matcher(Exact("x".into())),
                    id_matcher(Exact("edge-eu-1".into()))
                ],
                &n
            )
            .unwrap()
        );
    }

    #[test]
    fn metadata_string_match() {
        let m = NodeMatcher {
            node_id: None,
            node_metadatas: vec![StructMatcher {
                path: vec![struct_matcher::PathSegment {
                    segment: Some(struct_matcher::path_segment::Segment::Key("zone".into())),
                }],
                value: Some(ValueMatcher {
                    match_pattern: Some(value_matcher::MatchPattern::StringMatch(StringMatcher {
                        match_pattern: Some(string_matcher::MatchPattern::Exact("eu".into())),
                        ignore_case: false,
                    })),
                }),
            }],
        };
        assert!(matches_any(std::slice::from_ref(&m), &node("a", "eu")).unwrap());
        assert!(!matches_any(&[m], &node("a", "us")).unwrap());
    }
}
