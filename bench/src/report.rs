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

/// BENCHMARKS.md after a run of some figures only (`--only`): `old` (the file
/// as it was) with the rows and the "how measured" lines of the figures in
/// `ran` replaced by those of `new` (what [`markdown`] wrote for this run),
/// and each of those lines saying which run it comes from. The header, the
/// other figures and everything after their notes stay as they were.
pub fn merge_partial(old: &str, new: &str, ran: &[u32], run: &str) -> String {
    const NOTES: &str = "## How each figure was measured";
    // The table part, the notes section, and the hand-written sections after it.
    let split = |text: &str| -> (String, String, String) {
        let Some(at) = text.find(NOTES) else { return (text.to_owned(), String::new(), String::new()) };
        let notes = &text[at..];
        let end = notes[NOTES.len()..].find("\n## ").map_or(notes.len(), |i| NOTES.len() + i + 1);
        (text[..at].to_owned(), notes[..end].to_owned(), notes[end..].to_owned())
    };
    let (new_table, new_notes, _) = split(new);
    let (old_table, old_notes, hand_written) = split(old);
    let figure = |line: &str, prefix: &str| {
        line.strip_prefix(prefix).and_then(|rest| rest.split([' ', ':']).next()).and_then(|n| n.parse::<u32>().ok())
    };
    let ours = |line: &str, prefix: &str| figure(line, prefix).is_some_and(|n| ran.contains(&n));
    let table = replace_lines(&old_table, &new_table, |line| ours(line, "| "));
    let notes = replace_lines(&old_notes, &new_notes, |line| ours(line, "- #"));
    let notes = notes
        .lines()
        .map(|line| if ours(line, "- #") { format!("{line} From its own run: {run}.") } else { line.to_owned() })
        .collect::<Vec<_>>()
        .join("\n");
    format!("{table}{notes}\n{hand_written}")
}

/// `old` with its lines that `pick` selects replaced, at the place of the
/// first of them, by the lines of `new` that `pick` selects (or, when `old`
/// has none, those added after its last table row or note line).
fn replace_lines(old: &str, new: &str, pick: impl Fn(&str) -> bool) -> String {
    let fresh: Vec<&str> = new.lines().filter(|l| pick(l)).collect();
    let mut out: Vec<&str> = Vec::new();
    let mut placed = false;
    for line in old.lines() {
        if pick(line) {
            if !placed {
                out.extend(&fresh);
                placed = true;
            }
        } else {
            out.push(line);
        }
    }
    if !placed {
        let at = out.iter().rposition(|l| l.starts_with("| ") || l.starts_with("- #")).map_or(out.len(), |i| i + 1);
        out.splice(at..at, fresh);
    }
    out.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::merge_partial;

    const OLD: &str = "# Benchmarks\n\n| date | 2026-11-22 |\n\n| # | figure |\n|---|---|\n| 1 | one old |\n| 6 | six old |\n\
        | 6 | six old, second row |\n| 8 | eight old |\n\n## How each figure was measured\n\n- #1: how one.\n- #6: how six.\n\
        - #8: how eight.\n\n## Shortfalls\n\nby hand\n- #6 is short by hand.\n";
    const NEW: &str = "# Benchmarks\n\n| date | 2026-12-06 |\n\n| # | figure |\n|---|---|\n| 6 | six new |\n| 9 | nine new |\n\n\
        ## How each figure was measured\n\n- #6: how six, again.\n- #9: how nine.\n";

    #[test]
    fn a_partial_run_replaces_its_figures_and_keeps_the_others() {
        let merged = merge_partial(OLD, NEW, &[6, 9], "`cargo xtask bench --only 6,9`, 2026-12-06");
        let expected = "# Benchmarks\n\n| date | 2026-11-22 |\n\n| # | figure |\n|---|---|\n| 1 | one old |\n| 6 | six new |\n\
            | 9 | nine new |\n| 8 | eight old |\n\n## How each figure was measured\n\n- #1: how one.\n\
            - #6: how six, again. From its own run: `cargo xtask bench --only 6,9`, 2026-12-06.\n\
            - #9: how nine. From its own run: `cargo xtask bench --only 6,9`, 2026-12-06.\n- #8: how eight.\n\n\
            ## Shortfalls\n\nby hand\n- #6 is short by hand.\n";
        assert_eq!(merged, expected);
    }

    #[test]
    fn a_figure_new_to_the_file_comes_after_the_last_row() {
        let old = "| # | figure |\n|---|---|\n| 1 | one |\n\n## How each figure was measured\n\n- #1: how one.\n";
        let new = "| # | figure |\n|---|---|\n| 9 | nine |\n\n## How each figure was measured\n\n- #9: how nine.\n";
        let merged = merge_partial(old, new, &[9], "run");
        assert_eq!(
            merged,
            "| # | figure |\n|---|---|\n| 1 | one |\n| 9 | nine |\n\n## How each figure was measured\n\n- #1: how one.\n\
             - #9: how nine. From its own run: run.\n"
        );
    }
}
