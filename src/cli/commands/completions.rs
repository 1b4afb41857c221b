//! `explo-shim completions <bash|zsh|fish>`: the shell completion script, generated from the
//! command line's own definition, so it never falls behind a flag.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, CompletionShell};

/// The name the scripts complete.
pub const BINARY: &str = "explo-shim";

/// The completion script for `shell`.
pub fn script(shell: CompletionShell) -> Vec<u8> {
    let shell = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), BINARY, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_the_subcommands_and_flags() {
        // Fish names a long flag `-l upstream`; bash and zsh spell it out.
        for (shell, upstream_flag) in [
            (CompletionShell::Bash, "--upstream"),
            (CompletionShell::Zsh, "--upstream"),
            (CompletionShell::Fish, "-l upstream"),
        ] {
            let script = String::from_utf8(script(shell)).unwrap();
            for word in ["explo-shim", upstream_flag, "usage", "fingerprint"] {
                assert!(script.contains(word), "{shell:?} lacks {word}");
            }
        }
    }
}
