//! `bsa-bench`: side-by-side host benchmark of buddy-slab-allocator, its published seed and
//! peer allocators, on workloads a–h of `shared/reference/anchors.md`.
//!
//! ```text
//! bsa-bench [--smoke] [--trials N] [--only a,b,...] [--allocators name,...] [--out DIR]
//! ```
//! All medians and ratios come from one run on one machine. Results go to
//! `DIR/results.md`, `DIR/results.csv` and `DIR/results.svg` (default `bench/results/`).

mod allocators;
mod arena;
mod check;
mod plot;
mod report;
mod rng;
mod timing;
mod workloads;

use std::{path::PathBuf, process::ExitCode, time::{Duration, Instant}};

use allocators::{
    BenchAlloc,
    axalloc::AxBench,
    buddy_system::BuddySystemBench,
    linked_list::LinkedListBench,
    rlsf::RlsfBench,
    seed::SeedBench,
    system::{GlibcBench, MimallocBench},
    talc::TalcBench,
};
use axallocator::{BuddyByteAllocator, SlabByteAllocator, TlsfByteAllocator};
use report::{Results, RunInfo};
use timing::TickClock;
use workloads::{Config, Metric, Outcome};

/// Command-line options.
struct Options {
    smoke: bool,
    trials: Option<usize>,
    /// Workload letters to run.
    only: Vec<char>,
    /// Allocator names to run (all when empty).
    allocators: Vec<String>,
    out_dir: PathBuf,
}

const USAGE: &str = "usage: bsa-bench [--smoke] [--trials N] [--only a,b,...] [--allocators name,...] [--out DIR]
  --smoke        tiny sizes, one trial (CI: checks the harness builds and runs)
  --trials N     timed trials per workload, median reported (default 11)
  --only LIST    workloads to run, from a,b,c,d,e,f,g,h (default all)
  --allocators L allocators to run by name (default all; see the list printed at start)
  --out DIR      results folder (default bench/results)";

/// Default trials of a full run.
const DEFAULT_TRIALS: usize = 11;

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        smoke: false,
        trials: None,
        only: "abcdefgh".chars().collect(),
        allocators: Vec::new(),
        out_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results")),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--smoke" => options.smoke = true,
            "--trials" => {
                let n: usize = value("--trials")?.parse().map_err(|e| format!("--trials: {e}"))?;
                if n == 0 {
                    return Err("--trials must be at least 1".into());
                }
                options.trials = Some(n);
            }
            "--only" => {
                let list = value("--only")?;
                options.only = list.split(',').filter_map(|w| w.trim().chars().next()).collect();
                if let Some(bad) = options.only.iter().find(|c| !"abcdefgh".contains(**c)) {
                    return Err(format!("--only: unknown workload {bad:?}"));
                }
            }
            "--allocators" => {
                options.allocators = value("--allocators")?.split(',').map(|s| s.trim().to_string()).collect();
            }
            "--out" => options.out_dir = PathBuf::from(value("--out")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

/// Runs every selected workload for allocator `A` and records the outcomes.
fn run_suite<A: BenchAlloc>(cfg: &Config, only: &[char], clock: &TickClock, results: &mut Results) {
    eprintln!("{}:", A::NAME);
    let is_arena = A::create(4 << 20).arena_bytes().is_some();
    for workload in only {
        let started = Instant::now();
        match workload {
            'a' => results.record(Metric::A, A::NAME, workloads::workload_a::<A>(cfg)),
            'b' => results.record(Metric::B, A::NAME, workloads::workload_b::<A>(cfg)),
            'c' => results.record(Metric::C, A::NAME, workloads::workload_c::<A>(cfg)),
            'd' => results.record(Metric::D, A::NAME, workloads::workload_d::<A>(cfg)),
            'e' => results.record(Metric::E, A::NAME, workloads::workload_e::<A>(cfg)),
            'f' if is_arena => {
                results.record(Metric::F1, A::NAME, workloads::workload_f1::<A>(cfg));
                results.record(Metric::F2, A::NAME, workloads::workload_f2::<A>(cfg));
            }
            'f' => {
                results.record(Metric::F1, A::NAME, Outcome::Skipped("no arena"));
                results.record(Metric::F2, A::NAME, Outcome::Skipped("no arena"));
            }
            'g' => {
                let outcomes = workloads::workload_g::<A>(cfg, clock);
                let metrics = [
                    Metric::GAllocP50,
                    Metric::GAllocP99,
                    Metric::GAllocP999,
                    Metric::GFreeP50,
                    Metric::GFreeP99,
                    Metric::GFreeP999,
                ];
                for (metric, outcome) in metrics.into_iter().zip(outcomes) {
                    results.record(metric, A::NAME, outcome);
                }
            }
            'h' if is_arena => results.record(Metric::H, A::NAME, workloads::workload_h::<A>(cfg)),
            'h' => results.record(Metric::H, A::NAME, Outcome::Skipped("no arena")),
            _ => unreachable!("validated in parse_args"),
        }
        if started.elapsed() > Duration::from_secs(20) {
            eprintln!("    ({workload} took {:.1} s)", started.elapsed().as_secs_f64());
        }
    }
}

/// One allocator of the run: its name and its monomorphised suite.
struct Entry {
    name: &'static str,
    run: fn(&Config, &[char], &TickClock, &mut Results),
}

macro_rules! entry {
    ($ty:ty) => {
        Entry { name: <$ty as BenchAlloc>::NAME, run: run_suite::<$ty> }
    };
}

/// Every allocator, in column order: this crate, the seed, the no_std peers, the userspace
/// references.
fn entries() -> Vec<Entry> {
    vec![
        #[cfg(feature = "ours")]
        entry!(allocators::ours::OursBench),
        entry!(SeedBench),
        entry!(TalcBench),
        entry!(RlsfBench),
        entry!(BuddySystemBench),
        entry!(LinkedListBench),
        entry!(AxBench<TlsfByteAllocator>),
        entry!(AxBench<SlabByteAllocator>),
        entry!(AxBench<BuddyByteAllocator>),
        entry!(GlibcBench),
        entry!(MimallocBench),
    ]
}

/// CPU model, logical CPUs and kernel, read from /proc.
fn machine_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let hypervisor = if cpuinfo.contains(" hypervisor") { ", virtualised" } else { "" };
    format!(
        "Machine: {model}, {cpus} logical CPUs{hypervisor}, Linux {}, {}",
        kernel.trim(),
        std::env::consts::ARCH
    )
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("error: {message}");
            }
            eprintln!("{USAGE}");
            return if message.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) };
        }
    };
    let mut cfg = if options.smoke { Config::smoke() } else { Config::full(DEFAULT_TRIALS) };
    if let Some(trials) = options.trials {
        cfg.trials = trials;
        cfg.efficiency_trials = trials.min(cfg.efficiency_trials.max(1));
    }
    let all = entries();
    let selected: Vec<&Entry> = all
        .iter()
        .filter(|e| options.allocators.is_empty() || options.allocators.iter().any(|n| n == e.name))
        .collect();
    if let Some(unknown) = options.allocators.iter().find(|n| !all.iter().any(|e| e.name == n.as_str())) {
        eprintln!("error: unknown allocator {unknown:?}; known: {}", all.iter().map(|e| e.name).collect::<Vec<_>>().join(", "));
        return ExitCode::from(2);
    }
    let machine = machine_description();
    let clock = TickClock::calibrate(Duration::from_millis(if options.smoke { 10 } else { 100 }));
    eprintln!("{machine}");
    eprintln!(
        "{} run: {} trials, arena {} MiB (f2: {} MiB), workloads {}, allocators {}",
        if options.smoke { "smoke" } else { "full" },
        cfg.trials,
        cfg.arena_bytes >> 20,
        cfg.talc_method_arena_bytes >> 20,
        options.only.iter().collect::<String>(),
        selected.iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
    );
    eprintln!("latency clock: {:.3} GHz, overhead {:.1} ns", clock.ghz(), clock.overhead_ns());
    let run_started = Instant::now();
    let mut results = Results::default();
    for entry in &selected {
        (entry.run)(&cfg, &options.only, &clock, &mut results);
    }
    eprintln!("ratios (value / seed, value / best peer):");
    for metric in results.metrics() {
        report::print_ratios(&results, metric);
    }
    let info = RunInfo {
        machine: machine.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        notes: notes(&cfg, &clock, run_started.elapsed()),
    };
    if let Err(e) = write_outputs(&options.out_dir, &results, &info) {
        eprintln!("error: writing results to {}: {e}", options.out_dir.display());
        return ExitCode::FAILURE;
    }
    eprintln!("done in {:.1} s; results in {}", run_started.elapsed().as_secs_f64(), options.out_dir.display());
    ExitCode::SUCCESS
}

/// Method notes printed under the tables.
fn notes(cfg: &Config, clock: &TickClock, elapsed: Duration) -> Vec<String> {
    vec![
        format!(
            "Each (workload, allocator) pair gets a fresh instance on a fresh pre-faulted, 2 MiB-aligned \
             {} MiB arena (f2: {} MiB), one untimed warm-up round that calibrates the work per trial to \
             about {} ms, then {} timed trials; medians reported (f: {} trials, h: one probe).",
            cfg.arena_bytes >> 20,
            cfg.talc_method_arena_bytes >> 20,
            cfg.trial_target.as_millis(),
            cfg.trials,
            cfg.efficiency_trials,
        ),
        "Every block is tagged (first and last 8 bytes) after allocation and checked before it is \
         freed; a mismatch aborts the run. The check is inside the timed loops for every allocator."
            .into(),
        format!(
            "b/g: {} live blocks; c: {} pages live per round (page API for seed/ours, \
             Layout(4096, 4096) for the others); d/e: batches of {} objects, producer and consumer \
             threads, queue depth 4.",
            cfg.live_blocks, cfg.live_pages, cfg.batch_objects
        ),
        "Single-threaded peers (talc, rlsf, buddy_system, linked_list, ax-*) sit behind spin::Mutex; \
         ax-* are axallocator 0.2 byte allocators given the whole arena (no bitmap page layer). \
         The seed runs with a host spin-lock provider (no IRQ masking) and a 64-slot per-thread slab pool."
            .into(),
        "glibc and mimalloc use process memory, not an arena: f and h do not apply to them.".into(),
        format!(
            "g: {}; {:.3} GHz, {:.1} ns overhead per reading pair.",
            timing::TICK_SOURCE,
            clock.ghz(),
            clock.overhead_ns()
        ),
        "h: (arena − allocatable bytes) / (arena / 4 KiB), allocatable bytes from a greedy \
         largest-block probe then a drain with sizes 4096..8 B."
            .into(),
        "f1/f2 and h are deterministic per seed; d/e for spin-locked peers swing a lot on 2 shared vCPUs."
            .into(),
        format!("Whole run: {:.0} s.", elapsed.as_secs_f64()),
    ]
}

fn write_outputs(dir: &std::path::Path, results: &Results, info: &RunInfo) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("results.md"), report::markdown(results, info))?;
    std::fs::write(dir.join("results.csv"), report::csv(results))?;
    plot::write_svg(results, &format!("bsa-bench — {}", info.machine), &dir.join("results.svg"))?;
    Ok(())
}
