//! `pientegra-sandbox --help` names every variable and shows none of their
//! values: the API key and webhook secret flags may carry real ones.

use clap::CommandFactory;

const BIN: &str = env!("CARGO_BIN_EXE_pientegra-sandbox");

#[test]
fn help_shows_no_variables_value() {
    let command = pientegra_sandbox::cli::Cli::command();
    let variables: Vec<String> =
        command.get_arguments().filter_map(|a| a.get_env()).map(|v| v.to_string_lossy().into_owned()).collect();
    for must in ["PIENTEGRA_SANDBOX_API_KEY", "PIENTEGRA_SANDBOX_WEBHOOK_SECRET"] {
        assert!(variables.iter().any(|v| v == must), "{must} is read by an argument");
    }
    let value = |var: &str| format!("leak-{}-9f2c", var.to_lowercase());
    let mut run = std::process::Command::new(BIN);
    run.arg("--help").env_clear();
    for var in &variables {
        run.env(var, value(var));
    }
    let output = run.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let help = String::from_utf8_lossy(&output.stdout);
    for var in &variables {
        assert!(help.contains(&format!("[env: {var}")), "{var} is named:\n{help}");
        assert!(!help.contains(&value(var)), "{var}'s value is shown:\n{help}");
    }
    assert!(!help.contains("leak-"), "{help}");
}
