//! Pairing on the command line: the options `gatt` and `serve` share (`--io`, `--passkey`,
//! `--confirm`, `--bonds`), a pairing delegate that prints what is shown and answers from the
//! options (so scripts can drive it), and `gattling bonds list|remove` (Core Vol 3 Part H §2.3).

use clap::{Args, Subcommand, ValueEnum};
use gattling::bonds::{Bond, BondStore, FileBondStore};
use gattling::proto::gap::privacy::{IdentityAddress, IdentityAddressType};
use gattling::proto::gap::BdAddr;
use gattling::security::{BoxFuture, IoCapability, PairingDelegate, SecurityOptions, DEFAULT_BOND_CAPACITY};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An IO capability as `--io` spells it (Core Vol 3 Part H §2.3.2, Table 2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum IoArg {
    /// Shows a passkey, cannot answer yes or no.
    DisplayOnly,
    /// Shows a number and takes yes or no (--confirm).
    DisplayYesno,
    /// Types a passkey (--passkey).
    KeyboardOnly,
    /// Neither shows nor types: Just Works only.
    NoIo,
    /// Shows and types.
    KeyboardDisplay,
}

impl IoArg {
    /// The SMP IO capability (Core Vol 3 Part H §3.5.1).
    pub fn capability(self) -> IoCapability {
        match self {
            IoArg::DisplayOnly => IoCapability::DisplayOnly,
            IoArg::DisplayYesno => IoCapability::DisplayYesNo,
            IoArg::KeyboardOnly => IoCapability::KeyboardOnly,
            IoArg::NoIo => IoCapability::NoInputNoOutput,
            IoArg::KeyboardDisplay => IoCapability::KeyboardDisplay,
        }
    }
}

/// The pairing options of `gattling gatt` and `gattling serve` (Core Vol 3 Part H §2.3).
#[derive(Args, Debug, Clone)]
pub struct SecurityArgs {
    /// This side's IO capability: display-only, display-yesno, keyboard-only, no-io (Just Works
    /// only) or keyboard-display. Anything but no-io asks for MITM protection.
    #[arg(long = "io", value_enum, default_value = "no-io", value_name = "CAP")]
    pub io: IoArg,
    /// The passkey this side types when asked (0-999999; needs --io keyboard-only or
    /// keyboard-display). A passkey to show is printed on stdout as `passkey: NNNNNN`.
    #[arg(long, value_name = "N", value_parser = parse_passkey)]
    pub passkey: Option<u32>,
    /// Accept a numeric comparison (printed on stdout as `compare: NNNNNN`); without it the
    /// comparison is rejected. Needs --io display-yesno or keyboard-display.
    #[arg(long)]
    pub confirm: bool,
    /// Keep bonds in this directory (one file per peer) instead of in memory; created if missing.
    #[arg(long, value_name = "DIR", env = "GATTLING_BONDS")]
    pub bonds: Option<PathBuf>,
}

/// Parses a passkey: six decimal digits at most, 0 to 999999 (Core Vol 3 Part H §2.3.5.3).
pub fn parse_passkey(s: &str) -> Result<u32, String> {
    let bad = || format!("{s:?}: a passkey is a number 0-999999 (up to six digits)");
    if s.is_empty() || s.len() > 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    s.parse::<u32>().map_err(|_| bad())
}

/// Answers pairing questions from the command line options and prints what the user is to see
/// (Core Vol 3 Part H §2.3.5): passkeys and comparison numbers on stdout, one line each.
#[derive(Debug, Clone, Copy)]
pub struct CliDelegate {
    /// The passkey typed when one is asked for.
    pub passkey: Option<u32>,
    /// The answer to numeric comparison.
    pub confirm: bool,
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

impl PairingDelegate for CliDelegate {
    fn confirm_numeric(&self, number: u32) -> BoxFuture<bool> {
        say(format!("compare: {number:06}"));
        if !self.confirm {
            eprintln!("numeric comparison rejected: give --confirm to accept it");
        }
        let yes = self.confirm;
        Box::pin(async move { yes })
    }

    fn display_passkey(&self, passkey: u32) {
        say(format!("passkey: {passkey:06}"));
    }

    fn request_passkey(&self) -> BoxFuture<Option<u32>> {
        if self.passkey.is_none() {
            eprintln!("the peer asked for a passkey: give --passkey N to type one");
        }
        let p = self.passkey;
        Box::pin(async move { p })
    }
}

impl SecurityArgs {
    /// Checks the options against each other and opens the bond directory; warnings for bond
    /// files that were skipped go to stderr.
    pub fn options(&self) -> Result<SecurityOptions, gattling::Error> {
        let bad = |m: String| gattling::Error::InvalidArgument(m);
        if self.passkey.is_some() && !matches!(self.io, IoArg::KeyboardOnly | IoArg::KeyboardDisplay) {
            return Err(bad("--passkey needs --io keyboard-only or --io keyboard-display (a side that types)".into()));
        }
        if self.confirm && !matches!(self.io, IoArg::DisplayYesno | IoArg::KeyboardDisplay) {
            return Err(bad(
                "--confirm needs --io display-yesno or --io keyboard-display (a side that can answer yes)".into(),
            ));
        }
        let mut options = SecurityOptions {
            io_capability: self.io.capability(),
            mitm: self.io != IoArg::NoIo,
            delegate: Arc::new(CliDelegate { passkey: self.passkey, confirm: self.confirm }),
            ..SecurityOptions::default()
        };
        if let Some(dir) = &self.bonds {
            options.bonds = Arc::new(open_store(dir, true, DEFAULT_BOND_CAPACITY)?);
        }
        Ok(options)
    }
}

/// Opens a bond directory keeping at most `capacity` bonds (creating it when `create`),
/// printing a warning for every bond file that could not be read (Core Vol 3 Part C §9.4).
pub fn open_store(dir: &Path, create: bool, capacity: usize) -> Result<FileBondStore, gattling::Error> {
    let bad = |m: String| gattling::Error::InvalidArgument(m);
    if dir.exists() && !dir.is_dir() {
        return Err(bad(format!("--bonds {}: not a directory", dir.display())));
    }
    if !create && !dir.is_dir() {
        return Err(bad(format!("--bonds {}: no such directory", dir.display())));
    }
    let store = FileBondStore::open(dir, capacity).map_err(|e| bad(format!("--bonds: {e}")))?;
    for s in store.skipped() {
        eprintln!("warning: skipped bond file {}: {}", s.path.display(), s.error);
    }
    Ok(store)
}

/// A command of `gattling bonds`.
#[derive(Subcommand, Debug)]
pub enum BondsCmd {
    /// One line per bond: identity address, secure-connections or legacy, authenticated or
    /// unauthenticated, key size, whether the peer's IRK is known, the number of stored CCCDs.
    /// Key values are never shown.
    List {
        /// The bond directory (as given to `gatt --bonds` or `serve --bonds`).
        #[arg(long, value_name = "DIR", env = "GATTLING_BONDS")]
        bonds: PathBuf,
    },
    /// Delete the bond with a peer: ADDR is XX:XX:XX:XX:XX:XX, optionally with /public or
    /// /random as `bonds list` prints it.
    Remove {
        /// The peer's identity address.
        #[arg(value_name = "ADDR")]
        address: String,
        /// The bond directory.
        #[arg(long, value_name = "DIR", env = "GATTLING_BONDS")]
        bonds: PathBuf,
    },
}

/// One line describing a bond, without key material (Core Vol 3 Part H §2.4.1).
pub fn describe(bond: &Bond) -> String {
    format!(
        "{} {} {} key-size {} irk {} cccds {}",
        bond.peer,
        if bond.secure_connections { "secure-connections" } else { "legacy" },
        if bond.authenticated { "authenticated" } else { "unauthenticated" },
        bond.key_size,
        if bond.peer_irk.is_some() { "yes" } else { "no" },
        bond.cccds.len()
    )
}

/// The bonded peers `text` names: `ADDR/public`, `ADDR/random`, or a bare `ADDR` matching
/// either type.
fn matching(store: &FileBondStore, text: &str) -> Result<Vec<IdentityAddress>, gattling::Error> {
    let bad = |m: String| gattling::Error::InvalidArgument(m);
    let (addr, kind) = match text.rsplit_once('/') {
        Some((a, "public")) => (a, Some(IdentityAddressType::Public)),
        Some((a, "random")) => (a, Some(IdentityAddressType::StaticRandom)),
        Some((_, k)) => return Err(bad(format!("{text:?}: the address type is public or random, not {k:?}"))),
        None => (text, None),
    };
    let addr: BdAddr = addr
        .parse()
        .map_err(|_| bad(format!("{text:?}: expected a Bluetooth address XX:XX:XX:XX:XX:XX[/public|/random]")))?;
    Ok(store
        .list()
        .into_iter()
        .map(|b| b.peer)
        .filter(|p| p.addr == addr && kind.is_none_or(|k| p.kind == k))
        .collect())
}

/// Runs `gattling bonds ...`.
pub fn run(cmd: BondsCmd) -> Result<(), gattling::Error> {
    match cmd {
        BondsCmd::List { bonds } => {
            let store = open_store(&bonds, false, DEFAULT_BOND_CAPACITY)?;
            let list = store.list();
            let mut out = std::io::stdout().lock();
            for b in &list {
                let _ = writeln!(out, "{}", describe(b));
            }
            if list.is_empty() {
                eprintln!("no bonds in {}", bonds.display());
            }
            Ok(())
        }
        BondsCmd::Remove { address, bonds } => {
            let store = open_store(&bonds, false, DEFAULT_BOND_CAPACITY)?;
            let peers = matching(&store, &address)?;
            match peers.as_slice() {
                [] => Err(gattling::Error::InvalidArgument(format!("no bond with {address} in {}", bonds.display()))),
                [peer] => {
                    store.remove(peer)?;
                    println!("removed {peer}");
                    Ok(())
                }
                _ => Err(gattling::Error::InvalidArgument(format!(
                    "{address} names bonds with a public and a random address: add /public or /random"
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passkeys_are_up_to_six_digits() {
        assert_eq!(parse_passkey("123456"), Ok(123456));
        assert_eq!(parse_passkey("000042"), Ok(42));
        assert_eq!(parse_passkey("0"), Ok(0));
        for bad in ["", "1234567", "-1", "12a", " 12", "+12"] {
            assert!(parse_passkey(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn options_refuse_a_passkey_or_confirm_the_io_cannot_use() {
        let args = |io, passkey, confirm| SecurityArgs { io, passkey, confirm, bonds: None };
        assert!(args(IoArg::DisplayOnly, Some(1), false).options().is_err());
        assert!(args(IoArg::NoIo, None, true).options().is_err());
        let o = args(IoArg::KeyboardOnly, Some(1), false).options().expect("valid");
        assert_eq!(o.io_capability, IoCapability::KeyboardOnly);
        assert!(o.mitm);
        let o = args(IoArg::NoIo, None, false).options().expect("valid");
        assert!(!o.mitm);
    }

    #[test]
    fn a_bond_line_shows_no_key() {
        let peer = IdentityAddress::public("00:11:22:33:44:55".parse().expect("addr"));
        let mut b = Bond::new(peer);
        b.secure_connections = true;
        b.authenticated = true;
        b.ltk = Some(gattling::bonds::LongTermKey::secure_connections([0xAB; 16]));
        b.peer_irk = Some([0xCD; 16]);
        b.cccds.insert(12, 1);
        let line = describe(&b);
        assert_eq!(line, "00:11:22:33:44:55/public secure-connections authenticated key-size 16 irk yes cccds 1");
        assert!(!line.to_lowercase().contains("abab") && !line.to_lowercase().contains("cdcd"));
    }
}
