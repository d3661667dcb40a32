//! The settings `AT&W` stores: a small readable text file of `key=value` lines, values in the AT
//! parameter forms (integers, quoted strings, hex byte arrays), written atomically.

use crate::params::Args;
use std::path::Path;

/// Everything `AT&W` persists and a (re)start loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    pub echo: bool,
    pub extended_errors: bool,
    pub s2: u8,
    pub s3: u8,
    pub s4: u8,
    pub s5: u8,
    /// `AT+UBTLN`; `None` is the default name.
    pub local_name: Option<String>,
    /// `AT+UBTM`: 0 off, 1 central, 2 peripheral, 3 both.
    pub bt_mode: u8,
    /// `AT+UBTADL` custom data and advertiser type.
    pub adv_data: Option<Vec<u8>>,
    pub adv_type: u8,
    /// `AT+UBTASD` custom scan response data.
    pub scan_rsp: Option<Vec<u8>>,
    /// `AT+UBTALS` (units of 0.625 ms).
    pub adv_min: u16,
    pub adv_max: u16,
    /// Legacy advertising on (`AT+UBTAL` / `AT+UBTALD`).
    pub advertising: bool,
    /// `AT+UBTIOC`: 0 NoInputNoOutput, 1 DisplayOnly, 2 DisplayYesNo, 3 KeyboardOnly,
    /// 4 KeyboardDisplay (the manual's numbering, not SMP's).
    pub io_cap: u8,
    /// `AT+UBTBSM`: 0 none, 1 unauthenticated, 2 authenticated, 3 authenticated with Secure
    /// Connections, 4 Secure Connections only.
    pub security_mode: u8,
    /// `AT+UBTPM`: pairing accepted from peers.
    pub pairing_mode: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            echo: true,
            extended_errors: false,
            s2: 43,
            s3: 13,
            s4: 10,
            s5: 8,
            local_name: None,
            bt_mode: 3,
            adv_data: None,
            adv_type: 0,
            scan_rsp: None,
            adv_min: 1600,
            adv_max: 2000,
            advertising: false,
            io_cap: 0,
            security_mode: 0,
            pairing_mode: false,
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

impl Settings {
    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut s = String::from("# gattling u-connectXpress settings (AT&W)\n");
        s += &format!("echo={}\n", self.echo as u8);
        s += &format!("extended_errors={}\n", self.extended_errors as u8);
        s += &format!("s2={}\ns3={}\ns4={}\ns5={}\n", self.s2, self.s3, self.s4, self.s5);
        if let Some(n) = &self.local_name {
            s += &format!("local_name={}\n", crate::format::quoted(n));
        }
        s += &format!("bt_mode={}\n", self.bt_mode);
        if let Some(d) = &self.adv_data {
            s += &format!("adv_data={}\n", hex(d));
        }
        s += &format!("adv_type={}\n", self.adv_type);
        if let Some(d) = &self.scan_rsp {
            s += &format!("scan_rsp={}\n", hex(d));
        }
        s += &format!("adv_interval={},{}\n", self.adv_min, self.adv_max);
        s += &format!("advertising={}\n", self.advertising as u8);
        s += &format!("io_cap={}\n", self.io_cap);
        s += &format!("security_mode={}\n", self.security_mode);
        s += &format!("pairing_mode={}\n", self.pairing_mode as u8);
        s
    }

    /// Parses the file's text; unknown keys and bad values are skipped (logged).
    pub fn from_text(text: &str) -> Settings {
        let mut s = Settings::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else { continue };
            let Ok(a) = Args::parse(v) else { continue };
            let int = |lo, hi| a.int(0, lo, hi).ok();
            let ok = match k.trim() {
                "echo" => int(0, 1).map(|v| s.echo = v == 1),
                "extended_errors" => int(0, 1).map(|v| s.extended_errors = v == 1),
                "s2" => int(0, 127).map(|v| s.s2 = v as u8),
                "s3" => int(0, 127).map(|v| s.s3 = v as u8),
                "s4" => int(0, 127).map(|v| s.s4 = v as u8),
                "s5" => int(0, 127).map(|v| s.s5 = v as u8),
                "local_name" => a.string(0, 0, 29).ok().map(|v| s.local_name = Some(v)),
                "bt_mode" => int(0, 3).map(|v| s.bt_mode = v as u8),
                "adv_data" => a.bytes(0, 1, 31).ok().map(|v| s.adv_data = Some(v)),
                "adv_type" => int(0, 2).map(|v| s.adv_type = v as u8),
                "scan_rsp" => a.bytes(0, 1, 31).ok().map(|v| s.scan_rsp = Some(v)),
                "adv_interval" => match (a.int(0, 32, 16384), a.int(1, 32, 16384)) {
                    (Ok(lo), Ok(hi)) if lo <= hi => {
                        s.adv_min = lo as u16;
                        s.adv_max = hi as u16;
                        Some(())
                    }
                    _ => None,
                },
                "advertising" => int(0, 1).map(|v| s.advertising = v == 1),
                "io_cap" => int(0, 4).map(|v| s.io_cap = v as u8),
                "security_mode" => int(0, 4).map(|v| s.security_mode = v as u8),
                "pairing_mode" => int(0, 1).map(|v| s.pairing_mode = v == 1),
                _ => None,
            };
            if ok.is_none() {
                tracing::warn!(line, "settings: ignored line");
            }
        }
        s
    }

    /// Loads `path`; defaults when it does not exist or cannot be read.
    pub fn load(path: Option<&Path>) -> Settings {
        match path.map(std::fs::read_to_string) {
            Some(Ok(text)) => Settings::from_text(&text),
            Some(Err(e)) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(error = %e, "settings: cannot read; using defaults");
                Settings::default()
            }
            _ => Settings::default(),
        }
    }

    /// Writes `path` atomically (a temporary file beside it, then rename).
    pub fn store(&self, path: &Path) -> std::io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        std::fs::write(&tmp, self.to_text())?;
        std::fs::rename(&tmp, path)
    }
}
