//! The result table: printed to the terminal and written as BENCHMARKS.md.

use std::fmt::Write;
use std::process::Command;

/// Whether a figure met its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Met,
    NotMet,
    /// Informational row, no target of its own.
    Info,
    NotMeasured,
}

impl Verdict {
    pub fn of(met: bool) -> Verdict {
        if met { Verdict::Met } else { Verdict::NotMet }
    }

    fn label(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::NotMet => "NOT met",
            Verdict::Info => "-",
            Verdict::NotMeasured => "not measured",
        }
    }
}

/// One line of the table.
#[derive(Clone, Debug)]
pub struct Row {
    pub id: String,
    pub figure: String,
    pub value: String,
    pub baseline: String,
    pub ratio: String,
    pub target: String,
    pub verdict: Verdict,
}

impl Row {
    /// A figure that could not be measured, and why.
    pub fn not_measured(id: &str, figure: &str, target: &str, why: &str) -> Row {
        Row {
            id: id.to_owned(),
            figure: figure.to_owned(),
            value: format!("not measured: {why}"),
            baseline: "-".into(),
            ratio: "-".into(),
            target: target.to_owned(),
            verdict: Verdict::NotMeasured,
        }
    }
}

/// The machine the figures come from.
pub struct Machine {
    pub cpus: String,
    pub memory: String,
    pub cpu_model: String,
    pub rustc: String,
    pub date: String,
    pub load: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let run = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_else(|| "unknown".into())
        };
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".into(), |(_, m)| m.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or_else(|| "unknown".into(), |kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0));
        Machine {
            cpus: run("nproc", &[]),
            memory,
            cpu_model,
            rustc: run("rustc", &["--version"]),
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            load: std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned(),
        }
    }
}

const HEADERS: [&str; 7] = ["#", "figure", "measured", "baseline (same run)", "ratio", "target", "verdict"];

fn cells(row: &Row) -> [String; 7] {
    [
        row.id.clone(),
        row.figure.clone(),
        row.value.clone(),
        row.baseline.clone(),
        row.ratio.clone(),
        row.target.clone(),
        row.verdict.label().to_owned(),
    ]
}

/// A fixed-width table for the terminal.
pub fn text_table(rows: &[Row]) -> String {
    let mut widths = HEADERS.map(str::len);
    for row in rows {
        for (w, c) in widths.iter_mut().zip(cells(row)) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cols: [String; 7]| {
        for (c, w) in cols.iter().zip(widths) {
            let _ = write!(out, "{c:<w$}  ");
        }
        out.push('\n');
    };
    line(&mut out, HEADERS.map(str::to_owned));
    for row in rows {
        line(&mut out, cells(row));
    }
    out
}

/// BENCHMARKS.md.
pub fn markdown(machine: &Machine, rows: &[Row], notes: &[String], command: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(out, "Written by `{command}`; every baseline is measured in the same run, on the same machine.");
    let _ = writeln!(
        out,
        "Load generators are Rust, loopback only, bounded in count and time. Each figure runs a warm-up first.\n"
    );
    let _ = writeln!(out, "| machine | |\n|---|---|");
    let _ = writeln!(out, "| CPUs (`nproc`) | {} |", machine.cpus);
    let _ = writeln!(out, "| CPU model | {} |", machine.cpu_model);
    let _ = writeln!(out, "| memory | {} |", machine.memory);
    let _ = writeln!(out, "| rustc | {} |", machine.rustc);
    let _ = writeln!(out, "| date | {} |", machine.date);
    let _ = writeln!(out, "| load average at start | {} |\n", machine.load);
    let _ = writeln!(out, "| {} |", HEADERS.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(HEADERS.len()));
    for row in rows {
        let _ = writeln!(out, "| {} |", cells(row).map(|c| c.replace('|', "\\|")).join(" | "));
    }
    if !notes.is_empty() {
        let _ = writeln!(out, "\n## How each figure was measured\n");
        for note in notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    out
}
