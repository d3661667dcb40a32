//! Error codes printed as `ERROR:<n>` when extended errors are on (`AT+USYEE=1`) and reported by
//! `AT+USYEC?` (u-connectXpress `error_codes.yaml` 3.4.0).

/// One u-connectXpress error code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, thiserror::Error)]
#[error("AT error {0}")]
pub struct AtError(pub u16);

impl AtError {
    /// Common: invalid parameter.
    pub const INVALID_PARAMETER: AtError = AtError(5);
    /// Common: not found.
    pub const NOT_FOUND: AtError = AtError(11);
    /// Common: operation in progress.
    pub const IN_PROGRESS: AtError = AtError(15);
    /// Common: not connected.
    pub const NOT_CONNECTED: AtError = AtError(16);
    /// Common: limit reached.
    pub const LIMIT_REACHED: AtError = AtError(17);
    /// Common: timeout.
    pub const TIMEOUT: AtError = AtError(9);
    /// Common: not supported.
    pub const NOT_SUPPORTED: AtError = AtError(4);
    /// Common: device error.
    pub const DEVICE_ERROR: AtError = AtError(10);
    /// Common: not configured (e.g. a role the Bluetooth mode does not enable).
    pub const NOT_CONFIGURED: AtError = AtError(20);
    /// Common: unknown.
    pub const UNKNOWN: AtError = AtError(22);
    /// AT: command not implemented.
    pub const NOT_IMPLEMENTED: AtError = AtError(31);
    /// AT: invalid (unknown) command.
    pub const INVALID_COMMAND: AtError = AtError(32);
    /// AT: invalid arguments.
    pub const INVALID_ARGUMENTS: AtError = AtError(33);
    /// AT: wrong number of arguments.
    pub const ARG_COUNT: AtError = AtError(34);
    /// AT: not an integer.
    pub const INT_ARG: AtError = AtError(35);
    /// AT: integer out of range.
    pub const INT_RANGE: AtError = AtError(36);
    /// AT: not a string.
    pub const STR_ARG: AtError = AtError(37);
    /// AT: string too long or too short.
    pub const STR_LENGTH: AtError = AtError(38);
    /// AT: not one of the enumerator's values.
    pub const ENUM_ARG: AtError = AtError(39);
    /// AT: invalid MAC address.
    pub const MAC_ADDR: AtError = AtError(41);
    /// AT: invalid Bluetooth device address.
    pub const BD_ADDR: AtError = AtError(42);
    /// AT: invalid byte array (odd length or not hex).
    pub const BYTE_ARRAY: AtError = AtError(43);
    /// AT: byte array too long or too short.
    pub const BYTE_ARRAY_LENGTH: AtError = AtError(44);
    /// AT: a quote is not closed.
    pub const UNMATCHED_QUOTE: AtError = AtError(45);
    /// AT: the command timed out.
    pub const AT_TIMEOUT: AtError = AtError(46);
    /// AT: an invalid escape sequence in a string.
    pub const ESCAPE_CODE: AtError = AtError(48);
    /// AT: an invalid character on the line.
    pub const INVALID_CHARACTER: AtError = AtError(49);
    /// GATT: write request rejected.
    pub const WRITE_REQUEST_REJECTED: AtError = AtError(110);
    /// GATT: CCCD improperly configured.
    pub const CCCD_IMPROPER: AtError = AtError(111);
    /// GATT: procedure in progress.
    pub const PROCEDURE_IN_PROGRESS: AtError = AtError(112);
    /// GATT: out of range.
    pub const OUT_OF_RANGE: AtError = AtError(113);
    /// GATT: unknown.
    pub const GATT_UNKNOWN: AtError = AtError(114);

    /// The code for an ATT error from the peer: 90 + the ATT code for 0x01-0x13 (Core Vol 3
    /// Part F §3.4.1.1), 114 (GATT unknown) for any other.
    pub const fn from_att(code: u8) -> AtError {
        match code {
            0x01..=0x13 => AtError(90 + code as u16),
            _ => AtError::GATT_UNKNOWN,
        }
    }

    /// The number printed after `ERROR:`.
    pub const fn code(self) -> u16 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn att_errors_map_to_ninety_plus_the_code() {
        assert_eq!(AtError::from_att(0x01), AtError(91));
        assert_eq!(AtError::from_att(0x0A), AtError(100));
        assert_eq!(AtError::from_att(0x13), AtError(109));
        assert_eq!(AtError::from_att(0x80), AtError::GATT_UNKNOWN);
        assert_eq!(AtError::from_att(0x00), AtError::GATT_UNKNOWN);
    }
}
