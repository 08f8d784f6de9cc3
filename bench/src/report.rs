//! Results store, progress lines, the markdown report and the CSV dump.

use std::{collections::BTreeMap, fmt::Write as _};

use crate::workloads::{Metric, Outcome};

/// Name under which this crate appears in the tables.
pub const OURS: &str = "ours";
/// Name under which the seed appears in the tables.
pub const SEED: &str = "seed-0.6.1";

/// Every outcome of a run, by metric and allocator.
#[derive(Default)]
pub struct Results {
    /// Allocator names in run order (table columns).
    pub allocators: Vec<&'static str>,
    cells: BTreeMap<(Metric, &'static str), Outcome>,
}

impl Results {
    /// An empty store whose columns are `allocators`, in this order.
    pub fn with_allocators(allocators: Vec<&'static str>) -> Self {
        Self {
            allocators,
            cells: BTreeMap::new(),
        }
    }

    /// Records one outcome and prints a progress line.
    pub fn record(&mut self, metric: Metric, allocator: &'static str, outcome: Outcome) {
        if !self.allocators.contains(&allocator) {
            self.allocators.push(allocator);
        }
        match &outcome {
            Outcome::Measured(s) => eprintln!(
                "  [{:>13}] {:<13} {:>10} {} (min {}, max {}, median of {})",
                metric.key(),
                allocator,
                format_value(s.median),
                metric.unit(),
                format_value(s.min),
                format_value(s.max),
                s.count,
            ),
            Outcome::Skipped(reason) => {
                eprintln!(
                    "  [{:>13}] {:<13} skipped: {reason}",
                    metric.key(),
                    allocator
                )
            }
        }
        self.cells.insert((metric, allocator), outcome);
    }

    /// Median of one cell, if measured.
    pub fn median(&self, metric: Metric, allocator: &str) -> Option<f64> {
        self.cells
            .iter()
            .find_map(|((m, a), outcome)| match outcome {
                Outcome::Measured(s) if *m == metric && *a == allocator => Some(s.median),
                _ => None,
            })
    }

    /// Metrics that have at least one cell, in table order.
    pub fn metrics(&self) -> Vec<Metric> {
        Metric::ALL
            .into_iter()
            .filter(|m| self.cells.keys().any(|(cm, _)| cm == m))
            .collect()
    }

    /// Best measured peer (neither this crate nor the seed) for `metric`.
    pub fn best_peer(&self, metric: Metric) -> Option<(&'static str, f64)> {
        self.allocators
            .iter()
            .filter(|a| **a != OURS && **a != SEED)
            .filter_map(|a| self.median(metric, a).map(|v| (*a, v)))
            .reduce(|best, cand| {
                if is_better(metric, cand.1, best.1) {
                    cand
                } else {
                    best
                }
            })
    }

    /// The goal of `metric` in this run: its absolute goal, or its multiple of the best
    /// peer's median here (so it exists only once a peer was measured).
    pub fn goal_value(&self, metric: Metric) -> Option<f64> {
        metric
            .goal()
            .or_else(|| Some(metric.goal_vs_best_peer()? * self.best_peer(metric)?.1))
    }
}

/// Whether `a` beats `b` on `metric`.
fn is_better(metric: Metric, a: f64, b: f64) -> bool {
    if metric.higher_is_better() {
        a > b
    } else {
        a < b
    }
}

/// Three significant digits, no exponent for the ranges that occur.
pub fn format_value(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// `a / b` formatted as a ratio.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "–".to_string(),
    }
}

/// Facts about the machine and run, printed above the tables.
pub struct RunInfo {
    pub machine: String,
    pub command: String,
    pub notes: Vec<String>,
}

/// Renders the markdown report: machine, results table, ratios, notes.
pub fn markdown(results: &Results, info: &RunInfo) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# bsa-bench results\n");
    let _ = writeln!(md, "{}\n", info.machine);
    let _ = writeln!(md, "Command: `{}`\n", info.command);
    let _ = writeln!(md, "## Medians\n");
    let _ = write!(md, "| workload | unit |");
    for a in &results.allocators {
        let _ = write!(md, " {a} |");
    }
    let _ = writeln!(md, " goal |");
    let _ = write!(md, "|---|---|");
    for _ in &results.allocators {
        let _ = write!(md, "---:|");
    }
    let _ = writeln!(md, "---|");
    for metric in results.metrics() {
        let best = best_overall(results, metric);
        let _ = write!(
            md,
            "| {}: {} | {} |",
            metric.key(),
            metric.title(),
            metric.unit()
        );
        for a in &results.allocators {
            let cell = match results.median(metric, a) {
                Some(v) if Some(v) == best => format!("**{}**", format_value(v)),
                Some(v) => format_value(v),
                None => String::new(),
            };
            let _ = write!(md, " {cell} |");
        }
        let relation = if metric.higher_is_better() {
            "≥"
        } else {
            "≤"
        };
        let goal = match (metric.goal_vs_best_peer(), results.goal_value(metric)) {
            (Some(factor), Some(g)) => {
                format!("{relation} {factor:.1}x best peer = {}", format_value(g))
            }
            (Some(factor), None) => format!("{relation} {factor:.1}x best peer"),
            (None, Some(g)) => format!("{relation} {}", format_value(g)),
            (None, None) => String::new(),
        };
        let _ = writeln!(md, " {goal} |");
    }
    let _ = writeln!(
        md,
        "\nBold: best in the row. Empty: not applicable (see notes).\n"
    );
    let _ = writeln!(md, "## Ratios\n");
    let _ = writeln!(
        md,
        "Value divided by the reference (below 1 is better for times and overhead, above 1 for \
         efficiency). Best peer: best of all allocators except this crate and the seed.\n"
    );
    let has_ours = results.allocators.contains(&OURS);
    let _ = write!(md, "| workload | seed | best peer | best peer / seed |");
    if has_ours {
        let _ = write!(md, " ours | ours / seed | ours / best peer | goal met |");
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "|---|---:|---|---:|{}",
        if has_ours { "---:|---:|---:|---|" } else { "" }
    );
    for metric in results.metrics() {
        let seed = results.median(metric, SEED);
        let best = results.best_peer(metric);
        let best_cell = best.map_or("–".into(), |(name, v)| {
            format!("{name} {}", format_value(v))
        });
        let _ = write!(
            md,
            "| {} | {} | {} | {} |",
            metric.key(),
            seed.map_or("–".into(), format_value),
            best_cell,
            ratio(best.map(|b| b.1), seed),
        );
        if has_ours {
            let ours = results.median(metric, OURS);
            let met = match (ours, results.goal_value(metric)) {
                (Some(v), Some(g)) => {
                    if is_better(metric, v, g) || v == g {
                        "yes"
                    } else {
                        "no"
                    }
                }
                _ => "",
            };
            let _ = write!(
                md,
                " {} | {} | {} | {met} |",
                ours.map_or("–".into(), format_value),
                ratio(ours, seed),
                ratio(ours, best.map(|b| b.1)),
            );
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(md, "\n## Notes\n");
    for note in &info.notes {
        let _ = writeln!(md, "- {note}");
    }
    md
}

/// Best median of a row over all allocators.
fn best_overall(results: &Results, metric: Metric) -> Option<f64> {
    results
        .allocators
        .iter()
        .filter_map(|a| results.median(metric, a))
        .reduce(|best, v| if is_better(metric, v, best) { v } else { best })
}

/// Prints the ratios of one metric to stderr (progress output): every allocator's median,
/// its ratio to the seed and to the best peer.
pub fn print_ratios(results: &Results, metric: Metric) {
    let seed = results.median(metric, SEED);
    let best = results.best_peer(metric);
    let best_text = best.map_or("–".to_string(), |(name, v)| {
        format!("{name} {}", format_value(v))
    });
    eprintln!(
        "  => {} [{}], best peer {best_text}; value/seed, value/best peer:",
        metric.key(),
        metric.unit()
    );
    for a in &results.allocators {
        if let Some(v) = results.median(metric, a) {
            eprintln!(
                "       {a:<13} {:>10} {:>9} {:>9}",
                format_value(v),
                ratio(Some(v), seed),
                ratio(Some(v), best.map(|b| b.1))
            );
        }
    }
}

/// All cells as CSV: metric, allocator, median, min, max (or the skip reason).
pub fn csv(results: &Results) -> String {
    let mut out = String::from("metric,unit,allocator,median,min,max,note\n");
    for ((metric, allocator), outcome) in &results.cells {
        match outcome {
            Outcome::Measured(s) => {
                let _ = writeln!(
                    out,
                    "{},{},{allocator},{},{},{},",
                    metric.key(),
                    metric.unit(),
                    s.median,
                    s.min,
                    s.max
                );
            }
            Outcome::Skipped(reason) => {
                let _ = writeln!(
                    out,
                    "{},{},{allocator},,,,{reason}",
                    metric.key(),
                    metric.unit()
                );
            }
        }
    }
    out
}
