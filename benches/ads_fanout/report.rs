//! The report: one row per stream count, as a line and as markdown.

use std::time::Duration;

use crate::wire::Protocol;

/// One line of results.
#[derive(Debug, Default)]
pub struct Row {
    pub n: usize,
    pub protocol: Protocol,
    pub error: Option<String>,
    pub storm: Duration,
    pub storm_cpu: f64,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub switches_done: usize,
    pub switch_cpu: f64,
    pub server_convergence_ms: Option<f64>,
    /// Switches the server counted as converged (every proxy acknowledged).
    pub server_converged: u64,
    /// Connections dropped by a full accept queue during the storm (system-wide
    /// `ListenOverflows`; each costs the client a 1 s SYN retransmission).
    pub listen_drops: u64,
    pub idle_cpu_pct: f64,
    pub rss0_kib: u64,
    pub rss_n_kib: u64,
    pub hwm_kib: u64,
    /// Protobuf bytes of the responses received per switch, summed over the streams.
    pub proto_bytes_per_switch: f64,
    pub tcp_bytes_per_switch: Option<f64>,
    /// TCP segments sent per switch, both ways, machine-wide.
    pub segments_per_switch: f64,
    pub responses_per_switch: [f64; 5],
    pub client_cpu: f64,
    /// The load generator's CPU during the storm and during the switches.
    pub client_storm_cpu: f64,
    pub client_switch_cpu: f64,
    pub client_hwm_kib: u64,
    /// `--lrs`: load reports sent per second in the idle window, their bytes, reports not
    /// sent (the server's flow-control window full), and what the server counted.
    pub lrs: bool,
    pub lrs_reports_per_s: f64,
    pub lrs_bytes_per_s: f64,
    pub lrs_skipped: u64,
    pub lrs_counted_per_s: Option<f64>,
}

impl Row {
    pub fn failed(n: usize, protocol: Protocol, e: String) -> Row {
        Row {
            n,
            protocol,
            error: Some(e),
            ..Default::default()
        }
    }

    pub fn per_stream_kib(&self) -> f64 {
        (self.rss_n_kib as f64 - self.rss0_kib as f64) / self.n as f64
    }

    /// What one stream received for one switch (protobuf bytes).
    pub fn proto_bytes_per_stream(&self) -> f64 {
        self.proto_bytes_per_switch / self.n.max(1) as f64
    }

    pub fn header() -> String {
        "| N | protocol | connect storm | accept-queue drops | switch p50 | p90 | p99 | max | server-measured convergence (mean) | server CPU: storm | per switch | idle | RSS: 0 streams | N idle | peak | per stream | bytes per switch: protobuf | per stream | TCP | load generator CPU: storm | per switch | load reports (LRS) while idle |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            .to_owned()
    }

    pub fn markdown(&self) -> String {
        if let Some(e) = &self.error {
            let e = e.replace('|', "/");
            return format!("| {} | {} | failed: {e} |", self.n, self.protocol.word());
        }
        let switches = self.switches_done.max(1) as f64;
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} s | {:.1} ms | {:.2} % | {} | {} | {} | {:.1} KiB | {} | {} | {} | {:.2} s | {:.1} ms | {} |",
            self.n,
            self.protocol.word(),
            ms(self.storm),
            self.listen_drops,
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max),
            self.server_convergence_ms
                .map(|c| format!("{c:.1} ms"))
                .unwrap_or_else(|| "-".into()),
            self.storm_cpu,
            self.switch_cpu * 1000.0 / switches,
            self.idle_cpu_pct,
            mib(self.rss0_kib),
            mib(self.rss_n_kib),
            mib(self.hwm_kib),
            self.per_stream_kib(),
            bytes(self.proto_bytes_per_switch),
            bytes(self.proto_bytes_per_stream()),
            self.tcp_bytes_per_switch
                .map(bytes)
                .unwrap_or_else(|| "-".into()),
            self.client_storm_cpu,
            self.client_switch_cpu * 1000.0 / switches,
            self.lrs_summary(),
        )
    }

    /// `--lrs`: reports per second sent (their bytes) and counted by the server, and how
    /// many were not sent; `off` without it.
    pub fn lrs_summary(&self) -> String {
        if !self.lrs {
            return "off".to_owned();
        }
        format!(
            "{:.0}/s sent ({}/s), {} counted, {} not sent",
            self.lrs_reports_per_s,
            bytes(self.lrs_bytes_per_s),
            self.lrs_counted_per_s
                .map(|r| format!("{r:.0}/s"))
                .unwrap_or_else(|| "-".into()),
            self.lrs_skipped,
        )
    }

    pub fn line(&self) -> String {
        format!(
            "N={} {} | storm {} ({} accept-queue drops) | switch p50 {} p90 {} p99 {} max {} ({} switches, {} converged by the server's count, mean {}) | server CPU storm {:.2}s, switches {:.2}s, idle {:.2}% | RSS {} -> {} (peak {}), {:.1} KiB/stream | per switch {} protobuf ({} per stream), {} TCP, {:.0} TCP segments (both ways), responses per switch C/E/L/R {:?} | load generator CPU {:.1}s (storm {:.2}s, per switch {:.1} ms), peak RSS {} | LRS {}",
            self.n,
            self.protocol.word(),
            ms(self.storm),
            self.listen_drops,
            ms(self.p50),
            ms(self.p90),
            ms(self.p99),
            ms(self.max),
            self.switches_done,
            self.server_converged,
            self.server_convergence_ms
                .map(|c| format!("{c:.1} ms"))
                .unwrap_or_else(|| "-".into()),
            self.storm_cpu,
            self.switch_cpu,
            self.idle_cpu_pct,
            mib(self.rss0_kib),
            mib(self.rss_n_kib),
            mib(self.hwm_kib),
            self.per_stream_kib(),
            bytes(self.proto_bytes_per_switch),
            bytes(self.proto_bytes_per_stream()),
            self.tcp_bytes_per_switch
                .map(bytes)
                .unwrap_or_else(|| "-".into()),
            self.segments_per_switch,
            self.responses_per_switch,
            self.client_cpu,
            self.client_storm_cpu,
            self.client_switch_cpu * 1000.0 / self.switches_done.max(1) as f64,
            mib(self.client_hwm_kib),
            self.lrs_summary(),
        )
    }
}

pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub fn bytes(b: f64) -> String {
    if b >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", b / 1024.0 / 1024.0)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}
