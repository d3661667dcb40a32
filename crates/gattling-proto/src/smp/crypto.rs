//! The Security Manager's cryptographic toolbox (Core Vol 3 Part H §2.2) and the P-256 key
//! handling of LE Secure Connections (§2.3.5.6).
//!
//! # Byte order
//!
//! The specification writes every value most significant octet first, but SMP carries all of them
//! least significant octet first, and so does HCI (for instance LE Encrypt). Every array taken or
//! returned here is in that **little-endian SMP order**, ready to go into or come out of a PDU: the
//! spec's nonce `d5cb8454 ... 712baeab` is the array `[0xab, 0xae, 0x2b, 0x71, ...]`.
//! The functions reverse internally where AES and AES-CMAC need the most significant octet first.
//! The only exception is [`aes_cmac`], which is RFC 4493's AES-CMAC on plain octet strings.
//! Fixed 32-bit key IDs and 128-bit salts are passed as integers, so they have no byte order.

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;
use cmac::{Cmac, Mac};
use p256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use p256::{EncodedPoint, FieldBytes, PublicKey, SecretKey};
use zeroize::{Zeroize, Zeroizing};

fn reversed<const N: usize>(value: &[u8; N]) -> [u8; N] {
    let mut out = *value;
    out.reverse();
    out
}

/// AES-128 of RFC 4493 / FIPS-197 order: key and block most significant octet first.
fn aes_be(key: &[u8; 16], block: &[u8; 16]) -> [u8; 16] {
    let cipher = Aes128::new(key.into());
    let mut out = (*block).into();
    cipher.encrypt_block(&mut out);
    out.into()
}

/// Security function `e` (§2.2.1): AES-128 encryption of `plaintext` with `key`.
///
/// Both inputs and the result are **little-endian**, as in the HCI LE Encrypt command: `key[15]` is
/// the most significant octet of the spec's 128-bit key.
pub fn e(key: &[u8; 16], plaintext: &[u8; 16]) -> [u8; 16] {
    let mut key_be = reversed(key);
    let out = reversed(&aes_be(&key_be, &reversed(plaintext)));
    key_be.zeroize();
    out
}

/// AES-CMAC of RFC 4493 (§2.2.5), on plain octet strings: `key` and `message` and the returned MAC
/// are most significant octet first (unlike every other function of this module).
pub fn aes_cmac(key: &[u8; 16], message: &[u8]) -> [u8; 16] {
    let mut mac = <Cmac<Aes128> as KeyInit>::new(key.into());
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// [`aes_cmac`] with a little-endian key over the concatenation of `parts` (each already most
/// significant octet first), returning the MAC little-endian.
fn cmac_le(key: &[u8; 16], parts: &[&[u8]]) -> [u8; 16] {
    let mut key_be = reversed(key);
    let mut mac = <Cmac<Aes128> as KeyInit>::new((&key_be).into());
    key_be.zeroize();
    for part in parts {
        mac.update(part);
    }
    let out: [u8; 16] = mac.finalize().into_bytes().into();
    reversed(&out)
}

/// Random address hash function `ah` (§2.2.2): `ah(k, r) = e(k, padding || r) mod 2^24`.
///
/// `irk` (the Identity Resolving Key), `prand` (the 24-bit random part of a resolvable private
/// address) and the returned hash are little-endian; `prand` and the hash are the upper and lower
/// three octets of the address as sent over the air.
pub fn ah(irk: &[u8; 16], prand: &[u8; 3]) -> [u8; 3] {
    let mut r = [0u8; 16];
    r[..3].copy_from_slice(prand);
    let out = e(irk, &r);
    [out[0], out[1], out[2]]
}

/// Confirm value generation function `c1` for LE legacy pairing (§2.2.3):
/// `c1(k, r, preq, pres, iat, rat, ia, ra) = e(k, e(k, r XOR p1) XOR p2)` with
/// `p1 = pres || preq || rat' || iat'` and `p2 = padding || ia || ra`.
///
/// `k` (the TK), `r` (Mrand or Srand) and the result are little-endian. `preq` and `pres` are the
/// 7-octet Pairing Request and Pairing Response PDUs exactly as sent (code octet first). `iat` and
/// `rat` are the initiating and responding device address types (0 public, 1 random; only bit 0 is
/// used); `ia` and `ra` the 48-bit addresses, little-endian as in HCI.
#[allow(clippy::too_many_arguments)]
pub fn c1(
    k: &[u8; 16],
    r: &[u8; 16],
    preq: &[u8; 7],
    pres: &[u8; 7],
    iat: u8,
    ia: &[u8; 6],
    rat: u8,
    ra: &[u8; 6],
) -> [u8; 16] {
    // Little-endian layouts: the spec's rightmost (least significant) component comes first.
    let mut p1 = [0u8; 16];
    p1[0] = iat & 1;
    p1[1] = rat & 1;
    p1[2..9].copy_from_slice(preq);
    p1[9..16].copy_from_slice(pres);
    let mut p2 = [0u8; 16];
    p2[..6].copy_from_slice(ra);
    p2[6..12].copy_from_slice(ia);
    let mut block = xor(r, &p1);
    let mut inner = e(k, &block);
    block.zeroize();
    let out = e(k, &xor(&inner, &p2));
    inner.zeroize();
    out
}

/// Key generation function `s1` for LE legacy pairing (§2.2.4): `s1(k, r1, r2) = e(k, r')` where
/// `r'` is the least significant 64 bits of `r1` (most significant half) followed by the least
/// significant 64 bits of `r2`. `k` (the TK), `r1` (Srand), `r2` (Mrand) and the returned STK are
/// little-endian.
pub fn s1(k: &[u8; 16], r1: &[u8; 16], r2: &[u8; 16]) -> [u8; 16] {
    let mut r = [0u8; 16];
    r[..8].copy_from_slice(&r2[..8]);
    r[8..].copy_from_slice(&r1[..8]);
    let out = e(k, &r);
    r.zeroize();
    out
}

fn xor(a: &[u8; 16], b: &[u8; 16]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, (x, y)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = x ^ y;
    }
    out
}

/// LE Secure Connections confirm value generation function `f4` (§2.2.6):
/// `f4(U, V, X, Z) = AES-CMAC_X(U || V || Z)`.
///
/// `u` and `v` are public key X coordinates, `x` a nonce (the CMAC key), `z` is 0 for numeric
/// comparison and out of band, or `0x80 | bit` in passkey entry. All arrays, and the returned
/// confirm value, are little-endian.
pub fn f4(u: &[u8; 32], v: &[u8; 32], x: &[u8; 16], z: u8) -> [u8; 16] {
    cmac_le(x, &[&reversed(u), &reversed(v), &[z]])
}

/// SALT of `f5` (§2.2.7).
const F5_SALT: u128 = 0x6C88_8391_AAF5_A538_6037_0BDB_5A60_83BE;
/// keyID "btle" of `f5` (§2.2.7).
const F5_KEY_ID: u32 = 0x6274_6C65;

/// LE Secure Connections key generation function `f5` (§2.2.7): from the DHKey `w`, the nonces
/// `n1` and `n2` and the device addresses `a1` and `a2`, returns `(MacKey, LTK)`.
///
/// `a1` and `a2` are 56 bits: the 48-bit address in octets 0..6 (little-endian) followed by its
/// type (0 public, 1 random) in octet 6. All arrays, and both returned keys, are little-endian.
pub fn f5(w: &[u8; 32], n1: &[u8; 16], n2: &[u8; 16], a1: &[u8; 7], a2: &[u8; 7]) -> ([u8; 16], [u8; 16]) {
    let mut w_be = Zeroizing::new(reversed(w));
    let mut t = Zeroizing::new(aes_cmac(&F5_SALT.to_be_bytes(), &*w_be));
    w_be.zeroize();
    let (n1, n2, a1, a2) = (reversed(n1), reversed(n2), reversed(a1), reversed(a2));
    let key = |counter: u8| {
        let mut m = [0u8; 53];
        m[0] = counter;
        m[1..5].copy_from_slice(&F5_KEY_ID.to_be_bytes());
        m[5..21].copy_from_slice(&n1);
        m[21..37].copy_from_slice(&n2);
        m[37..44].copy_from_slice(&a1);
        m[44..51].copy_from_slice(&a2);
        m[51..53].copy_from_slice(&256u16.to_be_bytes());
        reversed(&aes_cmac(&t, &m))
    };
    let keys = (key(0), key(1));
    t.zeroize();
    keys
}

/// LE Secure Connections check value generation function `f6` (§2.2.8):
/// `f6(W, N1, N2, R, IOcap, A1, A2) = AES-CMAC_W(N1 || N2 || R || IOcap || A1 || A2)`.
///
/// `w` is the MacKey, `io_cap` the three octets IO Capability, OOB data flag and AuthReq as they
/// appear in the Pairing Request/Response (little-endian: IO capability in octet 0, AuthReq in
/// octet 2), `a1`/`a2` as in [`f5`]. All arrays, and the returned check value, are little-endian.
pub fn f6(
    w: &[u8; 16],
    n1: &[u8; 16],
    n2: &[u8; 16],
    r: &[u8; 16],
    io_cap: &[u8; 3],
    a1: &[u8; 7],
    a2: &[u8; 7],
) -> [u8; 16] {
    cmac_le(w, &[&reversed(n1), &reversed(n2), &reversed(r), &reversed(io_cap), &reversed(a1), &reversed(a2)])
}

/// LE Secure Connections numeric comparison value generation function `g2` (§2.2.9):
/// `g2(U, V, X, Y) = AES-CMAC_X(U || V || Y) mod 2^32`.
///
/// `u`, `v` are public key X coordinates, `x`, `y` nonces, all little-endian. The six-digit value
/// shown to the user is the result modulo 1 000 000.
pub fn g2(u: &[u8; 32], v: &[u8; 32], x: &[u8; 16], y: &[u8; 16]) -> u32 {
    let mac = cmac_le(x, &[&reversed(u), &reversed(v), &reversed(y)]);
    u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]])
}

/// Link key conversion function `h6` (§2.2.10): `h6(W, keyID) = AES-CMAC_W(keyID)`.
///
/// `w` and the result are little-endian; `key_id` is the spec's 32-bit value, e.g. `0x6C65_6272`
/// ("lebr").
pub fn h6(w: &[u8; 16], key_id: u32) -> [u8; 16] {
    cmac_le(w, &[&key_id.to_be_bytes()])
}

/// Link key conversion function `h7` (§2.2.11): `h7(SALT, W) = AES-CMAC_SALT(W)`.
///
/// `salt` is the spec's 128-bit value, e.g. `0x746D_7031` ("tmp1"); `w` and the result are
/// little-endian.
pub fn h7(salt: u128, w: &[u8; 16]) -> [u8; 16] {
    let mut w_be = reversed(w);
    let out = reversed(&aes_cmac(&salt.to_be_bytes(), &w_be));
    w_be.zeroize();
    out
}

/// The debug public key of §2.3.5.6.1, X || Y little-endian as in the Pairing Public Key PDU.
pub const DEBUG_PUBLIC_KEY: [u8; 64] = {
    const X: [u8; 32] = [
        0x20, 0xb0, 0x03, 0xd2, 0xf2, 0x97, 0xbe, 0x2c, 0x5e, 0x2c, 0x83, 0xa7, 0xe9, 0xf9, 0xa5, 0xb9, 0xef, 0xf4,
        0x91, 0x11, 0xac, 0xf4, 0xfd, 0xdb, 0xcc, 0x03, 0x01, 0x48, 0x0e, 0x35, 0x9d, 0xe6,
    ];
    const Y: [u8; 32] = [
        0xdc, 0x80, 0x9c, 0x49, 0x65, 0x2a, 0xeb, 0x6d, 0x63, 0x32, 0x9a, 0xbf, 0x5a, 0x52, 0x15, 0x5c, 0x76, 0x63,
        0x45, 0xc2, 0x8f, 0xed, 0x30, 0x24, 0x74, 0x1c, 0x8e, 0xd0, 0x15, 0x89, 0xd2, 0x8b,
    ];
    let mut out = [0u8; 64];
    let mut i = 0;
    while i < 32 {
        out[i] = X[31 - i];
        out[32 + i] = Y[31 - i];
        i += 1;
    }
    out
};

/// Why a P-256 key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The secret is zero or not below the curve order.
    #[error("P-256 secret key out of range")]
    InvalidSecret,
    /// The peer's public key is not a point on P-256 (the invalid-curve attack, CVE-2018-5383).
    #[error("peer public key is not on the P-256 curve")]
    NotOnCurve,
    /// The peer sent the specification's debug public key, and debug keys are not allowed.
    #[error("peer public key is the debug key")]
    DebugKey,
}

/// A source of cryptographically secure random bytes (the sans-IO core has no RNG of its own).
pub trait SecureRandom {
    /// Fills `dest` with random bytes from a cryptographically secure generator.
    fn fill_bytes(&mut self, dest: &mut [u8]);
}

/// An LE Secure Connections P-256 key pair. The secret key is zeroized on drop.
#[derive(Clone)]
pub struct KeyPair {
    secret: SecretKey,
    public: [u8; 64],
}

impl core::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyPair").field("public", &self.public).finish_non_exhaustive()
    }
}

impl KeyPair {
    /// The key pair whose secret key is the 256-bit integer `secret`, **little-endian** like every
    /// other value here. Fails unless `0 < secret < n` (the curve order).
    pub fn from_secret(secret: &[u8; 32]) -> Result<Self, KeyError> {
        let mut be = Zeroizing::new(reversed(secret));
        let secret = SecretKey::from_bytes(FieldBytes::from_slice(&be[..])).map_err(|_| KeyError::InvalidSecret)?;
        be.zeroize();
        #[cfg(all(fuzzing, feature = "std"))]
        if let Some(public) = fuzz_memo::public(&secret) {
            return Ok(Self { secret, public });
        }
        let point = secret.public_key().to_encoded_point(false);
        let mut public = [0u8; 64];
        // Uncompressed SEC1 encoding: 0x04 || X || Y, both big-endian.
        // A secret in 1..n never gives the identity point, so both coordinates are present.
        let (Some(x), Some(y)) = (point.x(), point.y()) else { return Err(KeyError::InvalidSecret) };
        for i in 0..32 {
            public[i] = x[31 - i];
            public[32 + i] = y[31 - i];
        }
        #[cfg(all(fuzzing, feature = "std"))]
        fuzz_memo::keep_public(&secret, public);
        Ok(Self { secret, public })
    }

    /// A fresh key pair from `rng`.
    pub fn generate(rng: &mut dyn SecureRandom) -> Self {
        let mut secret = Zeroizing::new([0u8; 32]);
        loop {
            rng.fill_bytes(&mut secret[..]);
            // Out of range with probability about 2^-32 per draw.
            if let Ok(pair) = Self::from_secret(&secret) {
                return pair;
            }
        }
    }

    /// The public key as sent in the Pairing Public Key PDU (§3.5.6): X then Y, each 32 octets
    /// little-endian.
    pub fn public_key(&self) -> &[u8; 64] {
        &self.public
    }

    /// The public key's X coordinate, little-endian (the `U`/`V` input of [`f4`] and [`g2`]).
    pub fn public_x(&self) -> [u8; 32] {
        let mut x = [0u8; 32];
        x.copy_from_slice(&self.public[..32]);
        x
    }

    /// The Diffie-Hellman key (§2.3.5.6.1) with the peer's public key `peer` (X || Y little-endian,
    /// as received in the Pairing Public Key PDU): the X coordinate of the shared point,
    /// little-endian, zeroized on drop.
    ///
    /// The peer's point is first checked to be on the curve and refused otherwise, which defeats the
    /// invalid-curve attack of CVE-2018-5383. The specification's debug public key is refused
    /// unless `allow_debug_key`.
    #[allow(clippy::let_and_return)] // one `let` per build: fuzz builds remember results
    pub fn dh_key(&self, peer: &[u8; 64], allow_debug_key: bool) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        if !allow_debug_key && *peer == DEBUG_PUBLIC_KEY {
            return Err(KeyError::DebugKey);
        }
        #[cfg(all(fuzzing, feature = "std"))]
        let result = fuzz_memo::dh_key(&self.secret, peer, || self.compute_dh_key(peer));
        #[cfg(not(all(fuzzing, feature = "std")))]
        let result = self.compute_dh_key(peer);
        result
    }

    fn compute_dh_key(&self, peer: &[u8; 64]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let mut x = [0u8; 32];
        let mut y = [0u8; 32];
        for i in 0..32 {
            x[i] = peer[31 - i];
            y[i] = peer[63 - i];
        }
        let encoded = EncodedPoint::from_affine_coordinates(&FieldBytes::from(x), &FieldBytes::from(y), false);
        // Decoding an affine point checks y^2 = x^3 + ax + b (and that both coordinates are field
        // elements), so a point off the curve never reaches the scalar multiplication.
        let peer_key =
            Option::<PublicKey>::from(PublicKey::from_encoded_point(&encoded)).ok_or(KeyError::NotOnCurve)?;
        let shared = p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), peer_key.as_affine());
        let mut out = Zeroizing::new([0u8; 32]);
        for (o, b) in out.iter_mut().zip(shared.raw_secret_bytes().iter().rev()) {
            *o = *b;
        }
        Ok(out)
    }
}

/// Fuzz builds only (`cfg(fuzzing)`, set by cargo-fuzz): remembers the results of the P-256
/// scalar multiplications, so an input that repeats a key pair or a Diffie-Hellman exchange
/// (fuzz targets use a few fixed keys) costs a lookup instead of a multiplication. Results are
/// the real ones, computed the first time; only their cost changes.
#[cfg(all(fuzzing, feature = "std"))]
mod fuzz_memo {
    extern crate std;
    use super::{KeyError, SecretKey};
    use std::collections::HashMap;
    use std::sync::Mutex;
    use zeroize::Zeroizing;

    /// Entries kept per table before it is emptied (bounds the fuzzer's memory).
    const MAX: usize = 4096;

    type DhResult = Result<[u8; 32], KeyError>;
    static PUBLIC: Mutex<Option<HashMap<[u8; 32], [u8; 64]>>> = Mutex::new(None);
    static DH: Mutex<Option<HashMap<([u8; 32], [u8; 64]), DhResult>>> = Mutex::new(None);

    fn secret_bytes(secret: &SecretKey) -> [u8; 32] {
        secret.to_bytes().into()
    }

    pub(super) fn public(secret: &SecretKey) -> Option<[u8; 64]> {
        let table = PUBLIC.lock().unwrap_or_else(|p| p.into_inner());
        table.as_ref()?.get(&secret_bytes(secret)).copied()
    }

    pub(super) fn keep_public(secret: &SecretKey, public: [u8; 64]) {
        let mut table = PUBLIC.lock().unwrap_or_else(|p| p.into_inner());
        let map = table.get_or_insert_with(HashMap::new);
        if map.len() >= MAX {
            map.clear();
        }
        map.insert(secret_bytes(secret), public);
    }

    pub(super) fn dh_key(
        secret: &SecretKey,
        peer: &[u8; 64],
        compute: impl FnOnce() -> Result<Zeroizing<[u8; 32]>, KeyError>,
    ) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let key = (secret_bytes(secret), *peer);
        if let Some(known) = DH.lock().unwrap_or_else(|p| p.into_inner()).as_ref().and_then(|m| m.get(&key)) {
            return known.map(Zeroizing::new);
        }
        let result = compute();
        let mut table = DH.lock().unwrap_or_else(|p| p.into_inner());
        let map = table.get_or_insert_with(HashMap::new);
        if map.len() >= MAX {
            map.clear();
        }
        map.insert(key, result.as_ref().map(|k| **k).map_err(|e| *e));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses hex as written in the spec (most significant octet first, spaces ignored) into the
    /// little-endian array used by this module.
    fn le<const N: usize>(spec: &str) -> [u8; N] {
        let mut out = be::<N>(spec);
        out.reverse();
        out
    }

    /// Parses hex into an array in the same (most significant first) order.
    fn be<const N: usize>(spec: &str) -> [u8; N] {
        let digits: alloc::vec::Vec<u8> = spec.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        assert_eq!(digits.len(), 2 * N, "{spec}");
        let mut out = [0u8; N];
        for (i, o) in out.iter_mut().enumerate() {
            let pair = core::str::from_utf8(&digits[2 * i..2 * i + 2]).unwrap();
            *o = u8::from_str_radix(pair, 16).unwrap();
        }
        out
    }

    // Appendix D sample data shared by several functions.
    const U: &str = "20b003d2 f297be2c 5e2c83a7 e9f9a5b9 eff49111 acf4fddb cc030148 0e359de6";
    const V: &str = "55188b3d 32f6bb9a 900afcfb eed4e72a 59cb9ac2 f19d7cfb 6b4fdd49 f47fc5fd";
    const N1: &str = "d5cb8454 d177733e ffffb2ec 712baeab";
    const N2: &str = "a6e8e7cc 25a75f6e 216583f7 ff3dc4cf";
    const DHKEY: &str = "ec0234a3 57c8ad05 341010a6 0a397d9b 99796b13 b4f866f1 868d34f3 73bfa698";
    const A1: &str = "00561237 37bfce";
    const A2: &str = "00a71370 2dcfc1";
    const MAC_KEY: &str = "2965f176 a1084a02 fd3f6a20 ce636e20";
    const KEY16: &str = "ec0234a3 57c8ad05 341010a6 0a397d9b";

    #[test]
    fn e_is_aes128_with_little_endian_operands() {
        // FIPS-197 Appendix C.1, reversed into HCI order.
        let key = le("000102030405060708090a0b0c0d0e0f");
        let plaintext = le("00112233445566778899aabbccddeeff");
        assert_eq!(e(&key, &plaintext), le("69c4e0d86a7b0430d8cdb78070b4c55a"));
    }

    #[test]
    fn aes_cmac_rfc4493() {
        // RFC 4493 §4 (also Core Vol 3 Part H Appendix D.1).
        let k = be("2b7e1516 28aed2a6 abf71588 09cf4f3c");
        let m: [u8; 64] = be("6bc1bee2 2e409f96 e93d7e11 7393172a ae2d8a57 1e03ac9c 9eb76fac 45af8e51 \
             30c81c46 a35ce411 e5fbc119 1a0a52ef f69f2445 df4f9b17 ad2b417b e66c3710");
        assert_eq!(aes_cmac(&k, &[]), be("bb1d6929 e9593728 7fa37d12 9b756746"));
        assert_eq!(aes_cmac(&k, &m[..16]), be("070a16b4 6b4d4144 f79bdd9d d04a287c"));
        assert_eq!(aes_cmac(&k, &m[..40]), be("dfa66747 de9ae630 30ca3261 1497c827"));
        assert_eq!(aes_cmac(&k, &m), be("51f0bebf 7e3b9d92 fc497417 79363cfe"));
    }

    #[test]
    fn f4_sample_data() {
        let out = f4(&le(U), &le(V), &le(N1), 0);
        assert_eq!(out, le("f2c916f1 07a9bd1c f1eda1be a974872d"));
    }

    #[test]
    fn f5_sample_data() {
        let (mac_key, ltk) = f5(&le(DHKEY), &le(N1), &le(N2), &le(A1), &le(A2));
        assert_eq!(mac_key, le(MAC_KEY));
        assert_eq!(ltk, le("69867911 69d7cd23 980522b5 94750a38"));
    }

    #[test]
    fn f6_sample_data() {
        let out = f6(
            &le(MAC_KEY),
            &le(N1),
            &le(N2),
            &le("12a3343b b453bb54 08da42d2 0c2d0fc8"),
            &le("010102"),
            &le(A1),
            &le(A2),
        );
        assert_eq!(out, le("e3c47398 9cd0e8c5 d26c0b09 da958f61"));
    }

    #[test]
    fn g2_sample_data() {
        assert_eq!(g2(&le(U), &le(V), &le(N1), &le(N2)), 0x2f9e_d5ba);
    }

    #[test]
    fn h6_h7_sample_data() {
        assert_eq!(h6(&le(KEY16), 0x6c65_6272), le("2d9ae102 e76dc91c e8d3a9e2 80b16399"));
        assert_eq!(h7(0x746d_7031, &le(KEY16)), le("fb173597 c6a3c0ec d2998c2a 75a57011"));
    }

    #[test]
    fn h6_h7_cross_transport_key_derivation_sample_data() {
        // LTK to BR/EDR link key, without and with CT2 (salt or key ID "tmp1", then "lebr").
        let ltk = le("368df9bc e3264b58 bd066c33 334fbf64");
        let ilk = h6(&ltk, 0x746d_7031);
        assert_eq!(h6(&ilk, 0x6c65_6272), le("bc1ca4ef 633fc1bd 0d8230af ee388fb0"));
        let ilk = h7(0x746d_7031, &ltk);
        assert_eq!(h6(&ilk, 0x6c65_6272), le("287ad379 dca40253 0a39f1f4 3047b835"));
        // BR/EDR link key to LTK, without and with CT2 ("tmp2", then "brle").
        let link_key = le("05040302 01000908 07060504 03020100");
        let iltk = h6(&link_key, 0x746d_7032);
        assert_eq!(h6(&iltk, 0x6272_6c65), le("a813fb72 f1a3dfa1 8a2c9a43 f10d0a30"));
        let iltk = h7(0x746d_7032, &link_key);
        assert_eq!(h6(&iltk, 0x6272_6c65), le("e85e09eb 5eccb3e2 69418a13 3211bc79"));
    }

    #[test]
    fn ah_sample_data() {
        assert_eq!(ah(&le(KEY16), &le("708194")), le("0dfbaa"));
    }

    #[test]
    fn c1_s1_worked_examples() {
        let confirm = c1(
            &[0; 16],
            &le("5783D521 56AD6F0E 6388274E C6702EE0"),
            &le("07071000000101"),
            &le("05000800000302"),
            1,
            &le("A1A2A3A4A5A6"),
            0,
            &le("B1B2B3B4B5B6"),
        );
        assert_eq!(confirm, le("1e1e3fef 878988ea d2a74dc5 bef13b86"));
        let stk = s1(&[0; 16], &le("000F0E0D 0C0B0A09 11223344 55667788"), &le("01020304 05060708 99AABBCC DDEEFF00"));
        assert_eq!(stk, le("9a1fe1f0 e8b0f49b 5b4216ae 796da062"));
    }

    const PRIVATE_A: &str = "3f49f6d4 a3c55f38 74c9b3e3 d2103f50 4aff607b eb40b799 5899b8a6 cd3c1abd";
    const PRIVATE_B: &str = "55188b3d 32f6bb9a 900afcfb eed4e72a 59cb9ac2 f19d7cfb 6b4fdd49 f47fc5fd";
    const PUBLIC_B_X: &str = "1ea1f0f0 1faf1d96 09592284 f19e4c00 47b58afd 8615a69f 559077b2 2faaa190";
    const PUBLIC_B_Y: &str = "4c55f33e 429dad37 7356703a 9ab85160 472d1130 e28e3676 5f89aff9 15b1214a";

    fn public(x: &str, y: &str) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&le::<32>(x));
        out[32..].copy_from_slice(&le::<32>(y));
        out
    }

    #[test]
    fn debug_key_pair_and_dh_key() {
        let a = KeyPair::from_secret(&le(PRIVATE_A)).unwrap();
        assert_eq!(*a.public_key(), DEBUG_PUBLIC_KEY);
        assert_eq!(
            DEBUG_PUBLIC_KEY,
            public(U, "dc809c49 652aeb6d 63329abf 5a52155c 766345c2 8fed3024 741c8ed0 1589d28b")
        );
        assert_eq!(a.public_x(), le(U));
        let b = KeyPair::from_secret(&le(PRIVATE_B)).unwrap();
        assert_eq!(*b.public_key(), public(PUBLIC_B_X, PUBLIC_B_Y));
        assert_eq!(*a.dh_key(b.public_key(), false).unwrap(), le::<32>(DHKEY));
        // B's peer is the debug key: refused unless allowed.
        assert_eq!(b.dh_key(&DEBUG_PUBLIC_KEY, false), Err(KeyError::DebugKey));
        assert_eq!(*b.dh_key(&DEBUG_PUBLIC_KEY, true).unwrap(), le::<32>(DHKEY));
    }

    #[test]
    fn point_off_the_curve_is_refused() {
        let b = KeyPair::from_secret(&le(PRIVATE_B)).unwrap();
        let mut bad = DEBUG_PUBLIC_KEY;
        bad[32] = bad[32].wrapping_add(1); // Y + 1 (no carry: the low octet is 0x8b)
        assert_eq!(b.dh_key(&bad, true), Err(KeyError::NotOnCurve));
        assert_eq!(b.dh_key(&[0; 64], true), Err(KeyError::NotOnCurve));
        // X beyond the field prime.
        assert_eq!(b.dh_key(&[0xff; 64], true), Err(KeyError::NotOnCurve));
    }

    #[test]
    fn secrets_out_of_range_are_refused_and_generation_retries() {
        assert_eq!(KeyPair::from_secret(&[0; 32]).unwrap_err(), KeyError::InvalidSecret);
        assert_eq!(KeyPair::from_secret(&[0xff; 32]).unwrap_err(), KeyError::InvalidSecret);

        struct Script(u8);
        impl SecureRandom for Script {
            fn fill_bytes(&mut self, dest: &mut [u8]) {
                // First draw all-ones (above the order), then a valid constant.
                dest.fill(if self.0 == 0 { 0xff } else { 0x11 });
                self.0 += 1;
            }
        }
        let mut rng = Script(0);
        let pair = KeyPair::generate(&mut rng);
        assert_eq!(rng.0, 2);
        assert_eq!(pair.public_key(), KeyPair::from_secret(&[0x11; 32]).unwrap().public_key());
        // Two parties agree.
        let other = KeyPair::from_secret(&[0x22; 32]).unwrap();
        assert_eq!(*pair.dh_key(other.public_key(), false).unwrap(), *other.dh_key(pair.public_key(), false).unwrap());
    }
}
