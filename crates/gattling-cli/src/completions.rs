//! `gattling completions SHELL` and `gattling man`: generated from the clap definition, so they
//! never drift from the real options.

use clap::CommandFactory;

/// Writes the completion script for `shell` to stdout.
pub fn completions(shell: clap_complete::Shell) {
    let mut cmd = crate::Cli::command();
    clap_complete::generate(shell, &mut cmd, "gattling", &mut std::io::stdout());
}

/// Writes the man page (roff) to stdout.
pub fn man() -> Result<(), gattling::Error> {
    let page = clap_mangen::Man::new(crate::Cli::command());
    match page.render(&mut std::io::stdout()) {
        // `gattling man | head` closes the pipe early: not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(source) => Err(gattling::transport::TransportError::Io {
            context: "cannot write the man page to stdout".into(),
            source,
        }
        .into()),
        Ok(()) => Ok(()),
    }
}
