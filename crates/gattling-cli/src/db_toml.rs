//! `gattling serve --db FILE.toml`: a GATT database declared in TOML, validated as a whole
//! before anything starts. Every error is one line naming the file, the line and the field.
//!
//! See `examples/sensor.toml` for the commented format.

use crate::names;
use gattling::proto::gatt::{CharacteristicDef, Permissions, Properties, ServiceDef};
use gattling::proto::Uuid;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use toml::Spanned;

/// Largest attribute value (Core Vol 3 Part F §3.2.9).
const MAX_VALUE_LEN: usize = 512;
const CCCD: u16 = 0x2902;
const EXTENDED_PROPERTIES: u16 = 0x2900;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default, rename = "service")]
    services: Vec<ServiceToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceToml {
    id: Option<Spanned<String>>,
    uuid: Spanned<String>,
    #[serde(default)]
    secondary: bool,
    handle: Option<Spanned<u16>>,
    #[serde(default)]
    includes: Vec<Spanned<String>>,
    #[serde(default, rename = "characteristic")]
    characteristics: Vec<CharToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CharToml {
    uuid: Spanned<String>,
    properties: Spanned<Vec<Spanned<String>>>,
    permissions: Option<Spanned<Vec<Spanned<String>>>>,
    value: Option<Spanned<ValueToml>>,
    max_len: Option<Spanned<usize>>,
    description: Option<String>,
    format: Option<Spanned<FormatToml>>,
    handle: Option<Spanned<u16>>,
    /// Extended properties bits (bit 0 reliable write, bit 1 writable auxiliaries).
    extended_properties: Option<u16>,
    #[serde(default, rename = "descriptor")]
    descriptors: Vec<DescToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DescToml {
    uuid: Spanned<String>,
    value: Option<Spanned<ValueToml>>,
    permissions: Option<Spanned<Vec<Spanned<String>>>>,
    max_len: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ValueToml {
    /// UTF-8 text.
    Text(String),
    /// One byte.
    Byte(u8),
    /// Bytes given one by one.
    Bytes(Vec<u8>),
    /// `{ hex = "..." }` or `{ u16 = N }` and friends (little-endian).
    Table(ValueTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValueTable {
    hex: Option<String>,
    u8: Option<u8>,
    u16: Option<u16>,
    u32: Option<u32>,
    u64: Option<u64>,
    i8: Option<i8>,
    i16: Option<i16>,
    i32: Option<i32>,
    i64: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FormatToml {
    format: String,
    #[serde(default)]
    exponent: i8,
    /// Unit UUID (0x2700 unitless).
    #[serde(default = "unitless")]
    unit: u16,
    #[serde(default = "sig_namespace")]
    namespace: u8,
    #[serde(default)]
    description: u16,
}

fn unitless() -> u16 {
    0x2700
}
fn sig_namespace() -> u8 {
    1
}

/// One service ready to add: its definition, its id and the ids of the services it includes.
#[derive(Debug)]
pub struct ServiceSpec {
    pub def: ServiceDef,
    pub id: Option<String>,
    pub includes: Vec<String>,
}

/// A validated database file.
#[derive(Debug)]
pub struct Db {
    pub services: Vec<ServiceSpec>,
}

/// Reports errors as `FILE:LINE: FIELD: what`.
struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text.get(..offset).unwrap_or(self.text).bytes().filter(|&b| b == b'\n').count() + 1
    }

    fn err(&self, span: std::ops::Range<usize>, field: &str, msg: impl std::fmt::Display) -> String {
        format!("{}:{}: {field}: {msg}", self.file, self.line(span.start))
    }
}

/// Reads and validates a database file.
pub fn load(path: &Path) -> Result<Db, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--db {}: cannot read: {e}", path.display()))?;
    parse(&path.display().to_string(), &text)
}

/// Validates a database given as text; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Db, String> {
    let cx = Ctx { file, text };
    let doc: FileToml = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| cx.line(s.start)).unwrap_or(0);
        let msg = e.message().trim().replace('\n', " ");
        format!("{file}:{line}: {msg}")
    })?;
    if doc.services.is_empty() {
        return Err(format!("{file}:1: no [[service]] defined"));
    }
    let mut handles: HashMap<u16, (usize, String)> = HashMap::new();
    let mut claim = |h: u16, span: std::ops::Range<usize>, field: &str| -> Result<(), String> {
        if let Some((line, other)) = handles.get(&h) {
            return Err(cx.err(span, field, format!("handle {h:#06x} is already used by {other} (line {line})")));
        }
        handles.insert(h, (cx.line(span.start), field.to_string()));
        Ok(())
    };
    let mut ids: Vec<String> = Vec::new();
    let mut services = Vec::new();
    for (si, s) in doc.services.iter().enumerate() {
        let sf = format!("service[{si}]");
        let uuid = uuid_at(&cx, &s.uuid, &format!("{sf}.uuid"))?;
        let mut def = if s.secondary { ServiceDef::secondary(uuid) } else { ServiceDef::primary(uuid) };
        if let Some(h) = &s.handle {
            let field = format!("{sf}.handle");
            if *h.get_ref() == 0 {
                return Err(cx.err(h.span(), &field, "handle 0 is reserved"));
            }
            claim(*h.get_ref(), h.span(), &field)?;
            def = def.at_handle(*h.get_ref());
        }
        let mut includes = Vec::new();
        for inc in &s.includes {
            if !ids.contains(inc.get_ref()) {
                return Err(cx.err(
                    inc.span(),
                    &format!("{sf}.includes"),
                    format!("no service with id {:?} defined before this one", inc.get_ref()),
                ));
            }
            includes.push(inc.get_ref().clone());
        }
        for (ci, c) in s.characteristics.iter().enumerate() {
            let cf = format!("{sf}.characteristic[{ci}]");
            def = def.characteristic(characteristic(&cx, c, &cf, &mut claim)?);
        }
        if let Some(id) = &s.id {
            if ids.contains(id.get_ref()) {
                return Err(cx.err(id.span(), &format!("{sf}.id"), format!("id {:?} is used twice", id.get_ref())));
            }
            ids.push(id.get_ref().clone());
        }
        services.push(ServiceSpec { def, id: s.id.as_ref().map(|i| i.get_ref().clone()), includes });
    }
    Ok(Db { services })
}

fn uuid_at(cx: &Ctx<'_>, s: &Spanned<String>, field: &str) -> Result<Uuid, String> {
    names::parse_uuid(s.get_ref()).map_err(|e| cx.err(s.span(), field, e))
}

fn characteristic(
    cx: &Ctx<'_>,
    c: &CharToml,
    cf: &str,
    claim: &mut impl FnMut(u16, std::ops::Range<usize>, &str) -> Result<(), String>,
) -> Result<CharacteristicDef, String> {
    let uuid = uuid_at(cx, &c.uuid, &format!("{cf}.uuid"))?;
    let mut props = Properties::empty();
    for p in c.properties.get_ref() {
        props |= match p.get_ref().as_str() {
            "broadcast" => Properties::BROADCAST,
            "read" => Properties::READ,
            "write-without-response" => Properties::WRITE_WITHOUT_RESPONSE,
            "write" => Properties::WRITE,
            "notify" => Properties::NOTIFY,
            "indicate" => Properties::INDICATE,
            "signed-write" => Properties::AUTHENTICATED_SIGNED_WRITES,
            other => {
                return Err(cx.err(
                    p.span(),
                    &format!("{cf}.properties"),
                    format!(
                        "unknown property {other:?} (expected broadcast, read, write-without-response, write, notify, indicate, signed-write)"
                    ),
                ))
            }
        };
    }
    let value = match &c.value {
        Some(v) => value_bytes(cx, v, &format!("{cf}.value"))?,
        None => Vec::new(),
    };
    let max_len = match &c.max_len {
        Some(m) if *m.get_ref() > MAX_VALUE_LEN => {
            return Err(cx.err(m.span(), &format!("{cf}.max_len"), format!("{} exceeds 512", m.get_ref())))
        }
        Some(m) => *m.get_ref(),
        None => MAX_VALUE_LEN,
    };
    if let Some(v) = &c.value {
        if value.len() > max_len {
            return Err(cx.err(
                v.span(),
                &format!("{cf}.value"),
                format!("{} bytes is longer than max_len {max_len}", value.len()),
            ));
        }
    }
    let mut def = CharacteristicDef::new(uuid, props, &value).max_len(max_len);
    if let Some(p) = &c.permissions {
        def = def.permissions(permissions(cx, p, &format!("{cf}.permissions"))?);
    }
    if let Some(bits) = c.extended_properties {
        def = def.extended_properties(bits);
    }
    if let Some(h) = &c.handle {
        let field = format!("{cf}.handle");
        if *h.get_ref() < 2 {
            return Err(cx.err(
                h.span(),
                &field,
                "a value handle must be 2 or more (its declaration takes the one before)",
            ));
        }
        claim(h.get_ref() - 1, h.span(), &format!("{field} (declaration)"))?;
        claim(*h.get_ref(), h.span(), &field)?;
        def = def.at_handle(*h.get_ref());
    }
    if let Some(d) = &c.description {
        def = def.user_description(d);
    }
    if let Some(f) = &c.format {
        let fmt = f.get_ref();
        let code = format_code(&fmt.format).ok_or_else(|| {
            cx.err(
                f.span(),
                &format!("{cf}.format.format"),
                format!("unknown format {:?} (e.g. uint8, sint16, utf8s, float32, struct)", fmt.format),
            )
        })?;
        def = def.presentation_format(code, fmt.exponent, fmt.unit, fmt.namespace, fmt.description);
    }
    for (di, d) in c.descriptors.iter().enumerate() {
        let df = format!("{cf}.descriptor[{di}]");
        let duuid = uuid_at(cx, &d.uuid, &format!("{df}.uuid"))?;
        match duuid.as_u16() {
            Some(CCCD) if !props.intersects(Properties::NOTIFY | Properties::INDICATE) => {
                return Err(cx.err(
                    d.uuid.span(),
                    &format!("{df}.uuid"),
                    "a Client Characteristic Configuration needs the notify or indicate property",
                ))
            }
            Some(CCCD) => {
                return Err(cx.err(
                    d.uuid.span(),
                    &format!("{df}.uuid"),
                    "the Client Characteristic Configuration is added automatically for notify/indicate; remove it",
                ))
            }
            Some(EXTENDED_PROPERTIES) => {
                return Err(cx.err(d.uuid.span(), &format!("{df}.uuid"), "use extended_properties = N instead"))
            }
            _ => {}
        }
        let dvalue = match &d.value {
            Some(v) => value_bytes(cx, v, &format!("{df}.value"))?,
            None => Vec::new(),
        };
        let dperm = match &d.permissions {
            Some(p) => permissions(cx, p, &format!("{df}.permissions"))?,
            None => Permissions::READ,
        };
        let dmax = match &d.max_len {
            Some(m) if *m.get_ref() > MAX_VALUE_LEN => {
                return Err(cx.err(m.span(), &format!("{df}.max_len"), format!("{} exceeds 512", m.get_ref())))
            }
            Some(m) => *m.get_ref(),
            None => MAX_VALUE_LEN,
        };
        if let (Some(v), true) = (&d.value, dvalue.len() > dmax) {
            return Err(cx.err(
                v.span(),
                &format!("{df}.value"),
                format!("{} bytes is longer than max_len {dmax}", dvalue.len()),
            ));
        }
        def = def.descriptor_max(duuid, &dvalue, dperm, dmax);
    }
    Ok(def)
}

fn permissions(cx: &Ctx<'_>, list: &Spanned<Vec<Spanned<String>>>, field: &str) -> Result<Permissions, String> {
    let mut p = Permissions::empty();
    for name in list.get_ref() {
        p |= match name.get_ref().as_str() {
            "read" => Permissions::READ,
            "read-encrypted" => Permissions::READ | Permissions::READ_ENCRYPTED,
            "read-authenticated" => Permissions::READ | Permissions::READ_ENCRYPTED | Permissions::READ_AUTHENTICATED,
            "read-authorized" => Permissions::READ | Permissions::READ_AUTHORIZED,
            "write" => Permissions::WRITE,
            "write-encrypted" => Permissions::WRITE | Permissions::WRITE_ENCRYPTED,
            "write-authenticated" => {
                Permissions::WRITE | Permissions::WRITE_ENCRYPTED | Permissions::WRITE_AUTHENTICATED
            }
            "write-authorized" => Permissions::WRITE | Permissions::WRITE_AUTHORIZED,
            other => {
                return Err(cx.err(
                    name.span(),
                    field,
                    format!(
                        "unknown permission {other:?} (expected read, read-encrypted, read-authenticated, read-authorized, write, write-encrypted, write-authenticated, write-authorized)"
                    ),
                ))
            }
        };
    }
    Ok(p)
}

fn value_bytes(cx: &Ctx<'_>, v: &Spanned<ValueToml>, field: &str) -> Result<Vec<u8>, String> {
    let bytes = match v.get_ref() {
        ValueToml::Text(s) => s.as_bytes().to_vec(),
        ValueToml::Byte(b) => vec![*b],
        ValueToml::Bytes(b) => b.clone(),
        ValueToml::Table(t) => {
            let mut forms: Vec<Vec<u8>> = Vec::new();
            if let Some(h) = &t.hex {
                let h: String = h.chars().filter(|c| !c.is_whitespace() && *c != ':').collect();
                let h = h.strip_prefix("0x").unwrap_or(&h);
                if !h.len().is_multiple_of(2) || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(cx.err(v.span(), field, format!("{h:?} is not an even number of hex digits")));
                }
                forms.push(
                    (0..h.len()).step_by(2).filter_map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok()).collect(),
                );
            }
            forms.extend(t.u8.map(|n| n.to_le_bytes().to_vec()));
            forms.extend(t.u16.map(|n| n.to_le_bytes().to_vec()));
            forms.extend(t.u32.map(|n| n.to_le_bytes().to_vec()));
            forms.extend(t.u64.map(|n| n.to_le_bytes().to_vec()));
            forms.extend(t.i8.map(|n| n.to_le_bytes().to_vec()));
            forms.extend(t.i16.map(|n| n.to_le_bytes().to_vec()));
            forms.extend(t.i32.map(|n| n.to_le_bytes().to_vec()));
            forms.extend(t.i64.map(|n| n.to_le_bytes().to_vec()));
            if forms.len() != 1 {
                return Err(cx.err(
                    v.span(),
                    field,
                    "give exactly one of hex, u8, u16, u32, u64, i8, i16, i32, i64 (e.g. { u16 = 72 })",
                ));
            }
            forms.remove(0)
        }
    };
    if bytes.len() > MAX_VALUE_LEN {
        return Err(cx.err(v.span(), field, format!("{} bytes exceeds the 512-byte attribute maximum", bytes.len())));
    }
    Ok(bytes)
}

/// Characteristic Presentation Format types (Assigned Numbers §2.4.1).
fn format_code(name: &str) -> Option<u8> {
    const FORMATS: [&str; 27] = [
        "boolean", "uint2", "uint4", "uint8", "uint12", "uint16", "uint24", "uint32", "uint48", "uint64", "uint128",
        "sint8", "sint12", "sint16", "sint24", "sint32", "sint48", "sint64", "sint128", "float32", "float64", "sfloat",
        "float", "duint16", "utf8s", "utf16s", "struct",
    ];
    FORMATS.iter().position(|f| f.eq_ignore_ascii_case(name)).map(|i| i as u8 + 1)
}

/// Finds the characteristic `--notify-every` names and checks it can notify or indicate.
pub fn notify_target(db: &Db, uuid: &Uuid) -> Result<(), String> {
    let found: Vec<&CharacteristicDef> = db
        .services
        .iter()
        .flat_map(|s| s.def.characteristics.iter())
        .filter(|c| gattling::proto::uuid::same(&c.uuid, uuid))
        .collect();
    match found.as_slice() {
        [] => Err(format!("--notify-every: no characteristic {} in the database", names::uuid_label(uuid))),
        [c] if c.properties.intersects(Properties::NOTIFY | Properties::INDICATE) => Ok(()),
        [_] => Err(format!("--notify-every: {} has neither notify nor indicate", names::uuid_label(uuid))),
        _ => Err(format!("--notify-every: several characteristics are {}", names::uuid_label(uuid))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match parse("db.toml", text) {
            Ok(_) => panic!("should fail:\n{text}"),
            Err(e) => e,
        }
    }

    #[test]
    fn demo_database_in_toml_equals_demo_services() {
        let text = include_str!("../../../examples/demo.toml");
        let db = parse("demo.toml", text).unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<String> = db.services.iter().map(|s| format!("{:?}", s.def)).collect();
        let want: Vec<String> = gattling::gatt::demo_services().iter().map(|s| format!("{s:?}")).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn example_sensor_file_is_valid() {
        let text = include_str!("../../../examples/sensor.toml");
        let db = parse("sensor.toml", text).unwrap_or_else(|e| panic!("{e}"));
        assert!(db.services.len() >= 3);
        assert!(db.services.iter().any(|s| !s.includes.is_empty()));
        assert!(db.services.iter().any(|s| !s.def.primary));
    }

    #[test]
    fn bad_input_is_one_line_naming_the_field_and_the_line() {
        let base = "[[service]]\nuuid = \"180D\"\n\n[[service.characteristic]]\nuuid = \"2A37\"\n";
        let cases: &[(&str, &str)] = &[
            ("properties = [\"read\"]\ncolour = 1\n", "db.toml:7: unknown field `colour`"),
            (
                "properties = [\"read\", \"notifyy\"]\n",
                "db.toml:6: service[0].characteristic[0].properties: unknown property \"notifyy\"",
            ),
            ("properties = \"read\"\n", "db.toml:6: invalid type: string \"read\", expected a sequence"),
            (
                "properties = [\"read\"]\nvalue = { hex = \"0102\" }\nmax_len = 1\n",
                "db.toml:7: service[0].characteristic[0].value: 2 bytes is longer than max_len 1",
            ),
            (
                "properties = [\"read\"]\n[[service.characteristic.descriptor]]\nuuid = \"2902\"\n",
                "db.toml:8: service[0].characteristic[0].descriptor[0].uuid: a Client Characteristic Configuration needs the notify or indicate property",
            ),
            (
                "properties = [\"read\"]\nhandle = 0x20\n[[service.characteristic]]\nuuid = \"2A38\"\nproperties = [\"read\"]\nhandle = 0x21\n",
                "db.toml:11: service[0].characteristic[1].handle (declaration): handle 0x0020 is already used by service[0].characteristic[0].handle (line 7)",
            ),
            ("properties = [\"read\"]\nvalue = { u16 = 70000 }\n", "db.toml:7:"),
            (
                "properties = [\"read\"]\npermissions = [\"read-secretly\"]\n",
                "db.toml:7: service[0].characteristic[0].permissions: unknown permission \"read-secretly\"",
            ),
        ];
        for (tail, want) in cases {
            let e = err(&format!("{base}{tail}"));
            assert!(e.starts_with(want), "got {e:?}\nwant {want:?}");
            assert!(!e.contains('\n'), "{e:?}");
        }
        let e = err("[[service]]\nuuid = \"12\"\n");
        assert!(e.starts_with("db.toml:2: service[0].uuid: \"12\": expected a UUID"), "{e}");
        let e = err("[[service]]\nuuid = \"180F\"\nincludes = [\"battery\"]\n");
        assert!(e.starts_with("db.toml:3: service[0].includes: no service with id \"battery\""), "{e}");
    }

    #[test]
    fn values_in_every_form() {
        let text = "[[service]]\nuuid = \"180D\"\n[[service.characteristic]]\nuuid = \"2A37\"\nproperties = [\"read\"]\nvalue = { i16 = -2 }\n[[service.characteristic]]\nuuid = \"2A38\"\nproperties = [\"read\"]\nvalue = [1, 2]\n[[service.characteristic]]\nuuid = \"2A39\"\nproperties = [\"read\"]\nvalue = \"hi\"\nformat = { format = \"uint8\", unit = 0x27AD }\npermissions = [\"read-encrypted\", \"write-authenticated\"]\n";
        let db = parse("v.toml", text).unwrap_or_else(|e| panic!("{e}"));
        let c = &db.services[0].def.characteristics;
        assert_eq!(c[0].value, vec![0xFE, 0xFF]);
        assert_eq!(c[1].value, vec![1, 2]);
        assert_eq!(c[2].value, b"hi".to_vec());
        assert_eq!(c[2].descriptors[0].value, vec![4, 0, 0xAD, 0x27, 1, 0, 0]);
        assert!(c[2].permissions.contains(Permissions::READ_ENCRYPTED | Permissions::WRITE_AUTHENTICATED));
    }
}
