//! Conversions between Python values and the stack's: buffers, UUIDs, characteristic values.

use gattling::proto::Uuid;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyInt, PyString};

/// A buffer argument: bytes, bytearray, memoryview or any sequence of ints; a str as its UTF-8 bytes.
pub fn buffer(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = obj.downcast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(s) = obj.downcast::<PyString>() {
        return Ok(s.extract::<String>()?.into_bytes());
    }
    if let Ok(b) = obj.downcast::<PyByteArray>() {
        return Ok(b.to_vec());
    }
    if obj.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err("object with buffer protocol required"));
    }
    // memoryview and other buffer objects: bytes(obj) copies them.
    let bytes = obj
        .py()
        .get_type_bound::<PyBytes>()
        .call1((obj,))
        .map_err(|_| PyTypeError::new_err("object with buffer protocol required"))?;
    Ok(bytes.downcast::<PyBytes>()?.as_bytes().to_vec())
}

/// A buffer argument that must not be a str.
pub fn bytes_only(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err("object with buffer protocol required"));
    }
    buffer(obj)
}

/// A service or characteristic UUID: an int up to 0xFFFF is 16-bit, a larger one (up to
/// 0xFFFFFFFF) 32-bit; a buffer must be exactly 16 bytes, taken as little-endian (over-the-air) order.
pub fn uuid(obj: &Bound<'_, PyAny>) -> PyResult<Uuid> {
    if obj.is_instance_of::<PyInt>() {
        let v: i128 = obj.extract().map_err(|_| PyValueError::new_err("invalid UUID"))?;
        return match v {
            0..=0xFFFF => Ok(Uuid::U16(v as u16)),
            0x1_0000..=0xFFFF_FFFF => Ok(Uuid::U32(v as u32)),
            _ => Err(PyValueError::new_err("invalid UUID: an int UUID must be 0..0xFFFFFFFF")),
        };
    }
    let b = buffer(obj).map_err(|_| PyValueError::new_err("invalid UUID: give an int or 16 bytes"))?;
    let arr: [u8; 16] = b
        .as_slice()
        .try_into()
        .map_err(|_| PyValueError::new_err(format!("invalid UUID length: {} bytes, not 16", b.len())))?;
    Ok(Uuid::U128(arr))
}

/// A UUID as Pycom returns it: int for 16/32-bit, 16 little-endian bytes for 128-bit.
pub fn uuid_to_py(py: Python<'_>, u: Uuid) -> PyObject {
    match u {
        Uuid::U16(v) => v.into_py(py),
        Uuid::U32(v) => v.into_py(py),
        Uuid::U128(b) => PyBytes::new_bound(py, &b).into_any().unbind(),
    }
}

/// A characteristic value: an int big-endian in 1, 2 or 4 bytes (the smallest that holds it),
/// a str as UTF-8, or a buffer.
pub fn value(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if obj.is_instance_of::<PyInt>() {
        let v: i128 = obj.extract().map_err(|_| PyValueError::new_err("value out of range"))?;
        return match v {
            0..=0xFF => Ok(vec![v as u8]),
            0x100..=0xFFFF => Ok((v as u16).to_be_bytes().to_vec()),
            0x1_0000..=0xFFFF_FFFF => Ok((v as u32).to_be_bytes().to_vec()),
            _ => Err(PyValueError::new_err("value out of range: an int value must be 0..0xFFFFFFFF")),
        };
    }
    let v = buffer(obj)?;
    if v.len() > gattling::proto::gatt::db::MAX_VALUE_LEN {
        return Err(PyValueError::new_err(format!(
            "value too long: {} bytes (at most {})",
            v.len(),
            gattling::proto::gatt::db::MAX_VALUE_LEN
        )));
    }
    Ok(v)
}

/// A MAC: a 12-hex-digit string (colons allowed) or 6 raw bytes, most significant first.
pub fn mac(obj: &Bound<'_, PyAny>) -> PyResult<[u8; 6]> {
    if let Ok(s) = obj.downcast::<PyString>() {
        let s: String = s.extract::<String>()?.chars().filter(|c| *c != ':').collect();
        if s.len() != 12 || !s.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(PyValueError::new_err("invalid address: give 12 hex digits or 6 bytes"));
        }
        let mut out = [0u8; 6];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| PyValueError::new_err("invalid address"))?;
        }
        return Ok(out);
    }
    let b = buffer(obj).map_err(|_| PyTypeError::new_err("address must be a str or a bytes object"))?;
    b.as_slice().try_into().map_err(|_| PyValueError::new_err("invalid address: give 12 hex digits or 6 bytes"))
}
