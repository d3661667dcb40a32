//! `gattling completions SHELL` and `gattling man`: generated from the clap definition, so they
//! never drift from the real options.

use clap::CommandFactory;

/// Writes the completion script for `shell` to stdout (a reader that closes the pipe early,
/// as `| head` does, is not a failure).
pub fn completions(shell: clap_complete::Shell) -> Result<(), gattling::Error> {
    let mut cmd = crate::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "gattling", &mut script);
    write_stdout(&script, "cannot write the completion script to stdout")
}

/// Writes `bytes` to stdout; a closed pipe ends the output quietly.
fn write_stdout(bytes: &[u8], context: &str) -> Result<(), gattling::Error> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(source) => Err(gattling::transport::TransportError::Io { context: context.into(), source }.into()),
        Ok(()) => Ok(()),
    }
}

/// Writes the man page (roff) to stdout.
pub fn man() -> Result<(), gattling::Error> {
    let page = clap_mangen::Man::new(crate::Cli::command());
    let mut roff = Vec::new();
    page.render(&mut roff).map_err(|source| gattling::transport::TransportError::Io {
        context: "cannot render the man page".into(),
        source,
    })?;
    // `gattling man | head` closes the pipe early: not a failure.
    write_stdout(&roff, "cannot write the man page to stdout")
}
