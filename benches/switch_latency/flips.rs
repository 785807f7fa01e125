//! Flipping the color and timing each flip until a poller reads the new one.

use std::time::{Duration, Instant};

use crate::Args;
use crate::poll::Probe;

/// How long a flip may take before the bench gives up on it.
pub const FLIP_TIMEOUT: Duration = Duration::from_secs(10);

/// The two colors, as the backends answer in `x-color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    Blue = 0,
    Green = 1,
}

impl Color {
    pub fn name(self) -> &'static str {
        match self {
            Color::Blue => "blue",
            Color::Green => "green",
        }
    }

    fn other(self) -> Color {
        match self {
            Color::Blue => Color::Green,
            Color::Green => Color::Blue,
        }
    }

    pub fn from_header(value: &[u8]) -> Option<Color> {
        match value {
            b"blue" => Some(Color::Blue),
            b"green" => Some(Color::Green),
            _ => None,
        }
    }
}

/// One measured flip.
#[derive(Debug, Clone, Copy)]
pub struct Flip {
    /// Just before the save started.
    pub t0: Instant,
    /// Until the save call (write and close, or write, close and rename) returned.
    pub saved: Duration,
    /// Until the first response from the new color had been read.
    pub latency: Duration,
}

/// The flips of one series and what was seen along the way.
pub struct Series {
    pub name: &'static str,
    pub flips: Vec<Flip>,
    /// Per stage, the time from `t0` to that stage in each flip (`None` where it was not
    /// seen): when the save returned, and for switchyard its log events.
    pub stages: Vec<(&'static str, Vec<Option<Duration>>)>,
    /// Responses the pollers read during the series, and how long it ran: the polling
    /// rate, hence the resolution of the measurement.
    pub responses: u64,
    pub errors: u64,
    pub elapsed: Duration,
}

impl Series {
    /// Adds the flips of another round of the same series.
    pub fn absorb(&mut self, other: Series) {
        self.flips.extend(other.flips);
        for ((_, mine), (_, theirs)) in self.stages.iter_mut().zip(other.stages) {
            mine.extend(theirs);
        }
        self.responses += other.responses;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
    }
}

/// Runs `--warmup` uncounted flips, then `count` measured ones, with `save`, starting
/// from blue.
pub async fn measure(
    name: &'static str,
    args: &Args,
    count: usize,
    probe: &Probe,
    save: &dyn Fn(Color),
) -> Series {
    // Start every series from a known color (saving content already in force is a no-op).
    let mut color = Color::Blue;
    flip(probe, save, color).await;
    tokio::time::sleep(Duration::from_millis(args.gap_ms)).await;

    let (responses, errors) = probe.counts();
    let started = Instant::now();
    let mut flips = Vec::with_capacity(count);
    for i in 0..args.warmup + count {
        color = color.other();
        let measured = flip(probe, save, color).await;
        if i >= args.warmup {
            flips.push(measured);
        }
        tokio::time::sleep(Duration::from_millis(args.gap_ms)).await;
    }
    let elapsed = started.elapsed();
    let (responses_after, errors_after) = probe.counts();
    let saved = flips.iter().map(|f: &Flip| Some(f.saved)).collect();
    Series {
        name,
        flips,
        stages: vec![("save call returned", saved)],
        responses: responses_after - responses,
        errors: errors_after - errors,
        elapsed,
    }
}

/// Saves `to` and waits until a poller has read a response from it.
async fn flip(probe: &Probe, save: &dyn Fn(Color), to: Color) -> Flip {
    probe.expect(to);
    let t0 = Instant::now();
    save(to);
    let saved = t0.elapsed();
    let deadline = t0 + FLIP_TIMEOUT;
    loop {
        // The poller stamps the time itself; this loop only has to notice.
        if let Some(seen) = probe.seen() {
            return Flip {
                t0,
                saved,
                latency: seen.saturating_duration_since(t0),
            };
        }
        assert!(
            Instant::now() < deadline,
            "no response from {} within {FLIP_TIMEOUT:?} of the save ({} poll errors so far)",
            to.name(),
            probe.counts().1
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
