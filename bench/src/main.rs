//! `pientegra-bench`: the figures behind BENCHMARKS.md. Run it through
//! `cargo xtask bench`, which builds the release server, the widget, its
//! partner bundle and the counter baseline first and raises the open-file limit.
//!
//! Every load generator is in this process, talks to 127.0.0.1 only, and is
//! bounded in both count and time.

// Measurement code: rates, ratios and percentiles are floating point.
#![allow(clippy::float_arithmetic, clippy::cast_precision_loss)]

mod chrome;
mod deposits;
mod phone;
mod proxy;
mod reconcile;
mod report;
mod scaleout;
mod slow_heads;
mod sse;
mod stack;
mod webhooks;
mod widget;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

use crate::report::Row;

/// What every figure may need.
pub struct Ctx {
    /// The workspace (holds `dist/` and `bench/counter/`).
    pub root: PathBuf,
    /// The release `pientegra-server` binary.
    pub server_bin: PathBuf,
    /// Fewer samples and shorter rounds (for development, not for the record).
    pub quick: bool,
}

/// The rows and method notes of one figure (or two measured in one run).
pub struct Figure {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

const USAGE: &str = "pientegra-bench [--root DIR] [--server-bin PATH] [--only 1,2,...] [--quick] [--out FILE]";

fn main() -> anyhow::Result<()> {
    // Figure 4 starts this binary again as its bare proxy baseline.
    if std::env::args().nth(1).as_deref() == Some("proxy") {
        return proxy::serve();
    }
    let mut args = std::env::args().skip(1);
    let mut root = std::env::current_dir()?;
    let mut server_bin = None;
    let mut only: Option<Vec<u32>> = None;
    let mut quick = false;
    let mut out = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--root" => root = PathBuf::from(args.next().context("--root needs a value")?),
            "--server-bin" => server_bin = Some(PathBuf::from(args.next().context("--server-bin needs a value")?)),
            "--only" => {
                let list = args.next().context("--only needs a value")?;
                only = Some(
                    list.split(',').map(|n| n.trim().parse()).collect::<Result<_, _>>().context("--only 1,2,...")?,
                );
            }
            "--quick" => quick = true,
            "--out" => out = Some(PathBuf::from(args.next().context("--out needs a value")?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    let server_bin = match server_bin {
        Some(bin) => bin,
        None => std::env::current_exe()?.with_file_name("pientegra-server"),
    };
    let out = out.unwrap_or_else(|| root.join("BENCHMARKS.md"));
    let ctx = Ctx { root, server_bin, quick };
    let wanted = |n: u32| only.as_ref().is_none_or(|list| list.contains(&n));

    let machine = report::Machine::probe();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut take = |result: anyhow::Result<Figure>, fallback: &[(&str, &str, &str)]| match result {
        Ok(figure) => {
            rows.extend(figure.rows);
            notes.extend(figure.notes);
        }
        Err(error) => {
            let why = format!("{error:#}");
            eprintln!("bench: {why}");
            rows.extend(fallback.iter().map(|(id, name, target)| Row::not_measured(id, name, target, &why)));
        }
    };
    let timed = |n: &str| {
        eprintln!("bench: figure {n} ...");
        Instant::now()
    };
    let done = |n: &str, t: Instant| eprintln!("bench: figure {n} took {:.1} s", t.elapsed().as_secs_f64());

    if wanted(1) {
        let t = timed("1");
        take(runtime.block_on(webhooks::run(&ctx)), &[("1", "durable verified webhooks/s", "≥ 1.0x baseline at c=64")]);
        done("1", t);
    }
    if wanted(2) || wanted(3) {
        let t = timed("2+3");
        take(
            runtime.block_on(sse::run(&ctx)),
            &[
                ("2", "webhook → SSE frame with 10,000 idle streams", "p99 ≤ 5 ms"),
                ("3", "server memory per idle SSE stream", "≤ 8 KiB"),
            ],
        );
        done("2+3", t);
    }
    if wanted(4) {
        let t = timed("4");
        take(runtime.block_on(deposits::run(&ctx)), &[("4", "POST /api/deposits latency", "p99 overhead ≤ 1 ms")]);
        done("4", t);
    }
    if wanted(5) {
        let t = timed("5");
        take(runtime.block_on(reconcile::run(&ctx)), &[("5", "reconcile 100000 matching intents", "≤ 10 s total")]);
        done("5", t);
    }
    if wanted(6) {
        take(widget::size(&ctx), &[("6", "shipped widget size", "≤ 60 KiB gzip and ≤ 1.8x counter")]);
    }
    if wanted(7) {
        let t = timed("7");
        take(runtime.block_on(widget::tti(&ctx)), &[("7", "widget time to interactive", "≤ 300 ms")]);
        done("7", t);
    }

    if wanted(8) {
        let t = timed("8");
        take(
            runtime.block_on(slow_heads::run(&ctx)),
            &[(
                "8",
                "slow-head attack: 5000 connections, unfinished heads",
                "RSS ≤ 20 KiB a connection; /healthz p99 ≤ 5 ms",
            )],
        );
        done("8", t);
    }
    if wanted(9) {
        let t = timed("9");
        take(runtime.block_on(phone::run(&ctx)), &[("9", phone::FIGURE, phone::TARGET)]);
        done("9", t);
    }
    if wanted(10) || wanted(11) || wanted(12) {
        let t = timed("10+11+12");
        take(
            runtime.block_on(scaleout::run(&ctx)),
            &[
                (
                    "10",
                    "PostgreSQL: durable verified webhooks/s through nginx to 2 instances, concurrency 64",
                    "≥ 1.0x baseline",
                ),
                (
                    "11",
                    "PostgreSQL: webhook to one instance → SSE frame on the other, 10,000 idle streams",
                    "p99 ≤ 10 ms",
                ),
                ("12", "PostgreSQL: POST /api/deposits through nginx to 2 instances", "p99 overhead ≤ 2 ms"),
            ],
        );
        done("10+11+12", t);
    }

    println!(
        "\nmachine: {} CPUs, {}, {}; {}; {}; load {}\n",
        machine.cpus, machine.cpu_model, machine.memory, machine.rustc, machine.date, machine.load
    );
    print!("{}", report::text_table(&rows));
    let mut command = String::from("cargo xtask bench");
    if quick {
        command.push_str(" --quick");
        notes.insert(0, "QUICK MODE: fewer samples and shorter rounds; not the figures of record.".into());
    }
    if let Some(list) = &only {
        command.push_str(&format!(" --only {}", list.iter().map(u32::to_string).collect::<Vec<_>>().join(",")));
    }
    let mut markdown = report::markdown(&machine, &rows, &notes, &command);
    let old = std::fs::read_to_string(&out).ok();
    match (&only, &old) {
        // A run of some figures replaces those it measured (`--only 10` runs
        // 11 and 12 too) and keeps the rest, the header included.
        (Some(_), Some(old)) => {
            let mut ran: Vec<u32> = rows.iter().filter_map(|row| row.id.parse().ok()).collect();
            ran.dedup();
            let load = machine.load.split_whitespace().next().unwrap_or("?");
            let run = format!(
                "`{command}`, {}, {} CPUs ({}), load average {load} at start",
                machine.date, machine.cpus, machine.cpu_model
            );
            markdown = report::merge_partial(old, &markdown, &ran, &run);
        }
        // The analysis of unmet targets is written by hand: a new run keeps it
        // (check it against the new figures).
        _ => {
            if let Some(analysis) = old.as_deref().and_then(hand_written) {
                markdown.push('\n');
                markdown.push_str(&analysis);
            }
        }
    }
    std::fs::write(&out, markdown).with_context(|| format!("writing {}", out.display()))?;
    println!("\nwrote {}", out.display());
    Ok(())
}

/// The hand-written section of an existing BENCHMARKS.md, from its heading on.
fn hand_written(old: &str) -> Option<String> {
    old.find(HAND_WRITTEN).map(|at| old[at..].to_owned())
}

/// The heading of the section the bench does not write.
const HAND_WRITTEN: &str = "## Shortfalls";
