//! The size limits of a state file. Each one is named in the message of the error that
//! enforces it and listed in the README's "Limits" table.
//!
//! They are generous for a real fleet (the fan-out benchmark has 1,000 services; a large
//! one a few thousand) and stop a hostile or broken file before it costs the control
//! plane its memory: every limit is checked before the state is translated for Envoy.

/// Largest state file accepted, in bytes (16 MiB). [`MAX_SERVICES`] services with one
/// endpoint per color, one service a line, take about 3 MiB.
pub const MAX_STATE_BYTES: usize = 16 * 1024 * 1024;

/// Most listeners in one file. Each is an Envoy listener on its own port.
pub const MAX_LISTENERS: usize = 1_000;

/// Most services in one file.
pub const MAX_SERVICES: usize = 20_000;

/// Most endpoints in one color of one service.
pub const MAX_ENDPOINTS_PER_COLOR: usize = 10_000;

/// Most YAML nodes (every key, value, list and map, counting what aliases expand to).
/// A service with one domain and one endpoint per color takes 20 nodes, so
/// [`MAX_SERVICES`] such services take 400,000; the rest is room for more endpoints and
/// domains. The parser stops at this limit before building anything bigger.
pub const MAX_YAML_NODES: usize = 1_000_000;

/// Most YAML nodes that aliases (`*name`) may expand to in all, counted as the parser
/// replays them (a node, or the end of a list or map: an alias of a one-endpoint list
/// costs 3). Room for thousands of services to share anchored endpoint lists; an "alias
/// bomb" (aliases of aliases, tenfold per level) reaches it in about half a second in a
/// debug build, where the node limit alone took several seconds.
pub const MAX_ALIAS_EXPANSION: usize = 100_000;
