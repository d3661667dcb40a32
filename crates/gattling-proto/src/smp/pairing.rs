//! The per-link Security Manager pairing state machine, both roles (Core Vol 3 Part H §2.3, §3).
//!
//! [`Smp`] is sans-IO: it is fed received SMP PDUs, time (µs) and the user's answers, and gives
//! PDUs to send ([`Smp::poll_transmit`]), events ([`Smp::poll_event`]) and its next deadline
//! ([`Smp::poll_timeout`]). Phase 1 is the pairing feature exchange (§2.3.1), phase 2 either LE
//! legacy pairing (§2.3.5.2-§2.3.5.5) or LE Secure Connections (§2.3.5.6), phase 3 the transport
//! specific key distribution (§2.4.3) after the link is encrypted.
//!
//! The caller drives encryption: the central gets [`SmpEvent::StartEncryption`] and issues LE
//! Enable Encryption; the peripheral answers the controller's LTK Request with
//! [`Smp::ltk_request`]. Either side reports the Encryption Change with [`Smp::encryption_changed`].

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

use zeroize::{Zeroize, Zeroizing};

use super::crypto::{self, KeyError, KeyPair, SecureRandom};
use super::pdu::{AuthReq, IoCapability, KeyDistribution, KeypressType, PairingParams, Reason, SmpPdu};

/// The SMP timeout: 30 s without an SMP command ends the procedure (Core Vol 3 Part H §3.4).
pub const SMP_TIMEOUT_US: u64 = 30_000_000;
/// The longest waiting interval of the repeated-attempts back-off (Core Vol 3 Part H §2.3.6).
pub const MAX_RETRY_INTERVAL_US: u64 = 64_000_000;
/// Number of Passkey Entry rounds in LE Secure Connections (Core Vol 3 Part H §2.3.5.6.3).
const PASSKEY_ROUNDS: u8 = 20;

/// Local Security Manager settings for one link (Core Vol 3 Part H §3.5.1, §2.3.4, §2.3.6).
#[derive(Debug, Clone)]
pub struct SmpConfig {
    /// Our IO capability (§3.5.1).
    pub io_capability: IoCapability,
    /// Request bonding: keys are meant to be stored (§3.5.1 Bonding_Flags).
    pub bonding: bool,
    /// Require MITM protection: Just Works is refused with Authentication Requirements (§2.3.1).
    pub mitm: bool,
    /// Support LE Secure Connections (§3.5.1 SC).
    pub secure_connections: bool,
    /// Secure Connections Only mode: refuse legacy pairing with Authentication Requirements (§2.3.5.6).
    pub sc_only: bool,
    /// Use keypress notifications in Passkey Entry (§3.5.1 Keypress).
    pub keypress: bool,
    /// Maximum encryption key size we support, 7 to 16 octets (§2.3.4).
    pub max_key_size: u8,
    /// Smallest negotiated key size we accept; smaller gives Encryption Key Size (§2.3.4).
    pub min_key_size: u8,
    /// Keys we offer to distribute (§3.6.1).
    pub local_keys: KeyDistribution,
    /// Keys we ask the peer to distribute (§3.6.1).
    pub peer_keys: KeyDistribution,
    /// Accept the specification's debug public key from the peer (§2.3.5.6.1).
    pub allow_debug_key: bool,
    /// First waiting interval after a failed pairing; doubles on every further failure (§2.3.6).
    pub retry_interval_us: u64,
    /// Peripheral: hold each acceptable Pairing Request until [`Smp::accept_pairing`] (§2.3.1).
    pub approve_pairing: bool,
    /// Passkey Entry: the passkey (0-999999) this side displays, instead of a random one per
    /// pairing (a device's fixed PIN; the spec recommends random ones, §2.3.5.3).
    pub static_passkey: Option<u32>,
}

impl Default for SmpConfig {
    fn default() -> Self {
        Self {
            io_capability: IoCapability::NoInputNoOutput,
            bonding: true,
            mitm: false,
            secure_connections: true,
            sc_only: false,
            keypress: false,
            max_key_size: 16,
            min_key_size: 7,
            local_keys: KeyDistribution(KeyDistribution::ENC_KEY | KeyDistribution::ID_KEY),
            peer_keys: KeyDistribution(KeyDistribution::ENC_KEY | KeyDistribution::ID_KEY),
            allow_debug_key: false,
            retry_interval_us: 2_000_000,
            approve_pairing: false,
            static_passkey: None,
        }
    }
}

/// Our role on the link: the central initiates pairing, the peripheral responds (Core Vol 3
/// Part H §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRole {
    /// Central: the initiator.
    Central,
    /// Peripheral: the responder.
    Peripheral,
}

/// A device address with its type as used by `c1`, `f5` and `f6` (Core Vol 3 Part H §2.2.3, §2.2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SmpAddress {
    /// 0 public, 1 random.
    pub addr_type: u8,
    /// The 48-bit address, little-endian.
    pub address: [u8; 6],
}

impl SmpAddress {
    /// The 56-bit `A1`/`A2` value of `f5` and `f6`: address then type octet (Core Vol 3 Part H §2.2.7).
    pub fn to_f5(self) -> [u8; 7] {
        let [a0, a1, a2, a3, a4, a5] = self.address;
        [a0, a1, a2, a3, a4, a5, self.addr_type & 1]
    }
}

/// The two addresses of the link as used on the air while pairing (the initiating and responding
/// addresses of Core Vol 3 Part H §2.2.3 and §2.2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkAddresses {
    /// Our address on this link.
    pub local: SmpAddress,
    /// The peer's address on this link.
    pub peer: SmpAddress,
}

/// The identity keys we distribute in phase 3 (Core Vol 3 Part H §3.6.4-§3.6.6). Zeroized on drop.
#[derive(Clone, Default)]
pub struct LocalIdentity {
    /// Our Identity Resolving Key.
    pub irk: [u8; 16],
    /// Our identity address.
    pub address: SmpAddress,
    /// Our Connection Signature Resolving Key; a random one is made if asked for and absent.
    pub csrk: Option<[u8; 16]>,
}

impl core::fmt::Debug for LocalIdentity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LocalIdentity").field("address", &self.address).finish_non_exhaustive()
    }
}

impl Drop for LocalIdentity {
    fn drop(&mut self) {
        self.irk.zeroize();
        if let Some(c) = self.csrk.as_mut() {
            c.zeroize();
        }
    }
}

/// The pairing method chosen from both features (Core Vol 3 Part H §2.3.5.1, Tables 2.6-2.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairingMethod {
    /// Just Works: no user interaction, unauthenticated.
    JustWorks,
    /// Numeric Comparison (LE Secure Connections only).
    NumericComparison,
    /// Passkey Entry; the side that does not input displays the passkey.
    PasskeyEntry {
        /// The initiator (central) types the passkey.
        initiator_inputs: bool,
        /// The responder (peripheral) types the passkey.
        responder_inputs: bool,
    },
    /// Out of band.
    OutOfBand,
}

/// An LE legacy LTK with its EDIV and Rand (Core Vol 3 Part H §3.6.2, §3.6.3). Zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct LegacyLtk {
    /// Long Term Key, little-endian, masked to the negotiated key size.
    pub ltk: [u8; 16],
    /// Encrypted Diversifier.
    pub ediv: u16,
    /// 64-bit Rand.
    pub rand: [u8; 8],
}

impl core::fmt::Debug for LegacyLtk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LegacyLtk").field("ediv", &self.ediv).finish_non_exhaustive()
    }
}

impl Drop for LegacyLtk {
    fn drop(&mut self) {
        self.ltk.zeroize();
    }
}

/// The outcome of a successful pairing: its properties and every key exchanged (Core Vol 3 Part H
/// §2.4). Zeroized on drop.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PairingResult {
    /// LE Secure Connections was used.
    pub secure_connections: bool,
    /// The method gave MITM protection (not Just Works).
    pub authenticated: bool,
    /// Negotiated encryption key size in octets.
    pub key_size: u8,
    /// Both sides asked for bonding.
    pub bonded: bool,
    /// The LE Secure Connections LTK (EDIV and Rand are zero), shared by both sides.
    pub ltk: Option<[u8; 16]>,
    /// Legacy: the LTK the peer distributed (used when we are central on a later link).
    pub peer_ltk: Option<LegacyLtk>,
    /// Legacy: the LTK we distributed (used when we are peripheral on a later link).
    pub local_ltk: Option<LegacyLtk>,
    /// The peer's Identity Resolving Key.
    pub peer_irk: Option<[u8; 16]>,
    /// The peer's identity address.
    pub peer_identity: Option<SmpAddress>,
    /// The peer's Connection Signature Resolving Key.
    pub peer_csrk: Option<[u8; 16]>,
    /// Whether we distributed our IRK and identity address.
    pub local_irk_sent: bool,
    /// The CSRK we distributed.
    pub local_csrk: Option<[u8; 16]>,
}

impl core::fmt::Debug for PairingResult {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PairingResult")
            .field("secure_connections", &self.secure_connections)
            .field("authenticated", &self.authenticated)
            .field("key_size", &self.key_size)
            .field("bonded", &self.bonded)
            .field("peer_identity", &self.peer_identity)
            .finish_non_exhaustive()
    }
}

impl Drop for PairingResult {
    fn drop(&mut self) {
        for k in [self.ltk.as_mut(), self.peer_irk.as_mut(), self.peer_csrk.as_mut(), self.local_csrk.as_mut()]
            .into_iter()
            .flatten()
        {
            k.zeroize();
        }
    }
}

/// LE Secure Connections out-of-band data of one device: random `r` and confirm `C = f4(PKx, PKx,
/// r, 0)` (Core Vol 3 Part H §2.3.5.6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OobData {
    /// The random value r, little-endian.
    pub random: [u8; 16],
    /// The confirm value C, little-endian.
    pub confirm: [u8; 16],
}

/// What the Security Manager tells its user (Core Vol 3 Part H §2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmpEvent {
    /// Peripheral: a Pairing Request arrived; with [`SmpConfig::approve_pairing`] it waits for
    /// [`Smp::accept_pairing`], otherwise it is being answered (§3.5.1).
    PairingRequest {
        /// The initiator's features.
        params: PairingParams,
    },
    /// Central: the peripheral asks for security; call [`Smp::start`] or encrypt with a stored key (§3.6.7).
    SecurityRequest {
        /// The peripheral's AuthReq.
        auth_req: AuthReq,
    },
    /// Numeric Comparison: show this six-digit value and call [`Smp::confirm_numeric`] (§2.3.5.6.2).
    NumericComparison(u32),
    /// Passkey Entry: show this passkey (0-999999) to the user (§2.3.5.3, §2.3.5.6.3).
    DisplayPasskey(u32),
    /// Passkey Entry: ask the user for the passkey and call [`Smp::enter_passkey`] (§2.3.5.3).
    PasskeyRequest,
    /// Central: start encryption with this key now (LE Enable Encryption) (§2.4.4).
    StartEncryption {
        /// STK (legacy) or LTK (Secure Connections), little-endian, masked to `key_size`.
        ltk: [u8; 16],
        /// Rand: zero for STK and Secure Connections.
        rand: [u8; 8],
        /// EDIV: zero for STK and Secure Connections.
        ediv: u16,
        /// Negotiated key size in octets.
        key_size: u8,
    },
    /// The peer reported a key press during Passkey Entry (§3.5.8).
    KeypressNotification(KeypressType),
    /// Pairing finished successfully (§2.4).
    Complete(PairingResult),
    /// Pairing failed; `remote` when the peer sent Pairing Failed (§3.5.5).
    Failed {
        /// The Pairing Failed reason.
        reason: Reason,
        /// The peer reported the failure.
        remote: bool,
    },
    /// No SMP command for 30 s: pairing failed, no more SMP on this link (§3.4).
    Timeout,
}

/// Why a local command was refused (Core Vol 3 Part H §3.4, §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SmpError {
    /// A pairing procedure is already running.
    #[error("pairing already in progress")]
    Busy,
    /// The SMP timeout expired on this link; no more SMP until a new link (§3.4).
    #[error("SMP timed out on this link")]
    TimedOut,
    /// The command does not fit the current state of pairing.
    #[error("not expected in this pairing state")]
    NotExpected,
}

/// Where the procedure stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Idle,
    /// Peripheral sent a Security Request and waits for a Pairing Request.
    SecurityRequested,
    /// Peripheral waits for its user to approve the Pairing Request.
    WaitApproval,
    /// Central sent a Pairing Request.
    WaitResponse,
    /// Central waits for the user's passkey before its first confirm.
    WaitPasskey,
    WaitPublicKey,
    WaitConfirm,
    WaitRandom,
    /// Central waits for the user's numeric comparison answer.
    WaitNumeric,
    WaitDhKeyCheck,
    WaitEncryption,
    Distribution,
}

/// Phase 3 progress of the keys the peer distributes (§3.6.1 order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    EncryptionInformation,
    CentralIdentification,
    IdentityInformation,
    IdentityAddressInformation,
    SigningInformation,
    Nothing,
}

/// Per-attempt secrets and progress; zeroized on drop.
struct Ctx {
    sc: bool,
    method: PairingMethod,
    key_size: u8,
    req: PairingParams,
    rsp: PairingParams,
    preq: [u8; 7],
    pres: [u8; 7],
    init_keys: KeyDistribution,
    resp_keys: KeyDistribution,
    tk: Option<[u8; 16]>,
    local_nonce: [u8; 16],
    peer_nonce: [u8; 16],
    peer_confirm: Option<[u8; 16]>,
    keypair: Option<KeyPair>,
    peer_pk: [u8; 64],
    dhkey: Option<Zeroizing<[u8; 32]>>,
    mackey: [u8; 16],
    ltk: Option<[u8; 16]>,
    passkey: Option<u32>,
    /// We asked our user for the passkey.
    passkey_requested: bool,
    /// The passkey we display if we are the displaying side.
    gen_passkey: u32,
    round: u8,
    user_confirmed: bool,
    peer_check: Option<[u8; 16]>,
    expect: Expect,
    /// Key PDUs that overtook our Encryption Change, handled once it arrives.
    early_keys: Vec<SmpPdu>,
    pending_ltk: [u8; 16],
    pending_irk: [u8; 16],
    /// Random material for the keys we distribute: LTK, EDIV || Rand, CSRK.
    gen_ltk: [u8; 16],
    gen_ediv_rand: [u8; 16],
    gen_csrk: [u8; 16],
    result: PairingResult,
}

impl Drop for Ctx {
    fn drop(&mut self) {
        for k in [self.tk.as_mut(), self.peer_confirm.as_mut(), self.ltk.as_mut(), self.peer_check.as_mut()]
            .into_iter()
            .flatten()
        {
            k.zeroize();
        }
        self.local_nonce.zeroize();
        self.peer_nonce.zeroize();
        self.mackey.zeroize();
        self.pending_ltk.zeroize();
        self.pending_irk.zeroize();
        self.gen_ltk.zeroize();
        self.gen_ediv_rand.zeroize();
        self.gen_csrk.zeroize();
        self.gen_passkey.zeroize();
        self.passkey.zeroize();
        for pdu in self.early_keys.iter_mut() {
            match pdu {
                SmpPdu::EncryptionInformation(k) | SmpPdu::IdentityInformation(k) | SmpPdu::SigningInformation(k) => {
                    k.zeroize()
                }
                _ => {}
            }
        }
    }
}

/// Outcome of one handler: carry on or fail with a reason.
type Flow = Result<(), Reason>;

/// The Security Manager of one link, either role (Core Vol 3 Part H §2.3, §3).
pub struct Smp {
    role: LinkRole,
    config: SmpConfig,
    addresses: LinkAddresses,
    identity: LocalIdentity,
    step: Step,
    ctx: Option<Box<Ctx>>,
    tx: VecDeque<Vec<u8>>,
    events: VecDeque<SmpEvent>,
    deadline: Option<u64>,
    timed_out: bool,
    retry_interval: u64,
    blocked_until: Option<u64>,
    keypair: Option<KeyPair>,
    local_oob: Option<[u8; 16]>,
    peer_oob: Option<OobData>,
    legacy_oob_tk: Option<[u8; 16]>,
}

impl core::fmt::Debug for Smp {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Smp")
            .field("role", &self.role)
            .field("step", &self.step)
            .field("timed_out", &self.timed_out)
            .finish_non_exhaustive()
    }
}

fn random16(rng: &mut dyn SecureRandom) -> [u8; 16] {
    let mut r = [0u8; 16];
    rng.fill_bytes(&mut r);
    r
}

/// A uniformly drawn six-digit passkey (Core Vol 3 Part H §2.3.5.3).
fn random_passkey(rng: &mut dyn SecureRandom) -> u32 {
    loop {
        let mut b = [0u8; 4];
        rng.fill_bytes(&mut b);
        let v = u32::from_le_bytes(b) & 0x000F_FFFF;
        if v < 1_000_000 {
            return v;
        }
    }
}

/// The passkey as a 128-bit little-endian value: the legacy TK and the Secure Connections `r` of
/// `f6` (Core Vol 3 Part H §2.3.5.3, §2.3.5.6.5).
fn passkey_block(passkey: u32) -> [u8; 16] {
    let mut tk = [0u8; 16];
    tk[..4].copy_from_slice(&passkey.to_le_bytes());
    tk
}

/// Zeroes the octets above `key_size` (the most significant ones) (Core Vol 3 Part H §2.3.4).
fn mask_key(mut key: [u8; 16], key_size: u8) -> [u8; 16] {
    for b in key.iter_mut().skip(usize::from(key_size)) {
        *b = 0;
    }
    key
}

fn x_of(pk: &[u8; 64]) -> [u8; 32] {
    let mut x = [0u8; 32];
    x.copy_from_slice(&pk[..32]);
    x
}

/// Pairing method from both devices' features (Core Vol 3 Part H §2.3.5.1, Tables 2.6, 2.7, 2.8).
pub fn select_method(secure_connections: bool, req: &PairingParams, rsp: &PairingParams) -> PairingMethod {
    use IoCapability::*;
    use PairingMethod::*;
    let oob = if secure_connections {
        req.oob_data_present || rsp.oob_data_present
    } else {
        req.oob_data_present && rsp.oob_data_present
    };
    if oob {
        return OutOfBand;
    }
    if !req.auth_req.mitm() && !rsp.auth_req.mitm() {
        return JustWorks;
    }
    let pk = |initiator_inputs, responder_inputs| PasskeyEntry { initiator_inputs, responder_inputs };
    let nc_or = |legacy| if secure_connections { NumericComparison } else { legacy };
    match (req.io_capability, rsp.io_capability) {
        (NoInputNoOutput, _) | (_, NoInputNoOutput) => JustWorks,
        (DisplayOnly, DisplayOnly) | (DisplayOnly, DisplayYesNo) | (DisplayYesNo, DisplayOnly) => JustWorks,
        (DisplayYesNo, DisplayYesNo) => nc_or(JustWorks),
        (DisplayOnly, KeyboardOnly) | (DisplayYesNo, KeyboardOnly) | (DisplayOnly, KeyboardDisplay) => pk(false, true),
        (DisplayYesNo, KeyboardDisplay) => nc_or(pk(false, true)),
        (KeyboardOnly, DisplayOnly) | (KeyboardOnly, DisplayYesNo) | (KeyboardOnly, KeyboardDisplay) => pk(true, false),
        (KeyboardOnly, KeyboardOnly) => pk(true, true),
        (KeyboardDisplay, DisplayOnly) => pk(true, false),
        (KeyboardDisplay, DisplayYesNo) => nc_or(pk(true, false)),
        (KeyboardDisplay, KeyboardOnly) => pk(false, true),
        (KeyboardDisplay, KeyboardDisplay) => nc_or(pk(false, true)),
    }
}

impl Smp {
    /// A Security Manager for one link in `role` (Core Vol 3 Part H §2.3).
    pub fn new(role: LinkRole, config: SmpConfig, addresses: LinkAddresses, identity: LocalIdentity) -> Self {
        let retry_interval = config.retry_interval_us;
        Self {
            role,
            config,
            addresses,
            identity,
            step: Step::Idle,
            ctx: None,
            tx: VecDeque::new(),
            events: VecDeque::new(),
            deadline: None,
            timed_out: false,
            retry_interval,
            blocked_until: None,
            keypair: None,
            local_oob: None,
            peer_oob: None,
            legacy_oob_tk: None,
        }
    }

    /// Our role on the link (Core Vol 3 Part H §2.3).
    pub fn role(&self) -> LinkRole {
        self.role
    }

    /// The method of the pairing in progress, once the features are exchanged (Core Vol 3 Part H
    /// §2.3.5.1).
    pub fn pairing_method(&self) -> Option<PairingMethod> {
        match self.step {
            Step::Idle | Step::SecurityRequested | Step::WaitResponse => None,
            _ => self.ctx.as_ref().map(|c| c.method),
        }
    }

    /// Whether a pairing procedure is running (Core Vol 3 Part H §2.3).
    pub fn is_pairing(&self) -> bool {
        !matches!(self.step, Step::Idle)
    }

    /// Whether the SMP timeout expired: no more SMP on this link (Core Vol 3 Part H §3.4).
    pub fn is_timed_out(&self) -> bool {
        self.timed_out
    }

    /// Asks for (or stops asking for) MITM protection in the following pairings, e.g. when a
    /// server asked for an authenticated key (Core Vol 3 Part H §3.5.1).
    pub fn set_mitm(&mut self, mitm: bool) {
        self.config.mitm = mitm;
    }

    /// Uses `keypair` for the following Secure Connections pairings instead of a fresh one per
    /// pairing (Core Vol 3 Part H §2.3.5.6.1); forgets local OOB data made with another key.
    pub fn set_key_pair(&mut self, keypair: KeyPair) {
        self.keypair = Some(keypair);
        self.local_oob = None;
    }

    /// Makes this device's LE Secure Connections OOB data `r` and `C` (Core Vol 3 Part H
    /// §2.3.5.6.4); the key pair made here is the one used by the next pairing.
    pub fn generate_local_oob(&mut self, rng: &mut dyn SecureRandom) -> OobData {
        let keypair = KeyPair::generate(rng);
        let random = random16(rng);
        let x = keypair.public_x();
        let confirm = crypto::f4(&x, &x, &random, 0);
        self.keypair = Some(keypair);
        self.local_oob = Some(random);
        OobData { random, confirm }
    }

    /// Sets (or clears) the peer's LE Secure Connections OOB data received out of band; it sets
    /// our OOB data flag (Core Vol 3 Part H §2.3.5.6.4).
    pub fn set_peer_oob(&mut self, data: Option<OobData>) {
        self.peer_oob = data;
    }

    /// Sets (or clears) the LE legacy OOB Temporary Key, little-endian; it sets our OOB data flag
    /// (Core Vol 3 Part H §2.3.5.4).
    pub fn set_legacy_oob_tk(&mut self, tk: Option<[u8; 16]>) {
        self.legacy_oob_tk = tk;
    }

    /// Central: sends a Pairing Request; peripheral: sends a Security Request (Core Vol 3 Part H
    /// §3.5.1, §3.6.7).
    pub fn start(&mut self, now: u64, rng: &mut dyn SecureRandom) -> Result<(), SmpError> {
        if self.timed_out {
            return Err(SmpError::TimedOut);
        }
        if self.step != Step::Idle {
            return Err(SmpError::Busy);
        }
        match self.role {
            LinkRole::Central => {
                let req = self.local_params(None);
                let ctx = self.new_ctx(req, req, rng);
                self.ctx = Some(ctx);
                self.send(SmpPdu::PairingRequest(req), now);
                self.step = Step::WaitResponse;
            }
            LinkRole::Peripheral => {
                self.send(SmpPdu::SecurityRequest(self.local_auth_req()), now);
                self.step = Step::SecurityRequested;
            }
        }
        Ok(())
    }

    /// Handles one received SMP PDU (code octet first) at `now`: bad or unexpected PDUs are
    /// answered with Pairing Failed and the spec's reason (Core Vol 3 Part H §3.3, §3.5.5).
    pub fn receive(&mut self, pdu: &[u8], now: u64, rng: &mut dyn SecureRandom) {
        if self.timed_out {
            return;
        }
        let pdu = match SmpPdu::decode(pdu) {
            Ok(pdu) => pdu,
            Err(e) => return self.fail(e.reason(), now),
        };
        if self.step != Step::Idle {
            self.touch(now);
        }
        let flow = self.dispatch(pdu, now, rng);
        if let Err(reason) = flow {
            self.fail(reason, now);
        }
    }

    /// The user's answer to [`SmpEvent::NumericComparison`]; `false` fails with Numeric
    /// Comparison Failed (Core Vol 3 Part H §2.3.5.6.2).
    pub fn confirm_numeric(&mut self, accept: bool, now: u64) {
        let shown = matches!(
            (self.role, self.step),
            (LinkRole::Central, Step::WaitNumeric) | (LinkRole::Peripheral, Step::WaitDhKeyCheck)
        );
        let Some(ctx) = self.ctx.as_mut() else { return };
        // Only an answer to a NumericComparison event already given counts.
        if !shown || ctx.method != PairingMethod::NumericComparison || ctx.user_confirmed {
            return;
        }
        if !accept {
            return self.fail(Reason::NumericComparisonFailed, now);
        }
        ctx.user_confirmed = true;
        let buffered = ctx.peer_check.take();
        let flow = match (self.role, self.step) {
            (LinkRole::Central, Step::WaitNumeric) => {
                self.send_dhkey_check(now);
                Ok(())
            }
            (LinkRole::Peripheral, Step::WaitDhKeyCheck) => match buffered {
                Some(ea) => self.check_peer_dhkey(ea, now),
                None => Ok(()),
            },
            _ => Ok(()),
        };
        if let Err(r) = flow {
            self.fail(r, now);
        }
    }

    /// The user's answer to [`SmpEvent::PasskeyRequest`]: the passkey 0-999999, or `None` to
    /// cancel (Passkey Entry Failed) (Core Vol 3 Part H §2.3.5.3, §2.3.5.6.3).
    pub fn enter_passkey(&mut self, passkey: Option<u32>, now: u64) {
        let pairing = self.is_pairing();
        let Some(ctx) = self.ctx.as_mut() else { return };
        // Only an answer to our PasskeyRequest counts.
        if !ctx.passkey_requested || ctx.passkey.is_some() || !pairing {
            return;
        }
        let Some(passkey) = passkey.filter(|p| *p < 1_000_000) else {
            return self.fail(Reason::PasskeyEntryFailed, now);
        };
        ctx.passkey = Some(passkey);
        if !ctx.sc {
            ctx.tk = Some(passkey_block(passkey));
        }
        let flow = self.passkey_known(now);
        if let Err(r) = flow {
            self.fail(r, now);
        }
    }

    /// Peripheral with [`SmpConfig::approve_pairing`]: the user's answer to
    /// [`SmpEvent::PairingRequest`]; `false` refuses with Pairing Not Supported (Core Vol 3 Part H
    /// §3.5.2, §3.5.5).
    pub fn accept_pairing(&mut self, accept: bool, now: u64) {
        if self.step != Step::WaitApproval {
            return;
        }
        let flow = if accept { self.send_pairing_response(now) } else { Err(Reason::PairingNotSupported) };
        if let Err(r) = flow {
            self.fail(r, now);
        }
    }

    /// Sends a Keypress Notification while we type the passkey, if both sides asked for them
    /// (Core Vol 3 Part H §3.5.8).
    pub fn send_keypress(&mut self, kind: KeypressType, now: u64) -> Result<(), SmpError> {
        let ctx = self.ctx.as_ref().ok_or(SmpError::NotExpected)?;
        let keypress = ctx.req.auth_req.keypress() && ctx.rsp.auth_req.keypress();
        if !keypress || !ctx.passkey_requested || ctx.passkey.is_some() {
            return Err(SmpError::NotExpected);
        }
        self.send(SmpPdu::KeypressNotification(kind), now);
        Ok(())
    }

    /// Reports an Encryption Change on the link: phase 3 key distribution starts once the link is
    /// encrypted with the key being paired (Core Vol 3 Part H §2.4.4, §3.6.1). `key_size` 0 means
    /// unknown; another size than the negotiated one fails with Encryption Key Size.
    pub fn encryption_changed(&mut self, encrypted: bool, key_size: u8, now: u64) {
        if self.step == Step::SecurityRequested {
            // The central answered our Security Request by encrypting with a key it already
            // has from a bond (Core Vol 3 Part H §2.4.6): nothing left to pair.
            if encrypted {
                self.step = Step::Idle;
                self.deadline = None;
                self.ctx = None;
            }
            return;
        }
        if self.step != Step::WaitEncryption {
            return;
        }
        let Some(ctx) = self.ctx.as_mut() else { return };
        if !encrypted {
            return self.fail(Reason::UnspecifiedReason, now);
        }
        if key_size != 0 && key_size != ctx.key_size {
            return self.fail(Reason::EncryptionKeySize, now);
        }
        ctx.result.ltk = if ctx.sc { ctx.ltk } else { None };
        let early = core::mem::take(&mut ctx.early_keys);
        self.step = Step::Distribution;
        self.touch(now);
        if self.role == LinkRole::Peripheral {
            self.distribute_local(now);
        }
        self.expect_next();
        for pdu in early {
            if self.step != Step::Distribution {
                break;
            }
            if let Err(r) = self.on_key(pdu, now) {
                return self.fail(r, now);
            }
        }
        self.maybe_finish(now);
    }

    /// Peripheral: the key to answer the controller's LTK Request with while this pairing waits
    /// for encryption: the STK (legacy) or LTK (Secure Connections), for EDIV 0 and Rand 0
    /// (Core Vol 3 Part H §2.4.4; Core Vol 4 Part E §7.7.65.5).
    pub fn ltk_request(&self, rand: [u8; 8], ediv: u16) -> Option<[u8; 16]> {
        if self.role != LinkRole::Peripheral || self.step != Step::WaitEncryption || rand != [0; 8] || ediv != 0 {
            return None;
        }
        self.ctx.as_ref().and_then(|c| c.ltk)
    }

    /// The next PDU to send on the SMP channel (Core Vol 3 Part H §3.3).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.tx.pop_front()
    }

    /// The next event for the user (Core Vol 3 Part H §2.3).
    pub fn poll_event(&mut self) -> Option<SmpEvent> {
        self.events.pop_front()
    }

    /// When [`Smp::handle_timeout`] must be called next, in µs (Core Vol 3 Part H §3.4).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.deadline
    }

    /// Handles time passing: after 30 s without an SMP command the procedure fails and SMP is
    /// closed on this link (Core Vol 3 Part H §3.4).
    pub fn handle_timeout(&mut self, now: u64) {
        let Some(deadline) = self.deadline else { return };
        if now < deadline {
            return;
        }
        self.deadline = None;
        self.timed_out = true;
        self.step = Step::Idle;
        self.ctx = None;
        self.tx.clear();
        self.events.push_back(SmpEvent::Timeout);
    }

    // ---- internals ----

    fn local_auth_req(&self) -> AuthReq {
        let c = &self.config;
        AuthReq::new(c.bonding, c.mitm, c.secure_connections, c.keypress, false)
    }

    fn oob_flag(&self) -> bool {
        (self.config.secure_connections && self.peer_oob.is_some()) || self.legacy_oob_tk.is_some()
    }

    /// Our Pairing Request, or our Pairing Response to `req` (Core Vol 3 Part H §3.5.1, §3.5.2).
    fn local_params(&self, req: Option<&PairingParams>) -> PairingParams {
        let c = &self.config;
        let le = |k: KeyDistribution| KeyDistribution(k.0 & KeyDistribution::ALL_LE.0);
        let (initiator_keys, responder_keys) = match (self.role, req) {
            (LinkRole::Central, _) | (_, None) => (le(c.local_keys), le(c.peer_keys)),
            (LinkRole::Peripheral, Some(r)) => {
                (le(r.initiator_keys.intersect(c.peer_keys)), le(r.responder_keys.intersect(c.local_keys)))
            }
        };
        PairingParams {
            io_capability: c.io_capability,
            oob_data_present: self.oob_flag(),
            auth_req: self.local_auth_req(),
            max_key_size: c.max_key_size.clamp(7, 16),
            initiator_keys,
            responder_keys,
        }
    }

    fn new_ctx(&self, req: PairingParams, rsp: PairingParams, rng: &mut dyn SecureRandom) -> Box<Ctx> {
        Box::new(Ctx {
            sc: false,
            method: PairingMethod::JustWorks,
            key_size: 16,
            req,
            rsp,
            preq: [0; 7],
            pres: [0; 7],
            init_keys: KeyDistribution::NONE,
            resp_keys: KeyDistribution::NONE,
            tk: None,
            local_nonce: random16(rng),
            peer_nonce: [0; 16],
            peer_confirm: None,
            keypair: None,
            peer_pk: [0; 64],
            dhkey: None,
            mackey: [0; 16],
            ltk: None,
            passkey: None,
            passkey_requested: false,
            gen_passkey: match self.config.static_passkey {
                Some(p) if p <= 999_999 => p,
                _ => random_passkey(rng),
            },
            round: 0,
            user_confirmed: false,
            peer_check: None,
            expect: Expect::Nothing,
            early_keys: Vec::new(),
            pending_ltk: [0; 16],
            pending_irk: [0; 16],
            gen_ltk: random16(rng),
            gen_ediv_rand: random16(rng),
            gen_csrk: random16(rng),
            result: PairingResult::default(),
        })
    }

    fn send(&mut self, pdu: SmpPdu, now: u64) {
        self.tx.push_back(pdu.to_vec());
        self.touch(now);
    }

    fn touch(&mut self, now: u64) {
        self.deadline = Some(now.saturating_add(SMP_TIMEOUT_US));
    }

    /// Ends the procedure with Pairing Failed `reason` sent to the peer (Core Vol 3 Part H §3.5.5)
    /// and starts the repeated-attempts waiting interval (§2.3.6).
    fn fail(&mut self, reason: Reason, now: u64) {
        self.tx.push_back(SmpPdu::PairingFailed(reason).to_vec());
        if self.step != Step::Idle || self.ctx.is_some() {
            self.events.push_back(SmpEvent::Failed { reason, remote: false });
        }
        self.abort(now);
    }

    fn abort(&mut self, now: u64) {
        if self.ctx.is_some() {
            self.blocked_until = Some(now.saturating_add(self.retry_interval));
            self.retry_interval = self.retry_interval.saturating_mul(2).min(MAX_RETRY_INTERVAL_US);
        }
        self.step = Step::Idle;
        self.ctx = None;
        self.deadline = None;
    }

    fn ctx(&mut self) -> Result<&mut Ctx, Reason> {
        self.ctx.as_deref_mut().ok_or(Reason::UnspecifiedReason)
    }

    fn dispatch(&mut self, pdu: SmpPdu, now: u64, rng: &mut dyn SecureRandom) -> Flow {
        use SmpPdu::*;
        match (pdu, self.role, self.step) {
            (PairingFailed(reason), _, step) => {
                if step != Step::Idle {
                    self.events.push_back(SmpEvent::Failed { reason, remote: true });
                    self.abort(now);
                }
                Ok(())
            }
            (PairingRequest(_), LinkRole::Central, _) | (SecurityRequest(_), LinkRole::Peripheral, _) => {
                if self.step == Step::Idle {
                    self.tx.push_back(SmpPdu::PairingFailed(Reason::CommandNotSupported).to_vec());
                    Ok(())
                } else {
                    Err(Reason::CommandNotSupported)
                }
            }
            (SecurityRequest(auth_req), LinkRole::Central, step) => {
                if step == Step::Idle {
                    if self.blocked(now) {
                        self.tx.push_back(SmpPdu::PairingFailed(Reason::RepeatedAttempts).to_vec());
                    } else {
                        self.events.push_back(SmpEvent::SecurityRequest { auth_req });
                    }
                }
                // A Security Request during pairing is ignored (§3.6.7).
                Ok(())
            }
            (PairingRequest(req), LinkRole::Peripheral, Step::Idle | Step::SecurityRequested) => {
                if self.blocked(now) {
                    self.tx.push_back(SmpPdu::PairingFailed(Reason::RepeatedAttempts).to_vec());
                    self.events.push_back(SmpEvent::Failed { reason: Reason::RepeatedAttempts, remote: false });
                    self.step = Step::Idle;
                    self.deadline = None;
                    return Ok(());
                }
                self.on_pairing_request(req, now, rng)
            }
            (PairingResponse(rsp), LinkRole::Central, Step::WaitResponse) => self.on_pairing_response(rsp, now, rng),
            (PairingPublicKey(pk), _, Step::WaitPublicKey) => self.on_public_key(pk, now, rng),
            (PairingConfirm(c), _, Step::WaitConfirm) => self.on_confirm(c, now),
            (PairingRandom(r), _, Step::WaitRandom) => self.on_random(r, now, rng),
            (PairingDhKeyCheck(e), _, Step::WaitDhKeyCheck) => self.on_dhkey_check(e, now),
            (KeypressNotification(kind), _, step) if step != Step::Idle => {
                let peer_inputs = match (self.role, self.ctx.as_ref().map(|c| c.method)) {
                    (LinkRole::Central, Some(PairingMethod::PasskeyEntry { responder_inputs, .. })) => responder_inputs,
                    (LinkRole::Peripheral, Some(PairingMethod::PasskeyEntry { initiator_inputs, .. })) => {
                        initiator_inputs
                    }
                    _ => false,
                };
                if !peer_inputs {
                    return Err(Reason::UnspecifiedReason);
                }
                self.events.push_back(SmpEvent::KeypressNotification(kind));
                Ok(())
            }
            (
                pdu @ (EncryptionInformation(_)
                | CentralIdentification { .. }
                | IdentityInformation(_)
                | IdentityAddressInformation { .. }
                | SigningInformation(_)),
                _,
                step @ (Step::Distribution | Step::WaitEncryption),
            ) => {
                if step == Step::Distribution {
                    return self.on_key(pdu, now);
                }
                // The peer's keys may overtake our Encryption Change event: keep (at most five)
                // until the link is encrypted.
                let ctx = self.ctx()?;
                if ctx.early_keys.len() >= 5 {
                    return Err(Reason::UnspecifiedReason);
                }
                ctx.early_keys.push(pdu);
                Ok(())
            }
            _ => Err(Reason::UnspecifiedReason),
        }
    }

    fn blocked(&self, now: u64) -> bool {
        self.blocked_until.is_some_and(|t| now < t)
    }

    /// Checks the peer's features and fixes the method and key size (Core Vol 3 Part H §2.3.1,
    /// §2.3.4, §2.3.5.1).
    fn negotiate(&mut self, req: PairingParams, rsp: PairingParams) -> Flow {
        let peer = match self.role {
            LinkRole::Central => rsp,
            LinkRole::Peripheral => req,
        };
        if !(7..=16).contains(&peer.max_key_size) {
            return Err(Reason::InvalidParameters);
        }
        let sc = req.auth_req.secure_connections() && rsp.auth_req.secure_connections();
        if self.config.sc_only && !sc {
            return Err(Reason::AuthenticationRequirements);
        }
        let key_size = req.max_key_size.min(rsp.max_key_size);
        if key_size < self.config.min_key_size.max(7) {
            return Err(Reason::EncryptionKeySize);
        }
        let method = select_method(sc, &req, &rsp);
        if self.config.mitm && method == PairingMethod::JustWorks {
            return Err(Reason::AuthenticationRequirements);
        }
        if method == PairingMethod::OutOfBand {
            let peer_has_ours = peer.oob_data_present;
            if (!sc && self.legacy_oob_tk.is_none()) || (sc && peer_has_ours && self.local_oob.is_none()) {
                return Err(Reason::OobNotAvailable);
            }
        }
        let legacy_tk = self.legacy_oob_tk;
        let ctx = self.ctx()?;
        ctx.sc = sc;
        ctx.method = method;
        ctx.key_size = key_size;
        ctx.req = req;
        ctx.rsp = rsp;
        ctx.preq = req.encode_into(super::pdu::code::PAIRING_REQUEST);
        ctx.pres = rsp.encode_into(super::pdu::code::PAIRING_RESPONSE);
        ctx.init_keys = KeyDistribution(req.initiator_keys.0 & rsp.initiator_keys.0 & KeyDistribution::ALL_LE.0);
        ctx.resp_keys = KeyDistribution(req.responder_keys.0 & rsp.responder_keys.0 & KeyDistribution::ALL_LE.0);
        ctx.result.secure_connections = sc;
        ctx.result.authenticated = method != PairingMethod::JustWorks;
        ctx.result.key_size = key_size;
        ctx.result.bonded = req.auth_req.bonding() && rsp.auth_req.bonding();
        if !sc {
            ctx.tk = match method {
                PairingMethod::JustWorks => Some([0; 16]),
                PairingMethod::OutOfBand => legacy_tk,
                _ => None,
            };
        }
        Ok(())
    }

    fn on_pairing_request(&mut self, req: PairingParams, now: u64, rng: &mut dyn SecureRandom) -> Flow {
        self.events.push_back(SmpEvent::PairingRequest { params: req });
        let rsp = self.local_params(Some(&req));
        self.ctx = Some(self.new_ctx(req, rsp, rng));
        self.touch(now);
        self.negotiate(req, rsp)?;
        if self.config.approve_pairing {
            self.step = Step::WaitApproval;
            return Ok(());
        }
        self.send_pairing_response(now)
    }

    /// Peripheral: answers the Pairing Request and moves on to phase 2 (Core Vol 3 Part H §3.5.2).
    fn send_pairing_response(&mut self, now: u64) -> Flow {
        let rsp = self.ctx()?.rsp;
        self.send(SmpPdu::PairingResponse(rsp), now);
        if self.ctx()?.sc {
            self.step = Step::WaitPublicKey;
        } else {
            self.step = Step::WaitConfirm;
            self.passkey_prompt();
        }
        Ok(())
    }

    fn on_pairing_response(&mut self, rsp: PairingParams, now: u64, rng: &mut dyn SecureRandom) -> Flow {
        let req = self.ctx()?.req;
        // The responder may only turn key distribution bits off (§3.5.2).
        if rsp.initiator_keys.0 & !req.initiator_keys.0 != 0 || rsp.responder_keys.0 & !req.responder_keys.0 != 0 {
            return Err(Reason::InvalidParameters);
        }
        self.negotiate(req, rsp)?;
        if self.ctx()?.sc {
            let keypair = match self.keypair.as_ref() {
                Some(kp) => kp.clone(),
                None => KeyPair::generate(rng),
            };
            let pk = *keypair.public_key();
            self.ctx()?.keypair = Some(keypair);
            self.send(SmpPdu::PairingPublicKey(pk), now);
            self.step = Step::WaitPublicKey;
        } else {
            self.passkey_prompt();
            if self.ctx()?.tk.is_some() {
                self.send_legacy_confirm(now)?;
                self.step = Step::WaitConfirm;
            } else {
                self.step = Step::WaitPasskey;
            }
        }
        Ok(())
    }

    /// For Passkey Entry, shows a fresh passkey or asks for one (Core Vol 3 Part H §2.3.5.3).
    fn passkey_prompt(&mut self) {
        let role = self.role;
        let Some(ctx) = self.ctx.as_mut() else { return };
        let PairingMethod::PasskeyEntry { initiator_inputs, responder_inputs } = ctx.method else { return };
        let inputs = match role {
            LinkRole::Central => initiator_inputs,
            LinkRole::Peripheral => responder_inputs,
        };
        if inputs {
            ctx.passkey_requested = true;
            self.events.push_back(SmpEvent::PasskeyRequest);
        } else {
            let passkey = ctx.gen_passkey;
            ctx.passkey = Some(passkey);
            if !ctx.sc {
                ctx.tk = Some(passkey_block(passkey));
            }
            self.events.push_back(SmpEvent::DisplayPasskey(passkey));
        }
    }

    /// The passkey became known: move on if the procedure was waiting for it.
    fn passkey_known(&mut self, now: u64) -> Flow {
        let (role, step) = (self.role, self.step);
        let ctx = self.ctx()?;
        let peer_confirm = ctx.peer_confirm;
        match (role, step, ctx.sc) {
            (LinkRole::Central, Step::WaitPasskey, false) => {
                self.send_legacy_confirm(now)?;
                self.step = Step::WaitConfirm;
            }
            (LinkRole::Central, Step::WaitPasskey, true) => {
                self.send_sc_passkey_confirm(now)?;
                self.step = Step::WaitConfirm;
            }
            (LinkRole::Peripheral, Step::WaitConfirm, _) => {
                if let Some(c) = peer_confirm {
                    self.peripheral_answer_confirm(c, now)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    // ---- LE legacy pairing (§2.3.5.2-§2.3.5.5) ----

    /// `c1` with this link's PDUs and addresses (Core Vol 3 Part H §2.2.3).
    fn legacy_confirm(&self, ctx: &Ctx, tk: &[u8; 16], r: &[u8; 16]) -> [u8; 16] {
        let (ia, ra) = self.initiator_responder();
        crypto::c1(tk, r, &ctx.preq, &ctx.pres, ia.addr_type, &ia.address, ra.addr_type, &ra.address)
    }

    fn initiator_responder(&self) -> (SmpAddress, SmpAddress) {
        match self.role {
            LinkRole::Central => (self.addresses.local, self.addresses.peer),
            LinkRole::Peripheral => (self.addresses.peer, self.addresses.local),
        }
    }

    fn send_legacy_confirm(&mut self, now: u64) -> Flow {
        let ctx = self.ctx.as_deref().ok_or(Reason::UnspecifiedReason)?;
        let tk = ctx.tk.ok_or(Reason::UnspecifiedReason)?;
        let confirm = self.legacy_confirm(ctx, &tk, &ctx.local_nonce);
        self.send(SmpPdu::PairingConfirm(confirm), now);
        Ok(())
    }

    fn on_confirm(&mut self, confirm: [u8; 16], now: u64) -> Flow {
        let role = self.role;
        let ctx = self.ctx()?;
        match role {
            LinkRole::Central => {
                ctx.peer_confirm = Some(confirm);
                let nonce = ctx.local_nonce;
                self.send(SmpPdu::PairingRandom(nonce), now);
                self.step = Step::WaitRandom;
            }
            LinkRole::Peripheral => {
                if ctx.peer_confirm.is_some() {
                    return Err(Reason::UnspecifiedReason);
                }
                ctx.peer_confirm = Some(confirm);
                let ready = if ctx.sc { ctx.passkey.is_some() } else { ctx.tk.is_some() };
                if ready {
                    self.peripheral_answer_confirm(confirm, now)?;
                }
            }
        }
        Ok(())
    }

    /// Peripheral: answers the central's confirm with ours, once the passkey is known.
    fn peripheral_answer_confirm(&mut self, _peer: [u8; 16], now: u64) -> Flow {
        let ctx = self.ctx.as_deref().ok_or(Reason::UnspecifiedReason)?;
        let confirm = if ctx.sc {
            let (pka, pkb) = self.sc_keys_x(ctx)?;
            let r = sc_passkey_bit(ctx)?;
            crypto::f4(&pkb, &pka, &ctx.local_nonce, r)
        } else {
            let tk = ctx.tk.ok_or(Reason::UnspecifiedReason)?;
            self.legacy_confirm(ctx, &tk, &ctx.local_nonce)
        };
        self.send(SmpPdu::PairingConfirm(confirm), now);
        self.step = Step::WaitRandom;
        Ok(())
    }

    fn on_random(&mut self, random: [u8; 16], now: u64, rng: &mut dyn SecureRandom) -> Flow {
        let sc = self.ctx()?.sc;
        if sc {
            return self.on_sc_random(random, now, rng);
        }
        let ctx = self.ctx.as_deref().ok_or(Reason::UnspecifiedReason)?;
        let tk = ctx.tk.ok_or(Reason::UnspecifiedReason)?;
        let expected = self.legacy_confirm(ctx, &tk, &random);
        if !matches_confirm(&expected, ctx.peer_confirm.as_ref()) {
            return Err(Reason::ConfirmValueFailed);
        }
        let (srand, mrand) = match self.role {
            LinkRole::Central => (random, ctx.local_nonce),
            LinkRole::Peripheral => (ctx.local_nonce, random),
        };
        let stk = mask_key(crypto::s1(&tk, &srand, &mrand), ctx.key_size);
        let key_size = ctx.key_size;
        let nonce = ctx.local_nonce;
        let ctx = self.ctx()?;
        ctx.peer_nonce = random;
        ctx.ltk = Some(stk);
        if self.role == LinkRole::Peripheral {
            self.send(SmpPdu::PairingRandom(nonce), now);
        }
        self.await_encryption(stk, key_size);
        Ok(())
    }

    fn await_encryption(&mut self, key: [u8; 16], key_size: u8) {
        self.step = Step::WaitEncryption;
        if self.role == LinkRole::Central {
            self.events.push_back(SmpEvent::StartEncryption { ltk: key, rand: [0; 8], ediv: 0, key_size });
        }
    }

    // ---- LE Secure Connections (§2.3.5.6) ----

    /// `(PKax, PKbx)`: the initiator's and responder's public key X coordinates.
    fn sc_keys_x(&self, ctx: &Ctx) -> Result<([u8; 32], [u8; 32]), Reason> {
        let local = ctx.keypair.as_ref().ok_or(Reason::UnspecifiedReason)?.public_x();
        let peer = x_of(&ctx.peer_pk);
        Ok(match self.role {
            LinkRole::Central => (local, peer),
            LinkRole::Peripheral => (peer, local),
        })
    }

    fn on_public_key(&mut self, pk: [u8; 64], now: u64, rng: &mut dyn SecureRandom) -> Flow {
        let allow_debug = self.config.allow_debug_key;
        if self.role == LinkRole::Peripheral {
            let keypair = match self.keypair.as_ref() {
                Some(kp) => kp.clone(),
                None => KeyPair::generate(rng),
            };
            self.ctx()?.keypair = Some(keypair);
        }
        let ctx = self.ctx()?;
        let keypair = ctx.keypair.as_ref().ok_or(Reason::UnspecifiedReason)?;
        // An invalid public key fails pairing (§2.3.5.6.1, CVE-2018-5383): DHKey Check Failed.
        let dhkey = keypair.dh_key(&pk, allow_debug).map_err(|e| match e {
            KeyError::DebugKey => Reason::AuthenticationRequirements,
            KeyError::NotOnCurve | KeyError::InvalidSecret => Reason::DhKeyCheckFailed,
        })?;
        if pk == *keypair.public_key() {
            // A reflected public key would let the peer pose as us.
            return Err(Reason::DhKeyCheckFailed);
        }
        let own = *keypair.public_key();
        ctx.dhkey = Some(dhkey);
        ctx.peer_pk = pk;
        let method = ctx.method;
        if self.role == LinkRole::Peripheral {
            self.send(SmpPdu::PairingPublicKey(own), now);
        }
        match (self.role, method) {
            (LinkRole::Central, PairingMethod::JustWorks | PairingMethod::NumericComparison) => {
                self.step = Step::WaitConfirm;
            }
            (LinkRole::Peripheral, PairingMethod::JustWorks | PairingMethod::NumericComparison) => {
                let ctx = self.ctx.as_deref().ok_or(Reason::UnspecifiedReason)?;
                let (pka, pkb) = self.sc_keys_x(ctx)?;
                let cb = crypto::f4(&pkb, &pka, &ctx.local_nonce, 0);
                self.send(SmpPdu::PairingConfirm(cb), now);
                self.step = Step::WaitRandom;
            }
            (_, PairingMethod::PasskeyEntry { .. }) => {
                self.passkey_prompt();
                let known = self.ctx()?.passkey.is_some();
                match self.role {
                    LinkRole::Central if known => {
                        self.send_sc_passkey_confirm(now)?;
                        self.step = Step::WaitConfirm;
                    }
                    LinkRole::Central => self.step = Step::WaitPasskey,
                    LinkRole::Peripheral => self.step = Step::WaitConfirm,
                }
            }
            (LinkRole::Central, PairingMethod::OutOfBand) => {
                let nonce = self.ctx()?.local_nonce;
                self.send(SmpPdu::PairingRandom(nonce), now);
                self.step = Step::WaitRandom;
            }
            (LinkRole::Peripheral, PairingMethod::OutOfBand) => self.step = Step::WaitRandom,
        }
        Ok(())
    }

    /// Central, Passkey Entry round `ctx.round`: sends `Cai = f4(PKax, PKbx, Nai, rai)` (§2.3.5.6.3).
    fn send_sc_passkey_confirm(&mut self, now: u64) -> Flow {
        let ctx = self.ctx.as_deref().ok_or(Reason::UnspecifiedReason)?;
        let (pka, pkb) = self.sc_keys_x(ctx)?;
        let r = sc_passkey_bit(ctx)?;
        let ca = crypto::f4(&pka, &pkb, &ctx.local_nonce, r);
        self.send(SmpPdu::PairingConfirm(ca), now);
        Ok(())
    }

    fn on_sc_random(&mut self, random: [u8; 16], now: u64, rng: &mut dyn SecureRandom) -> Flow {
        let role = self.role;
        let peer_oob = self.peer_oob;
        let ctx = self.ctx.as_deref().ok_or(Reason::UnspecifiedReason)?;
        let (pka, pkb) = self.sc_keys_x(ctx)?;
        let (peer_x, local_x) = match role {
            LinkRole::Central => (pkb, pka),
            LinkRole::Peripheral => (pka, pkb),
        };
        // Check the peer's commitment (§2.3.5.6.2-§2.3.5.6.4).
        let expected = match ctx.method {
            PairingMethod::JustWorks | PairingMethod::NumericComparison => match role {
                LinkRole::Central => Some(crypto::f4(&pkb, &pka, &random, 0)),
                LinkRole::Peripheral => None,
            },
            PairingMethod::PasskeyEntry { .. } => Some(crypto::f4(&peer_x, &local_x, &random, sc_passkey_bit(ctx)?)),
            PairingMethod::OutOfBand => match (ctx.local_oob_flag(role), peer_oob) {
                (true, Some(oob)) => {
                    if !ct_eq(&crypto::f4(&peer_x, &peer_x, &oob.random, 0), &oob.confirm) {
                        return Err(Reason::ConfirmValueFailed);
                    }
                    None
                }
                _ => None,
            },
        };
        if let Some(expected) = expected {
            if !matches_confirm(&expected, ctx.peer_confirm.as_ref()) {
                return Err(Reason::ConfirmValueFailed);
            }
        }
        let method = ctx.method;
        let nonce = ctx.local_nonce;
        let ctx = self.ctx()?;
        ctx.peer_nonce = random;
        ctx.peer_confirm = None;
        if role == LinkRole::Peripheral {
            self.send(SmpPdu::PairingRandom(nonce), now);
        }
        if let PairingMethod::PasskeyEntry { .. } = method {
            let ctx = self.ctx()?;
            ctx.round += 1;
            if ctx.round < PASSKEY_ROUNDS {
                ctx.local_nonce = random16(rng);
                match role {
                    LinkRole::Central => {
                        self.send_sc_passkey_confirm(now)?;
                        self.step = Step::WaitConfirm;
                    }
                    LinkRole::Peripheral => self.step = Step::WaitConfirm,
                }
                return Ok(());
            }
        }
        self.compute_sc_keys()?;
        match (role, method) {
            (LinkRole::Central, PairingMethod::NumericComparison) => {
                let v = self.numeric_value()?;
                self.events.push_back(SmpEvent::NumericComparison(v));
                self.step = Step::WaitNumeric;
            }
            (LinkRole::Central, _) => self.send_dhkey_check(now),
            (LinkRole::Peripheral, PairingMethod::NumericComparison) => {
                let v = self.numeric_value()?;
                self.events.push_back(SmpEvent::NumericComparison(v));
                self.step = Step::WaitDhKeyCheck;
            }
            (LinkRole::Peripheral, _) => {
                self.ctx()?.user_confirmed = true;
                self.step = Step::WaitDhKeyCheck;
            }
        }
        Ok(())
    }

    /// `g2(PKax, PKbx, Na, Nb) mod 10^6` (Core Vol 3 Part H §2.3.5.6.2).
    fn numeric_value(&self) -> Result<u32, Reason> {
        let ctx = self.ctx.as_deref().ok_or(Reason::UnspecifiedReason)?;
        let (pka, pkb) = self.sc_keys_x(ctx)?;
        let (na, nb) = self.nonces(ctx);
        Ok(crypto::g2(&pka, &pkb, &na, &nb) % 1_000_000)
    }

    fn nonces(&self, ctx: &Ctx) -> ([u8; 16], [u8; 16]) {
        match self.role {
            LinkRole::Central => (ctx.local_nonce, ctx.peer_nonce),
            LinkRole::Peripheral => (ctx.peer_nonce, ctx.local_nonce),
        }
    }

    /// `MacKey || LTK = f5(DHKey, Na, Nb, A, B)` (Core Vol 3 Part H §2.3.5.6.5).
    fn compute_sc_keys(&mut self) -> Flow {
        let (a, b) = self.initiator_responder();
        let ctx = self.ctx.as_deref().ok_or(Reason::UnspecifiedReason)?;
        let (na, nb) = self.nonces(ctx);
        let dhkey = ctx.dhkey.as_ref().ok_or(Reason::UnspecifiedReason)?;
        let (mackey, ltk) = crypto::f5(dhkey, &na, &nb, &a.to_f5(), &b.to_f5());
        let ctx = self.ctx()?;
        ctx.mackey = mackey;
        ctx.ltk = Some(mask_key(ltk, ctx.key_size));
        Ok(())
    }

    /// The `r` values of the DHKey checks: `(r in our check, r in the peer's check)`
    /// (Core Vol 3 Part H §2.3.5.6.5).
    fn check_r(&self, ctx: &Ctx) -> ([u8; 16], [u8; 16]) {
        match ctx.method {
            PairingMethod::PasskeyEntry { .. } => {
                let r = passkey_block(ctx.passkey.unwrap_or(0));
                (r, r)
            }
            PairingMethod::OutOfBand => {
                let ours_flag = ctx.local_oob_flag(self.role);
                let peer_flag = ctx.peer_oob_flag(self.role);
                let in_ours = match (ours_flag, self.peer_oob) {
                    (true, Some(o)) => o.random,
                    _ => [0; 16],
                };
                let in_peer = match (peer_flag, self.local_oob.as_ref()) {
                    (true, Some(r)) => *r,
                    _ => [0; 16],
                };
                (in_ours, in_peer)
            }
            _ => ([0; 16], [0; 16]),
        }
    }

    /// Our DHKey check `Ea`/`Eb` and the one expected from the peer (Core Vol 3 Part H §2.3.5.6.5).
    fn dhkey_checks(&self) -> Result<([u8; 16], [u8; 16]), Reason> {
        let ctx = self.ctx.as_deref().ok_or(Reason::UnspecifiedReason)?;
        let (r_ours, r_peer) = self.check_r(ctx);
        let local = self.addresses.local.to_f5();
        let peer = self.addresses.peer.to_f5();
        let (local_io, peer_io) = match self.role {
            LinkRole::Central => (ctx.req.io_cap_octets(), ctx.rsp.io_cap_octets()),
            LinkRole::Peripheral => (ctx.rsp.io_cap_octets(), ctx.req.io_cap_octets()),
        };
        let ours = crypto::f6(&ctx.mackey, &ctx.local_nonce, &ctx.peer_nonce, &r_ours, &local_io, &local, &peer);
        let theirs = crypto::f6(&ctx.mackey, &ctx.peer_nonce, &ctx.local_nonce, &r_peer, &peer_io, &peer, &local);
        Ok((ours, theirs))
    }

    /// Central: sends Ea and waits for Eb (Core Vol 3 Part H §2.3.5.6.5).
    fn send_dhkey_check(&mut self, now: u64) {
        match self.dhkey_checks() {
            Ok((ea, _)) => {
                self.send(SmpPdu::PairingDhKeyCheck(ea), now);
                self.step = Step::WaitDhKeyCheck;
            }
            Err(r) => self.fail(r, now),
        }
    }

    fn on_dhkey_check(&mut self, check: [u8; 16], now: u64) -> Flow {
        let role = self.role;
        let ctx = self.ctx()?;
        if role == LinkRole::Peripheral && !ctx.user_confirmed {
            // Ea may arrive before our user answered the numeric comparison.
            if ctx.peer_check.is_some() {
                return Err(Reason::UnspecifiedReason);
            }
            ctx.peer_check = Some(check);
            return Ok(());
        }
        self.check_peer_dhkey(check, now)
    }

    fn check_peer_dhkey(&mut self, check: [u8; 16], now: u64) -> Flow {
        let (ours, theirs) = self.dhkey_checks()?;
        if !ct_eq(&check, &theirs) {
            return Err(Reason::DhKeyCheckFailed);
        }
        if self.role == LinkRole::Peripheral {
            self.send(SmpPdu::PairingDhKeyCheck(ours), now);
        }
        let ctx = self.ctx()?;
        let ltk = ctx.ltk.ok_or(Reason::UnspecifiedReason)?;
        let key_size = ctx.key_size;
        self.await_encryption(ltk, key_size);
        Ok(())
    }

    // ---- Phase 3: key distribution (§3.6.1) ----

    fn peer_keys(&self, ctx: &Ctx) -> KeyDistribution {
        let keys = match self.role {
            LinkRole::Central => ctx.resp_keys,
            LinkRole::Peripheral => ctx.init_keys,
        };
        if ctx.sc {
            KeyDistribution(keys.0 & !KeyDistribution::ENC_KEY)
        } else {
            keys
        }
    }

    /// Sets which key PDU the peer sends next, in the order EncKey, IdKey, SignKey (§3.6.1).
    fn expect_next(&mut self) {
        let Some(ctx) = self.ctx.as_deref() else { return };
        let keys = self.peer_keys(ctx);
        let r = &ctx.result;
        let next = if keys.enc_key() && r.peer_ltk.is_none() {
            Expect::EncryptionInformation
        } else if keys.id_key() && r.peer_identity.is_none() {
            Expect::IdentityInformation
        } else if keys.sign_key() && r.peer_csrk.is_none() {
            Expect::SigningInformation
        } else {
            Expect::Nothing
        };
        if let Some(ctx) = self.ctx.as_deref_mut() {
            ctx.expect = next;
        }
    }

    fn on_key(&mut self, pdu: SmpPdu, now: u64) -> Flow {
        let ctx = self.ctx()?;
        match (pdu, ctx.expect) {
            (SmpPdu::EncryptionInformation(ltk), Expect::EncryptionInformation) => {
                ctx.pending_ltk = ltk;
                ctx.expect = Expect::CentralIdentification;
                return Ok(());
            }
            (SmpPdu::CentralIdentification { ediv, rand }, Expect::CentralIdentification) => {
                ctx.result.peer_ltk = Some(LegacyLtk { ltk: ctx.pending_ltk, ediv, rand });
                ctx.pending_ltk.zeroize();
            }
            (SmpPdu::IdentityInformation(irk), Expect::IdentityInformation) => {
                ctx.pending_irk = irk;
                ctx.expect = Expect::IdentityAddressInformation;
                return Ok(());
            }
            (SmpPdu::IdentityAddressInformation { addr_type, address }, Expect::IdentityAddressInformation) => {
                if addr_type > 1 {
                    return Err(Reason::InvalidParameters);
                }
                ctx.result.peer_irk = Some(ctx.pending_irk);
                ctx.result.peer_identity = Some(SmpAddress { addr_type, address });
                ctx.pending_irk.zeroize();
            }
            (SmpPdu::SigningInformation(csrk), Expect::SigningInformation) => ctx.result.peer_csrk = Some(csrk),
            _ => return Err(Reason::UnspecifiedReason),
        }
        ctx.expect = Expect::Nothing;
        self.expect_next();
        self.maybe_finish(now);
        Ok(())
    }

    /// Sends our keys in the order EncKey, IdKey, SignKey (Core Vol 3 Part H §3.6.1).
    fn distribute_local(&mut self, now: u64) {
        let identity_irk = self.identity.irk;
        let identity_addr = self.identity.address;
        let identity_csrk = self.identity.csrk;
        let role = self.role;
        let Some(ctx) = self.ctx.as_deref_mut() else { return };
        let keys = match role {
            LinkRole::Central => ctx.init_keys,
            LinkRole::Peripheral => ctx.resp_keys,
        };
        let mut out = Vec::new();
        if keys.enc_key() && !ctx.sc {
            // A fresh random LTK, EDIV and Rand (§2.4.2.1 allows them to be random).
            let ltk = mask_key(ctx.gen_ltk, ctx.key_size);
            let ediv_rand = ctx.gen_ediv_rand;
            let ediv = u16::from_le_bytes([ediv_rand[0], ediv_rand[1]]);
            let mut rand = [0u8; 8];
            rand.copy_from_slice(&ediv_rand[2..10]);
            out.push(SmpPdu::EncryptionInformation(ltk));
            out.push(SmpPdu::CentralIdentification { ediv, rand });
            ctx.result.local_ltk = Some(LegacyLtk { ltk, ediv, rand });
        }
        if keys.id_key() {
            out.push(SmpPdu::IdentityInformation(identity_irk));
            out.push(SmpPdu::IdentityAddressInformation {
                addr_type: identity_addr.addr_type,
                address: identity_addr.address,
            });
            ctx.result.local_irk_sent = true;
        }
        if keys.sign_key() {
            let csrk = identity_csrk.unwrap_or(ctx.gen_csrk);
            out.push(SmpPdu::SigningInformation(csrk));
            ctx.result.local_csrk = Some(csrk);
        }
        for pdu in out {
            self.send(pdu, now);
        }
    }

    fn maybe_finish(&mut self, now: u64) {
        if self.step != Step::Distribution {
            return;
        }
        let Some(ctx) = self.ctx.as_deref() else { return };
        if ctx.expect != Expect::Nothing {
            return;
        }
        if self.role == LinkRole::Central {
            self.distribute_local(now);
        }
        let Some(mut ctx) = self.ctx.take() else { return };
        let result = core::mem::take(&mut ctx.result);
        self.step = Step::Idle;
        self.deadline = None;
        self.retry_interval = self.config.retry_interval_us;
        self.blocked_until = None;
        self.events.push_back(SmpEvent::Complete(result));
    }
}

impl Ctx {
    /// Whether we set the OOB data flag, i.e. hold the peer's OOB data.
    fn local_oob_flag(&self, role: LinkRole) -> bool {
        match role {
            LinkRole::Central => self.req.oob_data_present,
            LinkRole::Peripheral => self.rsp.oob_data_present,
        }
    }

    /// Whether the peer set the OOB data flag, i.e. holds our OOB data.
    fn peer_oob_flag(&self, role: LinkRole) -> bool {
        match role {
            LinkRole::Central => self.rsp.oob_data_present,
            LinkRole::Peripheral => self.req.oob_data_present,
        }
    }
}

/// Compares two check values in constant time (no early exit on the first differing octet).
fn ct_eq(a: &[u8; 16], b: &[u8; 16]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the received confirm value equals `expected` (Core Vol 3 Part H §2.3.5.5, §2.3.5.6).
fn matches_confirm(expected: &[u8; 16], received: Option<&[u8; 16]>) -> bool {
    received.is_some_and(|r| ct_eq(expected, r))
}

/// `0x80 | bit` of the passkey for the current Passkey Entry round (Core Vol 3 Part H §2.3.5.6.3).
fn sc_passkey_bit(ctx: &Ctx) -> Result<u8, Reason> {
    let passkey = ctx.passkey.ok_or(Reason::UnspecifiedReason)?;
    let bit = (passkey >> (ctx.round & 31)) & 1;
    Ok(0x80 | bit as u8)
}

#[cfg(test)]
mod tests;
