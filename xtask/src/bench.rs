//! Benchmarks (being written).

/// Runs the benchmarks.
pub fn run(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("not written yet")
}
