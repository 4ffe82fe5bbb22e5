//! The settings Strata's binaries read from the environment, taken from their clap commands.

use std::collections::BTreeSet;
use std::ffi::OsStr;

/// Settings read from the environment outside clap (the log subscriber).
pub const LOG_SETTINGS: [&str; 2] = ["RUST_LOG", "RUST_LOG_FORMAT"];

/// The environment variables a binary's command line reads.
pub fn env_settings(command: clap::Command) -> BTreeSet<String> {
    command
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_str().expect("utf-8").to_owned())
        .collect()
}

/// The default of the setting read from `env`; panics unless it has exactly one.
pub fn env_default(command: &clap::Command, env: &str) -> String {
    let arg = command
        .get_arguments()
        .find(|a| a.get_env() == Some(OsStr::new(env)))
        .unwrap_or_else(|| panic!("the {} has no setting {env}", command.get_name()));
    let values = arg.get_default_values();
    assert_eq!(values.len(), 1, "{env} has one default");
    values[0].to_str().expect("utf-8").to_owned()
}

/// [`env_default`] as a number.
pub fn env_default_u64(command: &clap::Command, env: &str) -> u64 {
    env_default(command, env).parse().expect("a number")
}

/// [`env_default`] of a duration written in whole seconds (`300s`), as seconds.
pub fn env_default_secs(command: &clap::Command, env: &str) -> u64 {
    let text = env_default(command, env);
    text.strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{env} default {text} is not whole seconds"))
}

/// The environment variables a binary reads when run with `args`, the words after its
/// name: its own settings, plus those of each subcommand the words name in turn
/// (`worker firehose` reads the worker's and the firehose's).
pub fn env_settings_of(command: clap::Command, args: &[String]) -> BTreeSet<String> {
    let mut settings = env_settings(command.clone());
    let mut current = command;
    for word in args {
        let Some(sub) = current.find_subcommand(word).cloned() else {
            break;
        };
        settings.extend(env_settings(sub.clone()));
        current = sub;
    }
    settings
}
