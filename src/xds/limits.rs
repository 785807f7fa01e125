//! What one ADS stream may cost: bounds on each request a client sends and on how fast it
//! sends them, so no client (a broken proxy, or a hostile one that reached the port) can
//! make switchyard hold or spend without end.
//!
//! A request over a bound ends its stream with a status that names the bound; requests
//! faster than the rate are not refused but read later (HTTP/2 flow control then slows the
//! client down), since a proxy's own burst at startup is legitimate.

use std::time::{Duration, Instant};

/// The bounds on one stream. `serve` flags set them; the defaults fit a fleet of
/// thousands of proxies and thousands of services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Largest request message, in bytes (`--max-request-bytes`).
    pub max_request_bytes: usize,
    /// How long a request may take to arrive once its first byte has (`--request-timeout-ms`).
    pub request_timeout: Duration,
    /// Most resource names one request may list (SotW), or one stream may subscribe to for
    /// one type (delta, where subscriptions add up over requests) (`--max-resource-names`).
    pub max_resource_names: usize,
    /// Largest node description (metadata and all, without the extension list Envoy
    /// sends, which is dropped), in encoded bytes (`--max-node-bytes`).
    pub max_node_bytes: usize,
    /// Requests read per second, sustained (`--max-requests-per-second`)...
    pub requests_per_second: u32,
    /// ... and in a burst.
    pub request_burst: u32,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            // Envoy's endpoint subscription for 10,000 services lists 20,000 names (about
            // 500 KB); four times that leaves room.
            max_request_bytes: 4 * 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            max_resource_names: 100_000,
            max_node_bytes: 64 * 1024,
            // A proxy sends a handful at startup and about one per type per switch.
            requests_per_second: 100,
            request_burst: 1_000,
        }
    }
}

/// A token bucket: a request takes a token; tokens come back at a steady rate up to the
/// burst. A pure function of the instants given, so it is tested with a fake clock.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(per_second: u32, burst: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.at = now;
    }

    /// `None` when a token is there now; otherwise, when the next one will be.
    pub fn ready_at(&mut self, now: Instant) -> Option<Instant> {
        self.refill(now);
        (self.tokens < 1.0).then(|| {
            let wait = (1.0 - self.tokens) / self.per_second;
            now + Duration::from_secs_f64(wait)
        })
    }

    /// Takes a token if there is one: `None`. Otherwise, when the next one will be there
    /// (and nothing is taken).
    pub fn take(&mut self, now: Instant) -> Option<Instant> {
        let later = self.ready_at(now);
        if later.is_none() {
            self.tokens -= 1.0;
        }
        later
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_served_then_the_steady_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, 3, t0);
        for _ in 0..3 {
            assert_eq!(bucket.take(t0), None);
        }
        let next = bucket.take(t0).expect("the burst is spent");
        assert_eq!(next - t0, Duration::from_millis(100));
        assert_eq!(bucket.take(t0 + Duration::from_millis(100)), None);
        assert!(bucket.take(t0 + Duration::from_millis(150)).is_some());
    }

    #[test]
    fn a_quiet_stream_gets_its_burst_back_but_no_more() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, 3, t0);
        for _ in 0..3 {
            bucket.take(t0);
        }
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(bucket.take(later), None);
        }
        assert!(bucket.take(later).is_some(), "no more than the burst");
    }
}
