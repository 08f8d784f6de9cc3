//! `bsa-bench`: side-by-side host benchmark of buddy-slab-allocator, its published seed and
//! peer allocators, on workloads a–h of `shared/reference/anchors.md` and r, l of issue 15.
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

use std::{
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

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
use timing::{Summary, TickClock};
use workloads::{Config, Metric, Outcome, TimedRun, latency::LatencyRun};

/// Command-line options.
struct Options {
    smoke: bool,
    trials: Option<usize>,
    /// Workload letters to run.
    only: Vec<char>,
    /// Allocator names to run (all when empty).
    allocators: Vec<String>,
    out_dir: PathBuf,
    /// Fixed work units per round (profiling), instead of time-based calibration.
    fixed_ops: Option<usize>,
}

const USAGE: &str =
    "usage: bsa-bench [--smoke] [--trials N] [--only a,b,...] [--allocators name,...] [--out DIR]
  --smoke        tiny sizes, one trial (CI: checks the harness builds and runs)
  --trials N     timed trials per workload, median reported (default 11)
  --only LIST    workloads to run, from a,b,c,d,e,f,g,h,r,l (default all)
  --allocators L allocators to run by name (default all; see the list printed at start)
  --out DIR      results folder (default bench/results)
  --fixed-ops N  N operation pairs per round instead of calibrating by time (profiling
                 under valgrind --tool=callgrind; the timings are then meaningless)";

/// Default trials of a full run.
const DEFAULT_TRIALS: usize = 11;

/// Every workload letter, in run order.
const WORKLOADS: &str = "abcdefghrl";

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        smoke: false,
        trials: None,
        only: WORKLOADS.chars().collect(),
        allocators: Vec::new(),
        out_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results")),
        fixed_ops: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--smoke" => options.smoke = true,
            "--trials" => {
                let n: usize = value("--trials")?
                    .parse()
                    .map_err(|e| format!("--trials: {e}"))?;
                if n == 0 {
                    return Err("--trials must be at least 1".into());
                }
                options.trials = Some(n);
            }
            "--only" => {
                let list = value("--only")?;
                options.only = list
                    .split(',')
                    .filter_map(|w| w.trim().chars().next())
                    .collect();
                if let Some(bad) = options.only.iter().find(|c| !WORKLOADS.contains(**c)) {
                    return Err(format!("--only: unknown workload {bad:?}"));
                }
            }
            "--allocators" => {
                options.allocators = value("--allocators")?
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .collect();
            }
            "--out" => options.out_dir = PathBuf::from(value("--out")?),
            "--fixed-ops" => {
                let n: usize = value("--fixed-ops")?
                    .parse()
                    .map_err(|e| format!("--fixed-ops: {e}"))?;
                options.fixed_ops = Some(n.max(1));
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

/// One allocator of the run: its name and its monomorphised workload entry points.
struct Entry {
    name: &'static str,
    /// Whether it manages an arena (f and h apply).
    uses_arena: bool,
    prepare_timed: fn(char, &Config) -> Box<dyn TimedRun>,
    prepare_latency: fn(&Config) -> Box<dyn LatencyRun>,
    f1: fn(&Config) -> Outcome,
    f2: fn(&Config) -> Outcome,
    h: fn(&Config) -> Outcome,
}

impl Entry {
    fn of<A: BenchAlloc>() -> Self {
        Self {
            name: A::NAME,
            uses_arena: A::USES_ARENA,
            prepare_timed: workloads::prepare_timed::<A>,
            prepare_latency: workloads::latency::prepare::<A>,
            f1: workloads::efficiency::workload_f1::<A>,
            f2: workloads::efficiency::workload_f2::<A>,
            h: workloads::efficiency::workload_h::<A>,
        }
    }
}

/// Every allocator, in column order: this crate, the seed, the no_std peers, the userspace
/// references.
fn entries() -> Vec<Entry> {
    vec![
        #[cfg(feature = "ours")]
        Entry::of::<allocators::ours::OursBench>(),
        Entry::of::<SeedBench>(),
        Entry::of::<TalcBench>(),
        Entry::of::<RlsfBench>(),
        Entry::of::<BuddySystemBench>(),
        Entry::of::<LinkedListBench>(),
        Entry::of::<AxBench<TlsfByteAllocator>>(),
        Entry::of::<AxBench<SlabByteAllocator>>(),
        Entry::of::<AxBench<BuddyByteAllocator>>(),
        Entry::of::<GlibcBench>(),
        Entry::of::<MimallocBench>(),
    ]
}

/// The metric a throughput workload letter produces.
fn throughput_metric(workload: char) -> Metric {
    match workload {
        'a' => Metric::A,
        'b' => Metric::B,
        'c' => Metric::C,
        'd' => Metric::D,
        'e' => Metric::E,
        'r' => Metric::R,
        'l' => Metric::L,
        _ => unreachable!("not a throughput workload: {workload}"),
    }
}

/// The allocator to run first in trial `trial`: the order rotates so no allocator always
/// runs right after the same neighbour.
fn rotated(count: usize, trial: usize) -> impl Iterator<Item = usize> {
    (0..count).map(move |k| (k + trial) % count)
}

/// The CPU-time metric of a multi-threaded throughput workload.
fn cpu_metric(workload: char) -> Option<Metric> {
    match workload {
        'd' => Some(Metric::DCpu),
        'e' => Some(Metric::ECpu),
        'l' => Some(Metric::LCpu),
        _ => None,
    }
}

/// Throughput workload `workload` for every selected allocator: prepare and calibrate each,
/// then interleave the trials across allocators.
fn run_throughput(workload: char, selected: &[&Entry], cfg: &Config, results: &mut Results) {
    let metric = throughput_metric(workload);
    eprintln!(
        "[{}] {} — preparing and calibrating",
        metric.key(),
        metric.title()
    );
    let mut runs: Vec<(Box<dyn TimedRun>, usize)> = selected
        .iter()
        .map(|entry| {
            let mut run = (entry.prepare_timed)(workload, cfg);
            let ops = workloads::calibrate(&mut *run, cfg.trial_target, cfg.fixed_ops);
            (run, ops)
        })
        .collect();
    let mut wall_ns = vec![Vec::with_capacity(cfg.trials); runs.len()];
    let mut cpu_ns = vec![Vec::with_capacity(cfg.trials); runs.len()];
    eprint!("    trials:");
    for trial in 0..cfg.trials {
        for index in rotated(runs.len(), trial) {
            let (run, ops) = &mut runs[index];
            let (wall, done) = run.round(*ops);
            wall_ns[index].push(workloads::ns_per_unit((wall, done)));
            if let Some(cpu) = run.last_round_cpu_time() {
                cpu_ns[index].push(workloads::ns_per_unit((cpu, done)));
            }
        }
        eprint!(" {}", trial + 1);
    }
    eprintln!();
    drop(runs); // Tear down (frees live blocks, joins threads) before the next workload.
    for (entry, values) in selected.iter().zip(&wall_ns) {
        results.record(metric, entry.name, Outcome::Measured(Summary::of(values)));
    }
    if let Some(cpu_metric) = cpu_metric(workload) {
        for (entry, values) in selected.iter().zip(&cpu_ns) {
            results.record(
                cpu_metric,
                entry.name,
                Outcome::Measured(Summary::of(values)),
            );
        }
    }
}

/// Metrics of g in the order `LatencyRun::round` returns them.
const LATENCY_METRICS: [Metric; 6] = [
    Metric::GAllocP50,
    Metric::GAllocP99,
    Metric::GAllocP999,
    Metric::GFreeP50,
    Metric::GFreeP99,
    Metric::GFreeP999,
];

/// Latency workload g for every selected allocator, trials interleaved; the first round of
/// each allocator is a discarded warm-up.
fn run_latency(selected: &[&Entry], cfg: &Config, clock: &TickClock, results: &mut Results) {
    eprintln!("[g] single-operation latency (b pattern) — preparing and warming up");
    let mut runs: Vec<Box<dyn LatencyRun>> = selected
        .iter()
        .map(|entry| {
            let mut run = (entry.prepare_latency)(cfg);
            run.round(clock);
            run
        })
        .collect();
    let mut per_trial = vec![[(); 6].map(|_| Vec::with_capacity(cfg.trials)); runs.len()];
    eprint!("    trials:");
    for trial in 0..cfg.trials {
        for index in rotated(runs.len(), trial) {
            for (series, value) in per_trial[index].iter_mut().zip(runs[index].round(clock)) {
                series.push(value);
            }
        }
        eprint!(" {}", trial + 1);
    }
    eprintln!();
    drop(runs);
    for (entry, series) in selected.iter().zip(per_trial) {
        for (metric, values) in LATENCY_METRICS.into_iter().zip(series) {
            results.record(metric, entry.name, Outcome::Measured(Summary::of(&values)));
        }
    }
}

/// Space workloads (f1, f2 or h) for every selected allocator, one after the other.
fn run_space(metric: Metric, selected: &[&Entry], cfg: &Config, results: &mut Results) {
    eprintln!("[{}] {}", metric.key(), metric.title());
    for entry in selected {
        let started = Instant::now();
        let outcome = if !entry.uses_arena {
            Outcome::Skipped("no arena")
        } else {
            match metric {
                Metric::F1 => (entry.f1)(cfg),
                Metric::F2 => (entry.f2)(cfg),
                Metric::H => (entry.h)(cfg),
                _ => unreachable!("not a space metric"),
            }
        };
        results.record(metric, entry.name, outcome);
        if started.elapsed() > Duration::from_secs(20) {
            eprintln!(
                "    ({} took {:.1} s)",
                entry.name,
                started.elapsed().as_secs_f64()
            );
        }
    }
}

/// Runs workload `workload` for every selected allocator and prints its ratios.
fn run_workload(
    workload: char,
    selected: &[&Entry],
    cfg: &Config,
    clock: &TickClock,
    results: &mut Results,
) {
    let metrics: Vec<Metric> = match workload {
        'a'..='e' | 'r' | 'l' => {
            run_throughput(workload, selected, cfg, results);
            [Some(throughput_metric(workload)), cpu_metric(workload)]
                .into_iter()
                .flatten()
                .collect()
        }
        'f' => {
            run_space(Metric::F1, selected, cfg, results);
            run_space(Metric::F2, selected, cfg, results);
            vec![Metric::F1, Metric::F2]
        }
        'g' => {
            run_latency(selected, cfg, clock, results);
            LATENCY_METRICS.to_vec()
        }
        'h' => {
            run_space(Metric::H, selected, cfg, results);
            vec![Metric::H]
        }
        _ => unreachable!("validated in parse_args"),
    };
    for metric in metrics {
        report::print_ratios(results, metric);
    }
}

/// The 1-minute load average (other users of the machine disturb the timings).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// CPU model, logical CPUs and kernel, read from /proc.
fn machine_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let hypervisor = if cpuinfo.contains(" hypervisor") {
        ", virtualised"
    } else {
        ""
    };
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
            return if message.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    let mut cfg = if options.smoke {
        Config::smoke()
    } else {
        Config::full(DEFAULT_TRIALS)
    };
    cfg.fixed_ops = options.fixed_ops;
    if let Some(trials) = options.trials {
        cfg.trials = trials;
        cfg.efficiency_trials = trials.min(cfg.efficiency_trials.max(1));
    }
    let all = entries();
    let selected: Vec<&Entry> = all
        .iter()
        .filter(|e| options.allocators.is_empty() || options.allocators.iter().any(|n| n == e.name))
        .collect();
    if let Some(unknown) = options
        .allocators
        .iter()
        .find(|n| !all.iter().any(|e| e.name == n.as_str()))
    {
        eprintln!(
            "error: unknown allocator {unknown:?}; known: {}",
            all.iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
        );
        return ExitCode::from(2);
    }
    let machine = machine_description();
    let calibration_ms = match (options.smoke, options.fixed_ops) {
        (_, Some(_)) => 1,
        (true, None) => 10,
        (false, None) => 100,
    };
    let clock = TickClock::calibrate(Duration::from_millis(calibration_ms));
    eprintln!("{machine}");
    eprintln!(
        "{} run: {} trials, arena {} MiB (f2: {} MiB), workloads {}, allocators {}",
        if options.smoke { "smoke" } else { "full" },
        cfg.trials,
        cfg.arena_bytes >> 20,
        cfg.talc_method_arena_bytes >> 20,
        options.only.iter().collect::<String>(),
        selected
            .iter()
            .map(|e| e.name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!(
        "latency clock: {:.3} GHz, overhead {:.1} ns",
        clock.ghz(),
        clock.overhead_ns()
    );
    let run_started = Instant::now();
    let load_at_start = load_average();
    let mut results = Results::with_allocators(selected.iter().map(|e| e.name).collect());
    for &workload in &options.only {
        run_workload(workload, &selected, &cfg, &clock, &mut results);
    }
    let info = RunInfo {
        machine: machine.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        notes: notes(
            &cfg,
            &clock,
            run_started.elapsed(),
            (&load_at_start, &load_average()),
        ),
    };
    if let Err(e) = write_outputs(&options.out_dir, &results, &info) {
        eprintln!(
            "error: writing results to {}: {e}",
            options.out_dir.display()
        );
        return ExitCode::FAILURE;
    }
    eprintln!(
        "done in {:.1} s; results in {}",
        run_started.elapsed().as_secs_f64(),
        options.out_dir.display()
    );
    ExitCode::SUCCESS
}

/// Method notes printed under the tables.
fn notes(cfg: &Config, clock: &TickClock, elapsed: Duration, load: (&str, &str)) -> Vec<String> {
    vec![
        format!(
            "Each (workload, allocator) pair gets a fresh instance on a fresh pre-faulted, 2 MiB-aligned \
             {} MiB arena (f2: {} MiB) and untimed warm-up rounds that calibrate the work per trial to \
             about {} ms; then {} timed trials, interleaved across allocators (trial k of every \
             allocator, in rotating order, before trial k+1), medians reported (f: {} trials, h: one \
             probe).",
            cfg.arena_bytes >> 20,
            cfg.talc_method_arena_bytes >> 20,
            cfg.trial_target.as_millis(),
            cfg.trials,
            cfg.efficiency_trials,
        ),
        "Every block is tagged (first and last 8 bytes) after allocation and checked before it is \
         freed; in r, after every realloc the first 8 bytes and the last 8 of the preserved prefix \
         are checked and the new tail tagged. A mismatch aborts the run. The check is inside the \
         timed loops for every allocator."
            .into(),
        format!(
            "b/g: {} live blocks; c: {} pages live per round (page API for seed/ours, \
             Layout(4096, 4096) for the others); d/e: batches of {} objects, producer and consumer \
             threads, queue depth 4, producer pinned to CPU 0 and consumer to \
             CPU 1 so every remote free crosses cores; `d`/`e` are wall-clock, `d cpu`/`e cpu` the \
             CPU time of both threads (CLOCK_THREAD_CPUTIME_ID) per pair, which other load on the \
             machine disturbs less.",
            cfg.live_blocks, cfg.live_pages, cfg.batch_objects
        ),
        format!(
            "r: {} blocks grown together by doubling from {} B to {} KiB, one realloc per block \
             per doubling through each allocator's realloc (talc, rlsf, glibc, mimalloc and ours \
             their own, in place where they can; the seed, buddy_system, linked_list and ax-* \
             allocate, copy and free, as their GlobalAlloc does), then freed; ns per realloc, the \
             first allocation and the final free included. l: {} threads pinned to CPUs 0 and 1 \
             share a pool of {} slots; each replacement frees the object of a random slot \
             (allocated by either thread) and stores a new one of 8..256 B (7 in 8) or \
             257..2048 B; `l` is wall-clock, `l cpu` both threads' CPU time, per replacement. \
             Goal of r and l: at most the best peer's median (1.0x).",
            workloads::realloc::GROWTH_BLOCKS,
            workloads::realloc::GROWTH_FIRST_BYTES,
            workloads::realloc::GROWTH_LAST_BYTES >> 10,
            workloads::server::SERVER_THREADS,
            cfg.live_blocks,
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
        format!(
            "Whole run: {:.0} s; 1-minute load average {} at the start, {} at the end (this \
             machine is shared: a load above the core count inflates every figure, the ratios \
             less).",
            elapsed.as_secs_f64(),
            load.0,
            load.1
        ),
    ]
}

fn write_outputs(
    dir: &std::path::Path,
    results: &Results,
    info: &RunInfo,
) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("results.md"), report::markdown(results, info))?;
    std::fs::write(dir.join("results.csv"), report::csv(results))?;
    plot::write_svg(
        results,
        &format!("bsa-bench — {}", info.machine),
        &dir.join("results.svg"),
    )?;
    Ok(())
}
