//! Pycom's MicroPython `network.Bluetooth` API on CPython, backed by gattling.
//!
//! The Python package `gattling` (and its alias `network`) wraps this module; the behaviour and
//! its deviations from the Pycom firmware are described in `python/gattling/network.py`.

// PyO3 0.22's #[pymethods] expansion converts PyErr into PyErr, which clippy flags at every
// method's return type (PyO3/pyo3#4327).
#![allow(clippy::useless_conversion)]

mod conv;
mod rt;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use gattling::gatt::{Characteristic, GattServer, Service};
use gattling::gatt_client::{RemoteCharacteristic, RemoteService};
use gattling::proto::gap::ad::{AdValue, AdvData, AdvDataBuilder};
use gattling::proto::gap::{Address, AddressType, BdAddr};
use gattling::proto::gatt::{CharacteristicDef, Permissions, Properties, ServiceDef};
use gattling::proto::host::Role;
use gattling::proto::Uuid;
use gattling::{
    AdvertisingKind, AdvertisingOptions, ClientOptions, ConnectOptions, Connection, GattClient, Host, HostOptions,
    Notification, ScanOptions,
};
use pyo3::exceptions::{PyOSError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBytes, PyList};
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, JoinHandle};

use rt::{block_on, call_handler, dispatch, lock, py_err, takes_two_args};

const NEW_ADV_EVENT: u32 = 0x01;
const CLIENT_CONNECTED: u32 = 0x02;
const CLIENT_DISCONNECTED: u32 = 0x04;
const CHAR_READ_EVENT: u32 = 0x08;
const CHAR_WRITE_EVENT: u32 = 0x10;
const CHAR_NOTIFY_EVENT: u32 = 0x20;
const CHAR_SUBSCRIBE_EVENT: u32 = 0x80;
const FIFO_LEN: usize = 16;
const DEFAULT_MTU: u16 = 200;
const REASON_USER: u8 = 0x13;

/// A registered Python handler.
struct Handler {
    trigger: u32,
    handler: PyObject,
    arg: PyObject,
    two_args: bool,
}

impl Handler {
    fn new(py: Python<'_>, trigger: u32, handler: &Bound<'_, PyAny>, arg: PyObject) -> Handler {
        Handler { trigger, handler: handler.clone().unbind(), arg, two_args: takes_two_args(py, handler) }
    }

    /// What a `callback(trigger, handler, arg)` call registers: nothing for a `None` handler, the
    /// handler with `arg` (by default the object itself, `owner`) otherwise; TypeError when it
    /// cannot be called.
    fn register(
        py: Python<'_>,
        trigger: u32,
        handler: Option<&Bound<'_, PyAny>>,
        arg: Option<PyObject>,
        owner: impl FnOnce() -> PyObject,
    ) -> PyResult<Option<Handler>> {
        match handler.filter(|h| !h.is_none()) {
            None => Ok(None),
            Some(h) if h.is_callable() => Ok(Some(Handler::new(py, trigger, h, arg.unwrap_or_else(owner)))),
            Some(_) => Err(pyo3::exceptions::PyTypeError::new_err("handler must be callable")),
        }
    }
}

/// The handler of `slot` for `bit`, cloned under the GIL.
fn handler_for(py: Python<'_>, slot: &Option<Handler>, bit: u32) -> Option<(PyObject, PyObject, bool)> {
    slot.as_ref().filter(|h| h.trigger & bit != 0).map(|h| (h.handler.clone_ref(py), h.arg.clone_ref(py), h.two_args))
}

struct AdvEntry {
    mac: [u8; 6],
    addr_type: u8,
    adv_type: u8,
    rssi: i8,
    data: Vec<u8>,
}

/// `set_advertisement_params` as given (Pycom's defaults until then).
#[derive(Clone, Copy)]
struct AdvParams {
    interval_min: u16,
    interval_max: u16,
    adv_type: u8,
    channel_map: u8,
    filter_policy: u8,
}

impl Default for AdvParams {
    fn default() -> Self {
        AdvParams { interval_min: 0x20, interval_max: 0x40, adv_type: 0, channel_map: 7, filter_policy: 0 }
    }
}

struct AdvConfig {
    data: Vec<u8>,
    scan_response: Vec<u8>,
    params: AdvParams,
    enabled: bool,
}

struct ScanCtl {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct BtState {
    host: Option<Host>,
    server: Option<GattServer>,
    transport: String,
    mtu: u16,
    scan: Option<ScanCtl>,
    fifo: VecDeque<AdvEntry>,
    addr_types: HashMap<[u8; 6], u8>,
    events: u32,
    callback: Option<Handler>,
    adv: Option<AdvConfig>,
    adv_params: AdvParams,
    server_conn: Option<u16>,
    next_handle: u16,
    tasks: Vec<AbortHandle>,
    tx_power: HashMap<u8, u8>,
    modem_sleep: bool,
    /// Secure mode: the pin given to `init(pin=...)` or `set_pin()`.
    pin: Option<u32>,
    /// `init(secure_connections=...)` (default True).
    secure_connections: Option<bool>,
    /// The bonds, kept across `init()`/`deinit()` as the firmware keeps them in NVS.
    bonds: Option<Arc<dyn gattling::BondStore>>,
}

/// The bond store of the process (created on first use).
fn bonds(st: &mut BtState) -> Arc<dyn gattling::BondStore> {
    st.bonds
        .get_or_insert_with(|| Arc::new(gattling::MemoryBondStore::new(gattling::security::DEFAULT_BOND_CAPACITY)))
        .clone()
}

/// Removes every bond (Core Vol 3 Part C §9.4): `nvram_erase()`, or `set_pin()` with a new pin.
fn erase_bonds(store: &dyn gattling::BondStore) {
    for b in store.list() {
        let _ = store.remove(&b.peer);
    }
}

/// The pairing options of Pycom's secure mode (Core Vol 3 Part H §2.3): with a pin, IO
/// capability DisplayOnly, bonding, 16-octet keys, MITM protection with Secure Connections
/// (auth_req SC_MITM_BOND) or bonding only without (BOND); without a pin, Just Works.
fn security_options(
    pin: Option<u32>,
    secure_connections: bool,
    store: Arc<dyn gattling::BondStore>,
) -> gattling::SecurityOptions {
    let mut o = gattling::SecurityOptions { bonds: store, secure_connections, ..Default::default() };
    if pin.is_some() {
        o.io_capability = gattling::security::IoCapability::DisplayOnly;
        o.bonding = true;
        o.mitm = secure_connections;
        o.min_key_size = 16;
        o.delegate = Arc::new(ShowPasskey);
    }
    o
}

/// Shows the passkey of a Passkey Entry on stderr: the runtime picks the passkey, so it is not
/// the pin (Core Vol 3 Part H §2.3.5.3).
struct ShowPasskey;

impl gattling::PairingDelegate for ShowPasskey {
    fn display_passkey(&self, passkey: u32) {
        eprintln!("gattling: pairing passkey {passkey:06} (type it on the peer)");
    }
}

fn state() -> &'static Arc<Mutex<BtState>> {
    static STATE: OnceLock<Arc<Mutex<BtState>>> = OnceLock::new();
    STATE.get_or_init(|| Arc::new(Mutex::new(BtState { mtu: DEFAULT_MTU, ..Default::default() })))
}

fn not_initialised() -> PyErr {
    PyOSError::new_err("Bluetooth not initialised: call Bluetooth() or init() first")
}

fn host() -> PyResult<Host> {
    lock(state()).host.clone().ok_or_else(not_initialised)
}

/// Sets Bluetooth event bits and queues the Bluetooth callback if its trigger matches.
fn fire_bt_event(bit: u32) {
    lock(state()).events |= bit;
    dispatch(Box::new(move |py| {
        let h = handler_for(py, &lock(state()).callback, bit);
        if let Some((handler, arg, two)) = h {
            call_handler(py, &handler, two, &arg, bit, None);
        }
    }));
}

fn advertising_options(cfg: &AdvConfig) -> AdvertisingOptions {
    let kind = match cfg.params.adv_type {
        2 => AdvertisingKind::Scannable,
        3 => AdvertisingKind::NonConnectable,
        _ => AdvertisingKind::Connectable,
    };
    AdvertisingOptions {
        kind,
        data: cfg.data.clone(),
        scan_response: cfg.scan_response.clone(),
        interval: cfg.params.interval_min,
        interval_max: cfg.params.interval_max,
        channel_map: cfg.params.channel_map,
        filter_policy: cfg.params.filter_policy,
        auto_restart: false,
    }
}

/// Follows the host's connections: the server-side link's CLIENT_CONNECTED/DISCONNECTED, and
/// advertising restarted after the client leaves (as the firmware does).
async fn watch_links(host: Host, mut rx: tokio::sync::broadcast::Receiver<Notification>) {
    loop {
        match rx.recv().await {
            Ok(Notification::Connected(info)) if info.role == Role::Peripheral => {
                lock(state()).server_conn = Some(info.handle);
                fire_bt_event(CLIENT_CONNECTED);
            }
            Ok(Notification::Disconnected { handle, .. }) => {
                let restart = {
                    let mut st = lock(state());
                    if st.server_conn != Some(handle) {
                        continue;
                    }
                    st.server_conn = None;
                    st.adv.as_ref().filter(|a| a.enabled).map(advertising_options)
                };
                fire_bt_event(CLIENT_DISCONNECTED);
                if let Some(opts) = restart {
                    if let Err(e) = host.advertise(&opts).await {
                        eprintln!("gattling: cannot restart advertising: {e}");
                    }
                }
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        }
    }
}

/// Takes the connections made to us (the GATT server serves them without further ado).
async fn drain_accept(host: Host) {
    while host.accept().await.is_ok() {}
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn address_type_code(kind: AddressType) -> u8 {
    match kind {
        AddressType::Public => 0,
        AddressType::Random => 1,
        AddressType::PublicIdentity => 2,
        _ => 3,
    }
}

fn address_type(code: u8) -> AddressType {
    match code {
        1 => AddressType::Random,
        2 => AddressType::PublicIdentity,
        3 => AddressType::RandomIdentity,
        _ => AddressType::Public,
    }
}

fn stop_scan_now(py: Python<'_>) -> PyResult<()> {
    let ctl = lock(state()).scan.take();
    if let Some(mut ctl) = ctl {
        if let Some(stop) = ctl.stop.take() {
            let _ = stop.send(());
        }
        let _ = block_on(py, ctl.task)?;
    }
    Ok(())
}

fn adv_tuple_type(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static ADV: GILOnceCell<PyObject> = GILOnceCell::new();
    let t = ADV.get_or_try_init(py, || -> PyResult<PyObject> {
        let nt = py.import_bound("collections")?.getattr("namedtuple")?;
        Ok(nt.call1(("adv", ("mac", "addr_type", "adv_type", "rssi", "data")))?.unbind())
    })?;
    Ok(t.bind(py))
}

fn adv_to_py(py: Python<'_>, e: AdvEntry) -> PyResult<PyObject> {
    let t = adv_tuple_type(py)?;
    Ok(t.call1((PyBytes::new_bound(py, &e.mac), e.addr_type, e.adv_type, e.rssi, PyBytes::new_bound(py, &e.data)))?
        .unbind())
}

/// `network.Bluetooth`: one Bluetooth LE stack per process (every instance drives the same one).
#[pyclass(module = "gattling.network", name = "Bluetooth", subclass)]
pub struct Bluetooth;

#[allow(clippy::too_many_arguments)]
#[pymethods]
impl Bluetooth {
    #[new]
    #[pyo3(signature = (id=0, *, mode=None, antenna=None, modem_sleep=None, pin=None, privacy=None, secure_connections=None, mtu=None, transport=None))]
    fn py_new(
        py: Python<'_>,
        id: i64,
        mode: Option<i64>,
        antenna: Option<i64>,
        modem_sleep: Option<bool>,
        pin: Option<i64>,
        privacy: Option<bool>,
        secure_connections: Option<bool>,
        mtu: Option<i64>,
        transport: Option<String>,
    ) -> PyResult<Self> {
        if id != 0 {
            return Err(PyOSError::new_err("only Bluetooth id 0 exists"));
        }
        let any_kw = mode.is_some()
            || antenna.is_some()
            || modem_sleep.is_some()
            || pin.is_some()
            || privacy.is_some()
            || secure_connections.is_some()
            || mtu.is_some()
            || transport.is_some();
        let running = lock(state()).host.is_some();
        if any_kw || !running {
            Bluetooth.init(py, mode, antenna, modem_sleep, pin, privacy, secure_connections, mtu, transport)?;
        }
        Ok(Bluetooth)
    }

    /// Starts (or restarts) the stack on the transport given, `$GATTLING_TRANSPORT`, or the
    /// in-process virtual radio.
    #[pyo3(signature = (*, mode=None, antenna=None, modem_sleep=None, pin=None, privacy=None, secure_connections=None, mtu=None, transport=None))]
    fn init(
        &self,
        py: Python<'_>,
        mode: Option<i64>,
        antenna: Option<i64>,
        modem_sleep: Option<bool>,
        pin: Option<i64>,
        privacy: Option<bool>,
        secure_connections: Option<bool>,
        mtu: Option<i64>,
        transport: Option<String>,
    ) -> PyResult<()> {
        let _ = (mode, privacy);
        if let Some(a) = antenna {
            if !(0..=2).contains(&a) {
                return Err(PyValueError::new_err("invalid antenna type"));
            }
        }
        let pin = match pin {
            Some(p) if !(0..=999_999).contains(&p) => {
                return Err(PyValueError::new_err("Only 6 digit (0-999999) pins are allowed"))
            }
            p => p.map(|p| p as u32),
        };
        let mtu = match mtu {
            None => DEFAULT_MTU,
            Some(m) if (23..=200).contains(&m) => m as u16,
            Some(_) => return Err(PyValueError::new_err("mtu must be 23..200")),
        };
        if lock(state()).host.is_some() {
            self.deinit(py)?;
        }
        let spec = transport
            .or_else(|| std::env::var("GATTLING_TRANSPORT").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "virtual".into());
        let security = {
            let mut st = lock(state());
            if pin.is_some() {
                st.pin = pin;
            }
            if secure_connections.is_some() {
                st.secure_connections = secure_connections;
            }
            security_options(st.pin, st.secure_connections.unwrap_or(true), bonds(&mut st))
        };
        let options = HostOptions { att_mtu: mtu, security, ..HostOptions::default() };
        let spec2 = spec.clone();
        let host = block_on(py, async move { Host::open_with(&spec2, options).await })?
            .map_err(|e| PyOSError::new_err(format!("cannot open Bluetooth controller '{spec}': {e}")))?;
        let server = host.gatt_server(" ", 0);
        let rtm = rt::runtime()?;
        let tasks = vec![
            rtm.spawn(watch_links(host.clone(), host.notifications())).abort_handle(),
            rtm.spawn(drain_accept(host.clone())).abort_handle(),
        ];
        let mut st = lock(state());
        st.host = Some(host);
        st.server = Some(server);
        st.transport = spec;
        st.mtu = mtu;
        st.tasks = tasks;
        st.modem_sleep = modem_sleep.unwrap_or(false);
        Ok(())
    }

    /// Stops scanning and advertising, closes every connection and releases the controller.
    fn deinit(&self, py: Python<'_>) -> PyResult<()> {
        stop_scan_now(py)?;
        let host = lock(state()).host.clone();
        if let Some(host) = host {
            let h = host.clone();
            block_on(py, async move {
                let _ = h.stop_advertising().await;
                for info in h.connections() {
                    if let Ok(c) = h.connection(info.handle) {
                        let _ = tokio::time::timeout(Duration::from_secs(1), c.disconnect(REASON_USER)).await;
                    }
                }
            })?;
        }
        let mut st = lock(state());
        for t in st.tasks.drain(..) {
            t.abort();
        }
        st.host = None;
        st.server = None;
        st.server_conn = None;
        st.next_handle = 0;
        st.fifo.clear();
        if let Some(a) = st.adv.as_mut() {
            a.enabled = false;
        }
        Ok(())
    }

    /// Scans for `timeout` seconds (negative: until stop_scan()); returns at once.
    fn start_scan(&self, py: Python<'_>, timeout: f64) -> PyResult<()> {
        if timeout == 0.0 || timeout.is_nan() {
            return Err(PyValueError::new_err("invalid scan time"));
        }
        let host = host()?;
        {
            let mut st = lock(state());
            if st.scan.as_ref().is_some_and(|s| !s.task.is_finished()) {
                return Err(PyOSError::new_err("operation already in progress"));
            }
            st.scan = None;
            st.fifo.clear();
        }
        let opts = ScanOptions { active: true, interval: 0x50, window: 0x30, filter_duplicates: false };
        let h = host.clone();
        let mut scanner = block_on(py, async move { h.scan(opts).await })?.map_err(py_err)?;
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let deadline = (timeout > 0.0).then(|| tokio::time::Instant::now() + Duration::from_secs_f64(timeout.min(1e9)));
        let task = rt::runtime()?.spawn(async move {
            loop {
                let report = tokio::select! {
                    r = scanner.next() => r,
                    _ = &mut stop_rx => break,
                    _ = sleep_until(deadline) => break,
                };
                let Some(r) = report else { break };
                let mut mac = r.address.addr.0;
                mac.reverse();
                {
                    let mut st = lock(state());
                    let addr_type = address_type_code(r.address.kind);
                    st.addr_types.insert(mac, addr_type);
                    if st.fifo.len() < FIFO_LEN {
                        st.fifo.push_back(AdvEntry {
                            mac,
                            addr_type,
                            adv_type: r.event_type,
                            rssi: r.rssi,
                            data: r.data,
                        });
                    }
                }
                fire_bt_event(NEW_ADV_EVENT);
            }
            let _ = scanner.stop().await;
        });
        lock(state()).scan = Some(ScanCtl { stop: Some(stop_tx), task });
        Ok(())
    }

    /// Stops scanning.
    fn stop_scan(&self, py: Python<'_>) -> PyResult<()> {
        stop_scan_now(py)
    }

    /// Whether a scan runs.
    fn isscanning(&self) -> bool {
        lock(state()).scan.as_ref().is_some_and(|s| !s.task.is_finished())
    }

    /// Pops the oldest advertisement `(mac, addr_type, adv_type, rssi, data)`, or None.
    fn get_adv(&self, py: Python<'_>) -> PyResult<Option<PyObject>> {
        let e = lock(state()).fifo.pop_front();
        e.map(|e| adv_to_py(py, e)).transpose()
    }

    /// Drains the advertisement FIFO into a list.
    fn get_advertisements(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        let entries: Vec<AdvEntry> = lock(state()).fifo.drain(..).collect();
        let list = PyList::empty_bound(py);
        for e in entries {
            list.append(adv_to_py(py, e)?)?;
        }
        Ok(list.unbind())
    }

    /// The first AD structure of `data_type` in `data`: int, bytes, str or None.
    fn resolve_adv_data(&self, py: Python<'_>, data: &Bound<'_, PyAny>, data_type: i64) -> PyResult<PyObject> {
        if data.is_none() {
            return Ok(py.None());
        }
        let data = conv::bytes_only(data)?;
        let t = u8::try_from(data_type).map_err(|_| PyValueError::new_err("invalid advertisement data type"))?;
        Ok(match AdvData::parse_lenient(&data).resolve(t) {
            Some(AdValue::Int(v)) => v.into_py(py),
            Some(AdValue::Bytes(b)) => PyBytes::new_bound(py, b).into_any().unbind(),
            Some(AdValue::Str(s)) => s.into_py(py),
            None => py.None(),
        })
    }

    /// Connects to a peripheral (12 hex digits or 6 bytes); `timeout` in milliseconds, None = no limit.
    #[pyo3(signature = (mac_addr, *, timeout=None, addr_type=None))]
    fn connect(
        &self,
        py: Python<'_>,
        mac_addr: &Bound<'_, PyAny>,
        timeout: Option<i64>,
        addr_type: Option<i64>,
    ) -> PyResult<GATTCConnection> {
        let mac = conv::mac(mac_addr)?;
        let timeout = match timeout {
            None => Duration::from_secs(365 * 24 * 3600),
            Some(t) if t > 0 => Duration::from_millis(t as u64),
            Some(_) => return Err(PyValueError::new_err("timeout must be a positive number of milliseconds")),
        };
        let addr_type = match addr_type {
            None => lock(state()).addr_types.get(&mac).copied().unwrap_or(0),
            Some(t @ 0..=3) => t as u8,
            Some(_) => return Err(PyValueError::new_err("invalid address type")),
        };
        let host = host()?;
        stop_scan_now(py)?;
        let mtu = lock(state()).mtu;
        let mut le = mac;
        le.reverse();
        let peer = Address { addr: BdAddr(le), kind: address_type(addr_type) };
        let h = host.clone();
        let attempt = block_on(py, async move {
            let conn = h.connect(peer, ConnectOptions { timeout, ..ConnectOptions::default() }).await?;
            let client = GattClient::new(conn.clone(), ClientOptions { mtu: Some(mtu) }).await?;
            Ok::<_, gattling::Error>((conn, client))
        });
        // On Ctrl-C the attempt's future is dropped, which cancels it at the controller (the
        // runtime's connect is cancellation-safe; the next connect waits for that to settle).
        let result = attempt?;
        match result {
            Ok((conn, client)) => Ok(GATTCConnection { conn, client }),
            Err(gattling::Error::Timeout(_)) => Err(PyTimeoutError::new_err("timed out")),
            Err(gattling::Error::Busy(_)) => Err(PyOSError::new_err("operation already in progress")),
            Err(_) => Err(PyOSError::new_err("connection refused")),
        }
    }

    /// Registers `handler` for NEW_ADV_EVENT / CLIENT_CONNECTED / CLIENT_DISCONNECTED; None disables.
    #[pyo3(signature = (trigger=None, handler=None, arg=None))]
    fn callback(
        slf: &Bound<'_, Self>,
        trigger: Option<u32>,
        handler: Option<&Bound<'_, PyAny>>,
        arg: Option<PyObject>,
    ) -> PyResult<()> {
        let py = slf.py();
        let trigger = trigger.unwrap_or(0);
        if trigger & !(NEW_ADV_EVENT | CLIENT_CONNECTED | CLIENT_DISCONNECTED) != 0 {
            return Err(PyValueError::new_err("invalid trigger"));
        }
        let h = Handler::register(py, trigger, handler, arg, || slf.clone().into_any().unbind())?;
        lock(state()).callback = h;
        Ok(())
    }

    /// The accumulated event bits, cleared.
    fn events(&self) -> u32 {
        std::mem::take(&mut lock(state()).events)
    }

    /// Sets the advertising data (flags and name) and scan response (manufacturer data, service
    /// data, service UUIDs).
    #[pyo3(signature = (*, name=None, manufacturer_data=None, service_data=None, service_uuid=None))]
    fn set_advertisement(
        &self,
        py: Python<'_>,
        name: Option<&Bound<'_, PyAny>>,
        manufacturer_data: Option<&Bound<'_, PyAny>>,
        service_data: Option<&Bound<'_, PyAny>>,
        service_uuid: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let mut adv = AdvDataBuilder::new().flags(0x06);
        let mut device_name = " ".to_string();
        if let Some(n) = some(name) {
            let n = String::from_utf8(conv::buffer(&n)?).map_err(|_| PyValueError::new_err("name must be UTF-8"))?;
            adv = adv.complete_name(&n);
            device_name = n;
        }
        let mut sr = AdvDataBuilder::new();
        if let Some(m) = some(manufacturer_data) {
            sr = sr.raw(0xFF, &conv::buffer(&m)?);
        }
        if let Some(d) = some(service_data) {
            sr = sr.raw(0x16, &conv::buffer(&d)?);
        }
        if let Some(u) = some(service_uuid) {
            if u.is_instance_of::<pyo3::types::PyInt>() {
                match conv::uuid(&u)? {
                    Uuid::U16(v) => sr = sr.raw(0x03, &v.to_le_bytes()),
                    Uuid::U32(v) => sr = sr.raw(0x05, &v.to_le_bytes()),
                    Uuid::U128(b) => sr = sr.raw(0x07, &b),
                }
            } else {
                let b = conv::buffer(&u)?;
                if b.is_empty() || b.len() % 16 != 0 {
                    return Err(PyOSError::new_err("incorrect service UUID length"));
                }
                sr = sr.raw(0x07, &b);
            }
        }
        let too_long = |e| PyValueError::new_err(format!("advertisement too long: {e}"));
        let data = adv.build().map_err(too_long)?;
        let scan_response = sr.build().map_err(too_long)?;
        self.apply_advertisement(py, Some(data), Some(scan_response))?;
        let server = lock(state()).server.clone();
        if let Some(server) = server {
            if let Some(c) = server.characteristic(Uuid::U16(0x2A00)) {
                c.store_value(device_name.as_bytes());
            }
        }
        Ok(())
    }

    /// Sets the raw advertising data (at most 31 bytes); None does nothing.
    #[pyo3(signature = (data))]
    fn set_advertisement_raw(&self, py: Python<'_>, data: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let Some(data) = data.filter(|d| !d.is_none()) else { return Ok(()) };
        let data = conv::bytes_only(&data)?;
        if data.len() > 31 {
            return Err(PyValueError::new_err("advertisement data too long (at most 31 bytes)"));
        }
        self.apply_advertisement(py, Some(data), None)
    }

    /// Advertising parameters; only those given change.
    #[pyo3(signature = (*, adv_int_min=None, adv_int_max=None, adv_type=None, own_addr_type=None, channel_map=None, adv_filter_policy=None))]
    fn set_advertisement_params(
        &self,
        py: Python<'_>,
        adv_int_min: Option<i64>,
        adv_int_max: Option<i64>,
        adv_type: Option<i64>,
        own_addr_type: Option<i64>,
        channel_map: Option<i64>,
        adv_filter_policy: Option<i64>,
    ) -> PyResult<()> {
        let range = |v: Option<i64>, lo: i64, hi: i64, what: &str| -> PyResult<()> {
            match v {
                Some(v) if !(lo..=hi).contains(&v) => Err(PyValueError::new_err(format!("invalid {what}"))),
                _ => Ok(()),
            }
        };
        range(adv_int_min, 0x20, 0x4000, "adv_int_min")?;
        range(adv_int_max, 0x20, 0x4000, "adv_int_max")?;
        range(adv_type, 0, 4, "adv_type")?;
        range(own_addr_type, 0, 3, "own_addr_type")?;
        range(channel_map, 1, 7, "channel_map")?;
        range(adv_filter_policy, 0, 3, "adv_filter_policy")?;
        if matches!(adv_type, Some(1) | Some(4)) {
            return Err(PyValueError::new_err("directed advertising is not supported"));
        }
        {
            let mut st = lock(state());
            let p = &mut st.adv_params;
            if let Some(v) = adv_int_min {
                p.interval_min = v as u16;
            }
            if let Some(v) = adv_int_max {
                p.interval_max = v as u16;
            }
            if let Some(v) = adv_type {
                p.adv_type = v as u8;
            }
            if let Some(v) = channel_map {
                p.channel_map = v as u8;
            }
            if let Some(v) = adv_filter_policy {
                p.filter_policy = v as u8;
            }
        }
        self.apply_advertisement(py, None, None)
    }

    /// Starts (True) or stops (False) advertising.
    fn advertise(&self, py: Python<'_>, enable: bool) -> PyResult<()> {
        let host = host()?;
        let opts = {
            let mut st = lock(state());
            let params = st.adv_params;
            let cfg = st.adv.get_or_insert_with(|| AdvConfig {
                data: vec![0x02, 0x01, 0x06],
                scan_response: Vec::new(),
                params,
                enabled: false,
            });
            cfg.enabled = enable;
            advertising_options(cfg)
        };
        let connected = lock(state()).server_conn.is_some();
        if enable && connected {
            // Restarted when the client leaves, as after any disconnection.
            return Ok(());
        }
        block_on(py, async move {
            if enable {
                host.advertise(&opts).await
            } else {
                host.stop_advertising().await
            }
        })?
        .map_err(py_err)
    }

    /// Creates a GATT service with room for `nbr_chars` characteristics.
    #[pyo3(signature = (uuid, *, isprimary=true, nbr_chars=1, start=true))]
    fn service(&self, uuid: &Bound<'_, PyAny>, isprimary: bool, nbr_chars: i64, start: bool) -> PyResult<GATTSService> {
        let uuid = conv::uuid(uuid)?;
        if !(1..=64).contains(&nbr_chars) {
            return Err(PyValueError::new_err("nbr_chars must be 1..64"));
        }
        let server = lock(state()).server.clone().ok_or_else(not_initialised)?;
        let handle = {
            let mut st = lock(state());
            if st.next_handle == 0 {
                st.next_handle = server.attributes().iter().map(|a| a.handle).max().unwrap_or(0) + 1;
            }
            let h = st.next_handle;
            let span = 3 * nbr_chars as u16 + 1;
            st.next_handle = h.checked_add(span).ok_or_else(|| PyOSError::new_err("no handles left"))?;
            h
        };
        let svc = Arc::new(Mutex::new(SvcState {
            uuid,
            primary: isprimary,
            handle,
            nbr: nbr_chars as usize,
            chars: Vec::new(),
            registered: None,
            server,
        }));
        if start {
            register(&svc)?;
        }
        Ok(GATTSService { svc })
    }

    /// Closes the connection of the client connected to our GATT server.
    fn disconnect_client(&self, py: Python<'_>) -> PyResult<()> {
        let host = host()?;
        let Some(handle) = lock(state()).server_conn else { return Ok(()) };
        if let Ok(c) = host.connection(handle) {
            block_on(py, async move { c.disconnect(REASON_USER).await })?.map_err(py_err)?;
        }
        Ok(())
    }

    /// The ATT MTU of the client connected to our GATT server, or None.
    fn gatts_mtu(&self) -> PyResult<Option<u16>> {
        let host = host()?;
        let conn = lock(state()).server_conn;
        Ok(conn.and_then(|h| host.att_mtu(h)))
    }

    /// Turns on secure mode with this pin; a pin other than the last one removes every bond
    /// (as the firmware does). The pairing parameters apply from the next `init()`.
    fn set_pin(&self, pin: i64) -> PyResult<()> {
        if !(0..=999_999).contains(&pin) {
            return Err(PyValueError::new_err("Only 6 digit (0-999999) pins are allowed"));
        }
        let mut st = lock(state());
        let store = bonds(&mut st);
        if st.pin != Some(pin as u32) {
            erase_bonds(store.as_ref());
        }
        st.pin = Some(pin as u32);
        Ok(())
    }

    /// Erases the stored bonds (Core Vol 3 Part C §9.4).
    fn nvram_erase(&self) {
        let store = bonds(&mut lock(state()));
        erase_bonds(store.as_ref());
    }

    /// Records or returns the modem-sleep setting.
    #[pyo3(signature = (enable=None))]
    fn modem_sleep(&self, enable: Option<bool>) -> PyResult<Option<bool>> {
        let mut st = lock(state());
        if st.host.is_none() {
            return Err(not_initialised());
        }
        match enable {
            Some(e) => {
                st.modem_sleep = e;
                Ok(None)
            }
            None => Ok(Some(st.modem_sleep)),
        }
    }

    /// Records or returns a TX power level (0..7, i.e. -12..9 dBm) for a TX power type.
    #[pyo3(signature = (r#type, level=None))]
    fn tx_power(&self, r#type: i64, level: Option<i64>) -> PyResult<Option<i64>> {
        if ![0, 9, 10, 11].contains(&r#type) {
            return Err(PyValueError::new_err("invalid TX power type"));
        }
        let mut st = lock(state());
        match level {
            Some(l) if (0..=7).contains(&l) => {
                st.tx_power.insert(r#type as u8, l as u8);
                Ok(None)
            }
            Some(_) => Err(PyValueError::new_err("invalid TX power level")),
            None => {
                let l = st.tx_power.get(&(r#type as u8)).copied().unwrap_or(7);
                Ok(Some([-12, -9, -6, -3, 0, 3, 6, 9][l as usize]))
            }
        }
    }

    /// The `TimeoutError` class (Pycom's `Bluetooth.timeout`).
    #[classattr]
    fn timeout(py: Python<'_>) -> PyObject {
        py.get_type_bound::<PyTimeoutError>().into_any().unbind()
    }

    #[classattr]
    const CONN_ADV: u32 = 0;
    #[classattr]
    const CONN_DIR_ADV: u32 = 1;
    #[classattr]
    const DISC_ADV: u32 = 2;
    #[classattr]
    const NON_CONN_ADV: u32 = 3;
    #[classattr]
    const SCAN_RSP: u32 = 4;
    #[classattr]
    const PUBLIC_ADDR: u32 = 0;
    #[classattr]
    const RANDOM_ADDR: u32 = 1;
    #[classattr]
    const PUBLIC_RPA_ADDR: u32 = 2;
    #[classattr]
    const RANDOM_RPA_ADDR: u32 = 3;
    #[classattr]
    const ADV_BLE_ADDR_TYPE_PUBLIC: u32 = 0;
    #[classattr]
    const ADV_BLE_ADDR_TYPE_RANDOM: u32 = 1;
    #[classattr]
    const ADV_BLE_ADDR_TYPE_RPA_PUBLIC: u32 = 2;
    #[classattr]
    const ADV_BLE_ADDR_TYPE_RPA_RANDOM: u32 = 3;
    #[classattr]
    const ADV_FLAG: u32 = 0x01;
    #[classattr]
    const ADV_16SRV_PART: u32 = 0x02;
    #[classattr]
    const ADV_T16SRV_CMPL: u32 = 0x03;
    #[classattr]
    const ADV_32SRV_PART: u32 = 0x04;
    #[classattr]
    const ADV_32SRV_CMPL: u32 = 0x05;
    #[classattr]
    const ADV_128SRV_PART: u32 = 0x06;
    #[classattr]
    const ADV_128SRV_CMPL: u32 = 0x07;
    #[classattr]
    const ADV_NAME_SHORT: u32 = 0x08;
    #[classattr]
    const ADV_NAME_CMPL: u32 = 0x09;
    #[classattr]
    const ADV_TX_PWR: u32 = 0x0A;
    #[classattr]
    const ADV_DEV_CLASS: u32 = 0x0D;
    #[classattr]
    const ADV_SERVICE_DATA: u32 = 0x16;
    #[classattr]
    const ADV_APPEARANCE: u32 = 0x19;
    #[classattr]
    const ADV_ADV_INT: u32 = 0x1A;
    #[classattr]
    const ADV_32SERVICE_DATA: u32 = 0x20;
    #[classattr]
    const ADV_128SERVICE_DATA: u32 = 0x21;
    #[classattr]
    const ADV_MANUFACTURER_DATA: u32 = 0xFF;
    #[classattr]
    const PROP_BROADCAST: u32 = 0x01;
    #[classattr]
    const PROP_READ: u32 = 0x02;
    #[classattr]
    const PROP_WRITE_NR: u32 = 0x04;
    #[classattr]
    const PROP_WRITE: u32 = 0x08;
    #[classattr]
    const PROP_NOTIFY: u32 = 0x10;
    #[classattr]
    const PROP_INDICATE: u32 = 0x20;
    #[classattr]
    const PROP_AUTH: u32 = 0x40;
    #[classattr]
    const PROP_EXT_PROP: u32 = 0x80;
    #[classattr]
    const PERM_READ: u32 = 0x001;
    #[classattr]
    const PERM_READ_ENCRYPTED: u32 = 0x002;
    #[classattr]
    const PERM_READ_ENC_MITM: u32 = 0x004;
    #[classattr]
    const PERM_WRITE: u32 = 0x010;
    #[classattr]
    const PERM_WRITE_ENCRYPTED: u32 = 0x020;
    #[classattr]
    const PERM_WRITE_ENC_MITM: u32 = 0x040;
    #[classattr]
    const PERM_WRITE_SIGNED: u32 = 0x080;
    #[classattr]
    const PERM_WRITE_SIGNED_MITM: u32 = 0x100;
    #[classattr]
    const CHAR_CONFIG_NOTIFY: u32 = 1;
    #[classattr]
    const CHAR_CONFIG_INDICATE: u32 = 2;
    #[classattr]
    const NEW_ADV_EVENT: u32 = NEW_ADV_EVENT;
    #[classattr]
    const CLIENT_CONNECTED: u32 = CLIENT_CONNECTED;
    #[classattr]
    const CLIENT_DISCONNECTED: u32 = CLIENT_DISCONNECTED;
    #[classattr]
    const CHAR_READ_EVENT: u32 = CHAR_READ_EVENT;
    #[classattr]
    const CHAR_WRITE_EVENT: u32 = CHAR_WRITE_EVENT;
    #[classattr]
    const CHAR_NOTIFY_EVENT: u32 = CHAR_NOTIFY_EVENT;
    #[classattr]
    const CHAR_SUBSCRIBE_EVENT: u32 = CHAR_SUBSCRIBE_EVENT;
    #[classattr]
    const INT_ANT: u32 = 0;
    #[classattr]
    const EXT_ANT: u32 = 1;
    #[classattr]
    const MAN_ANT: u32 = 2;
    #[classattr]
    const ADV_TYPE_IND: u32 = 0;
    #[classattr]
    const ADV_TYPE_DIRECT_IND_HIGH: u32 = 1;
    #[classattr]
    const ADV_TYPE_SCAN_IND: u32 = 2;
    #[classattr]
    const ADV_TYPE_NONCONN_IND: u32 = 3;
    #[classattr]
    const ADV_TYPE_DIRECT_IND_LOW: u32 = 4;
    #[classattr]
    const ADV_CHNL_37: u32 = 1;
    #[classattr]
    const ADV_CHNL_38: u32 = 2;
    #[classattr]
    const ADV_CHNL_39: u32 = 4;
    #[classattr]
    const ADV_CHNL_ALL: u32 = 7;
    #[classattr]
    const ADV_FILTER_ALLOW_SCAN_ANY_CON_ANY: u32 = 0;
    #[classattr]
    const ADV_FILTER_ALLOW_SCAN_WLST_CON_ANY: u32 = 1;
    #[classattr]
    const ADV_FILTER_ALLOW_SCAN_ANY_CON_WLST: u32 = 2;
    #[classattr]
    const ADV_FILTER_ALLOW_SCAN_WLST_CON_WLST: u32 = 3;
    #[classattr]
    const TX_PWR_CONN: u32 = 0;
    #[classattr]
    const TX_PWR_ADV: u32 = 9;
    #[classattr]
    const TX_PWR_SCAN: u32 = 10;
    #[classattr]
    const TX_PWR_DEFAULT: u32 = 11;
    #[classattr]
    const TX_PWR_N12: u32 = 0;
    #[classattr]
    const TX_PWR_N9: u32 = 1;
    #[classattr]
    const TX_PWR_N6: u32 = 2;
    #[classattr]
    const TX_PWR_N3: u32 = 3;
    #[classattr]
    const TX_PWR_0: u32 = 4;
    #[classattr]
    const TX_PWR_P3: u32 = 5;
    #[classattr]
    const TX_PWR_P6: u32 = 6;
    #[classattr]
    const TX_PWR_P9: u32 = 7;
}

fn some<'py>(o: Option<&Bound<'py, PyAny>>) -> Option<Bound<'py, PyAny>> {
    o.filter(|o| !o.is_none()).cloned()
}

impl Bluetooth {
    /// Replaces the advertising data and/or scan response; re-applied at once if advertising.
    fn apply_advertisement(
        &self,
        py: Python<'_>,
        data: Option<Vec<u8>>,
        scan_response: Option<Vec<u8>>,
    ) -> PyResult<()> {
        let (host, opts) = {
            let mut st = lock(state());
            let params = st.adv_params;
            let cfg = st.adv.get_or_insert_with(|| AdvConfig {
                data: vec![0x02, 0x01, 0x06],
                scan_response: Vec::new(),
                params,
                enabled: false,
            });
            if let Some(d) = data {
                cfg.data = d;
            }
            if let Some(s) = scan_response {
                cfg.scan_response = s;
            }
            cfg.params = params;
            let live = cfg.enabled && st.server_conn.is_none();
            let opts = advertising_options(st.adv.as_ref().expect("set above"));
            (st.host.clone(), live.then_some(opts))
        };
        if let (Some(host), Some(opts)) = (host, opts) {
            block_on(py, async move { host.advertise(&opts).await })?.map_err(py_err)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// GATT server

struct CharState {
    uuid: Uuid,
    properties: u8,
    permissions: u16,
    value: Vec<u8>,
    live: Option<Characteristic>,
    callback: Option<Handler>,
}

struct SvcState {
    uuid: Uuid,
    primary: bool,
    handle: u16,
    nbr: usize,
    chars: Vec<Arc<Mutex<CharState>>>,
    registered: Option<Service>,
    server: GattServer,
}

/// Pycom permission bits to the stack's (Core Vol 3 Part F §3.2.5): an encrypted or MITM read
/// (write) permission alone allows reading (writing) on such a link, as in ESP-IDF; signed
/// writes are plain writes here.
fn permissions(p: u16) -> Permissions {
    let mut out = Permissions(p & 0x77);
    if p & 0x07 != 0 {
        out |= Permissions::READ;
    }
    if p & 0x1F0 != 0 {
        out |= Permissions::WRITE;
    }
    out
}

/// (Re)registers a service at its reserved handles with its characteristics so far, keeping
/// their current values, and installs the Python hooks.
fn register(svc: &Arc<Mutex<SvcState>>) -> PyResult<()> {
    let mut s = lock(svc);
    if let Some(old) = s.registered.take() {
        for c in &s.chars {
            let mut c = lock(c);
            if let Some(live) = c.live.take() {
                c.value = live.value();
            }
        }
        s.server.remove_service(&old).map_err(py_err)?;
    }
    let mut def = if s.primary { ServiceDef::primary(s.uuid) } else { ServiceDef::secondary(s.uuid) };
    def = def.at_handle(s.handle);
    for (i, c) in s.chars.iter().enumerate() {
        let c = lock(c);
        def = def.characteristic(
            CharacteristicDef::new(c.uuid, Properties(c.properties), &c.value)
                .permissions(permissions(c.permissions))
                .at_handle(s.handle + 2 + 3 * i as u16),
        );
    }
    let service = s.server.add_service(def).map_err(py_err)?;
    for (c, live) in s.chars.iter().zip(service.characteristics.iter()) {
        install_hooks(c, live);
        lock(c).live = Some(live.clone());
    }
    s.registered = Some(service);
    Ok(())
}

fn install_hooks(cs: &Arc<Mutex<CharState>>, live: &Characteristic) {
    let weak: Weak<Mutex<CharState>> = Arc::downgrade(cs);
    let w = weak.clone();
    live.on_read_request(move |req| {
        let Some(cs) = w.upgrade() else { return req.respond_stored() };
        if !lock(&cs).callback.as_ref().is_some_and(|h| h.trigger & CHAR_READ_EVENT != 0) {
            return req.respond_stored();
        }
        dispatch(Box::new(move |py| {
            let h = handler_for(py, &lock(&cs).callback, CHAR_READ_EVENT);
            let reply = h.and_then(|(handler, arg, two)| call_handler(py, &handler, two, &arg, CHAR_READ_EVENT, None));
            match reply.filter(|r| !r.is_none(py)).map(|r| conv::value(r.bind(py))) {
                Some(Ok(v)) => req.respond(&v),
                Some(Err(e)) => {
                    e.print(py);
                    req.respond_stored()
                }
                None => req.respond_stored(),
            }
        }));
    });
    let w = weak.clone();
    live.on_written(move |_conn, value| {
        let Some(cs) = w.upgrade() else { return };
        if !lock(&cs).callback.as_ref().is_some_and(|h| h.trigger & CHAR_WRITE_EVENT != 0) {
            return;
        }
        let value = value.to_vec();
        dispatch(Box::new(move |py| {
            // The lock guard must not live across the handler (it calls back into the object).
            let found = handler_for(py, &lock(&cs).callback, CHAR_WRITE_EVENT);
            if let Some((handler, arg, two)) = found {
                call_handler(py, &handler, two, &arg, CHAR_WRITE_EVENT, Some(value));
            }
        }));
    });
    live.on_subscribe(move |_conn, _cccd| {
        let Some(cs) = weak.upgrade() else { return };
        if !lock(&cs).callback.as_ref().is_some_and(|h| h.trigger & CHAR_SUBSCRIBE_EVENT != 0) {
            return;
        }
        dispatch(Box::new(move |py| {
            let found = handler_for(py, &lock(&cs).callback, CHAR_SUBSCRIBE_EVENT);
            if let Some((handler, arg, two)) = found {
                call_handler(py, &handler, two, &arg, CHAR_SUBSCRIBE_EVENT, None);
            }
        }));
    });
}

/// A service of our GATT server (Pycom `GATTSService`).
#[pyclass(module = "gattling.network")]
pub struct GATTSService {
    svc: Arc<Mutex<SvcState>>,
}

#[pymethods]
impl GATTSService {
    /// Publishes the service (idempotent).
    fn start(&self) -> PyResult<()> {
        if lock(&self.svc).registered.is_some() {
            return Ok(());
        }
        register(&self.svc)
    }

    /// Withdraws the service (idempotent).
    fn stop(&self) -> PyResult<()> {
        let mut s = lock(&self.svc);
        if let Some(old) = s.registered.take() {
            for c in &s.chars {
                let mut c = lock(c);
                if let Some(live) = c.live.take() {
                    c.value = live.value();
                }
            }
            s.server.remove_service(&old).map_err(py_err)?;
        }
        Ok(())
    }

    /// Adds a characteristic (READ|WRITE|NOTIFY, PERM_READ|PERM_WRITE and b'\x00' by default).
    #[pyo3(signature = (*, uuid, permissions=None, properties=None, value=None))]
    fn characteristic(
        &self,
        uuid: &Bound<'_, PyAny>,
        permissions: Option<i64>,
        properties: Option<i64>,
        value: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<GATTSCharacteristic> {
        let uuid = conv::uuid(uuid)?;
        let properties = match properties {
            None => 0x1A,
            Some(p @ 0..=0xFF) => p as u8,
            Some(_) => return Err(PyValueError::new_err("invalid properties")),
        };
        let permissions = match permissions {
            // Secure mode makes new characteristics need an encrypted link (0x22).
            None if lock(state()).pin.is_some() => 0x22,
            None => 0x11,
            Some(p @ 0..=0x1FF) => p as u16,
            Some(_) => return Err(PyValueError::new_err("invalid permissions")),
        };
        let value = match value.filter(|v| !v.is_none()) {
            None => vec![0],
            Some(v) => conv::value(v)?,
        };
        let cs = Arc::new(Mutex::new(CharState { uuid, properties, permissions, value, live: None, callback: None }));
        let started = {
            let mut s = lock(&self.svc);
            if s.chars.len() >= s.nbr {
                return Err(PyOSError::new_err(format!(
                    "the service has room for {} characteristics (nbr_chars)",
                    s.nbr
                )));
            }
            s.chars.push(cs.clone());
            s.registered.is_some()
        };
        if started {
            register(&self.svc)?;
        }
        Ok(GATTSCharacteristic { cs })
    }
}

/// A characteristic of our GATT server (Pycom `GATTSCharacteristic`).
#[pyclass(module = "gattling.network")]
pub struct GATTSCharacteristic {
    cs: Arc<Mutex<CharState>>,
}

#[pymethods]
impl GATTSCharacteristic {
    /// `value()` returns the stored value as bytes; `value(v)` stores an int, str or bytes and
    /// notifies (or indicates) it to a subscribed client.
    #[pyo3(signature = (value=None))]
    fn value(&self, py: Python<'_>, value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<PyObject>> {
        match value {
            None => {
                let c = lock(&self.cs);
                let v = match &c.live {
                    Some(live) => live.value(),
                    None => c.value.clone(),
                };
                Ok(Some(PyBytes::new_bound(py, &v).into_any().unbind()))
            }
            Some(v) => {
                let v = conv::value(v)?;
                let live = {
                    let mut c = lock(&self.cs);
                    c.value = v.clone();
                    c.live.clone()
                };
                if let Some(live) = live {
                    live.set_value(&v);
                }
                Ok(None)
            }
        }
    }

    /// Registers `handler` for CHAR_READ_EVENT / CHAR_WRITE_EVENT / CHAR_SUBSCRIBE_EVENT; None disables.
    #[pyo3(signature = (trigger=None, handler=None, arg=None))]
    fn callback(
        slf: &Bound<'_, Self>,
        trigger: Option<u32>,
        handler: Option<&Bound<'_, PyAny>>,
        arg: Option<PyObject>,
    ) -> PyResult<()> {
        let py = slf.py();
        let trigger = trigger.unwrap_or(0);
        if trigger & !(CHAR_READ_EVENT | CHAR_WRITE_EVENT | CHAR_SUBSCRIBE_EVENT) != 0 {
            return Err(PyValueError::new_err("invalid trigger"));
        }
        let h = Handler::register(py, trigger, handler, arg, || slf.clone().into_any().unbind())?;
        lock(&slf.borrow().cs).callback = h;
        Ok(())
    }

    /// The accumulated event bits, cleared.
    fn events(&self) -> u32 {
        let live = lock(&self.cs).live.clone();
        live.map(|l| u32::from(l.events())).unwrap_or(0)
    }

    /// The current client's CCCD value (1 notify, 2 indicate), 0 without a client.
    fn config(&self) -> u32 {
        let live = lock(&self.cs).live.clone();
        let conn = lock(state()).server_conn;
        match (live, conn) {
            (Some(l), Some(h)) => u32::from(l.cccd(h)),
            _ => 0,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GATT client

fn closed() -> PyErr {
    PyOSError::new_err("connection already closed")
}

/// A connection we made as central (Pycom `GATTCConnection`).
#[pyclass(module = "gattling.network")]
pub struct GATTCConnection {
    conn: Connection,
    client: GattClient,
}

#[pymethods]
impl GATTCConnection {
    /// Whether the link is up.
    fn isconnected(&self) -> bool {
        self.conn.end().is_none()
    }

    /// Closes the link (nothing happens if it is closed already).
    fn disconnect(&self, py: Python<'_>) -> PyResult<()> {
        if self.conn.end().is_some() {
            return Ok(());
        }
        let c = self.conn.clone();
        match block_on(py, async move { c.disconnect(REASON_USER).await })? {
            Ok(_) | Err(gattling::Error::Disconnected { .. }) => Ok(()),
            Err(e) => Err(py_err(e)),
        }
    }

    /// Discovers the primary services.
    fn services(&self, py: Python<'_>) -> PyResult<Vec<GATTCService>> {
        if self.conn.end().is_some() {
            return Err(closed());
        }
        let client = self.client.clone();
        let services = block_on(py, async move { client.services().await })?.map_err(|e| gatt_err(&self.conn, e))?;
        Ok(services.into_iter().map(|svc| GATTCService { svc, client: self.client.clone() }).collect())
    }

    /// The ATT MTU of the link, or None once it is closed.
    fn get_mtu(&self) -> Option<u16> {
        self.conn.end().is_none().then(|| self.client.mtu())
    }
}

fn gatt_err(conn: &Connection, e: gattling::Error) -> PyErr {
    if conn.end().is_some() {
        return closed();
    }
    py_err(e)
}

/// A service of a remote server (Pycom `GATTCService`).
#[pyclass(module = "gattling.network")]
pub struct GATTCService {
    svc: RemoteService,
    client: GattClient,
}

#[pymethods]
impl GATTCService {
    /// True (only primary services are discovered).
    fn isprimary(&self) -> bool {
        self.svc.is_primary()
    }

    /// int for 16/32-bit UUIDs, 16 little-endian bytes for 128-bit ones.
    fn uuid(&self, py: Python<'_>) -> PyObject {
        conv::uuid_to_py(py, self.svc.uuid())
    }

    /// The instance id (0).
    fn instance(&self) -> u32 {
        0
    }

    /// Discovers the service's characteristics.
    fn characteristics(&self, py: Python<'_>) -> PyResult<Vec<GATTCCharacteristic>> {
        let conn = self.client.connection().clone();
        if conn.end().is_some() {
            return Err(closed());
        }
        let svc = self.svc.clone();
        let chars = block_on(py, async move { svc.characteristics().await })?.map_err(|e| gatt_err(&conn, e))?;
        Ok(chars
            .into_iter()
            .map(|ch| GATTCCharacteristic {
                ch,
                client: self.client.clone(),
                cache: Arc::new(Mutex::new(vec![0])),
                handler: Arc::new(Mutex::new(None)),
                subscribed: Mutex::new(false),
            })
            .collect())
    }
}

/// A characteristic of a remote server (Pycom `GATTCCharacteristic`).
#[pyclass(module = "gattling.network")]
pub struct GATTCCharacteristic {
    ch: RemoteCharacteristic,
    client: GattClient,
    cache: Arc<Mutex<Vec<u8>>>,
    handler: Arc<Mutex<Option<Handler>>>,
    subscribed: Mutex<bool>,
}

impl GATTCCharacteristic {
    fn conn(&self) -> PyResult<Connection> {
        let conn = self.client.connection().clone();
        if conn.end().is_some() {
            return Err(closed());
        }
        Ok(conn)
    }
}

#[pymethods]
impl GATTCCharacteristic {
    /// int for 16/32-bit UUIDs, 16 little-endian bytes for 128-bit ones.
    fn uuid(&self, py: Python<'_>) -> PyObject {
        conv::uuid_to_py(py, self.ch.uuid())
    }

    /// The instance id (0).
    fn instance(&self) -> u32 {
        0
    }

    /// The property bits.
    fn properties(&self) -> u8 {
        self.ch.properties()
    }

    /// Reads the value (and caches it for value()).
    fn read(&self, py: Python<'_>) -> PyResult<PyObject> {
        let conn = self.conn()?;
        let ch = self.ch.clone();
        let v = block_on(py, async move { ch.read().await })?.map_err(|e| gatt_err(&conn, e))?;
        *lock(&self.cache) = v.clone();
        Ok(PyBytes::new_bound(py, &v).into_any().unbind())
    }

    /// Reads the descriptor with this 16-bit UUID; None if the characteristic has none.
    fn read_descriptor(&self, py: Python<'_>, uuid: i64) -> PyResult<Option<PyObject>> {
        let uuid = u16::try_from(uuid).map_err(|_| PyValueError::new_err("descriptor UUID must be 16-bit"))?;
        let conn = self.conn()?;
        let ch = self.ch.clone();
        let client = self.client.clone();
        let v = block_on(py, async move {
            let ds = ch.descriptors().await?;
            match ds.iter().find(|d| d.uuid.as_u16() == Some(uuid)) {
                Some(d) => client.read(d.handle).await.map(Some),
                None => Ok(None),
            }
        })?
        .map_err(|e| gatt_err(&conn, e))?;
        Ok(v.map(|v| PyBytes::new_bound(py, &v).into_any().unbind()))
    }

    /// Writes with a response.
    fn write(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let value = conv::bytes_only(value)?;
        let conn = self.conn()?;
        let ch = self.ch.clone();
        block_on(py, async move { ch.write(&value).await })?.map_err(|e| gatt_err(&conn, e))
    }

    /// The last value read or notified (b'\x00' before any).
    fn value(&self, py: Python<'_>) -> PyObject {
        PyBytes::new_bound(py, &lock(&self.cache)).into_any().unbind()
    }

    /// Enables notifications and calls `handler` for each; trigger must be CHAR_NOTIFY_EVENT.
    #[pyo3(signature = (trigger, handler=None, arg=None))]
    fn callback(
        slf: &Bound<'_, Self>,
        trigger: u32,
        handler: Option<&Bound<'_, PyAny>>,
        arg: Option<PyObject>,
    ) -> PyResult<()> {
        let py = slf.py();
        if trigger != CHAR_NOTIFY_EVENT {
            return Err(PyValueError::new_err("invalid trigger"));
        }
        let this = slf.borrow();
        let h = Handler::register(py, trigger, handler, arg, || slf.clone().into_any().unbind())?;
        *lock(&this.handler) = h;
        let mut subscribed = lock(&this.subscribed);
        if *subscribed {
            return Ok(());
        }
        let conn = this.conn()?;
        let ch = this.ch.clone();
        let cache = this.cache.clone();
        let handler = this.handler.clone();
        block_on(py, async move {
            ch.callback(move |event, value| {
                *lock(&cache) = value.to_vec();
                let value = value.to_vec();
                let handler = handler.clone();
                dispatch(Box::new(move |py| {
                    let found = handler_for(py, &lock(&handler), CHAR_NOTIFY_EVENT);
                    if let Some((h, arg, two)) = found {
                        call_handler(py, &h, two, &arg, u32::from(event), Some(value));
                    }
                }));
            })
            .await
        })?
        .map_err(|e| gatt_err(&conn, e))?;
        *subscribed = true;
        Ok(())
    }
}

#[pyfunction]
fn _shutdown() {
    rt::SHUTDOWN.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// The native module `gattling._gattling`.
#[pymodule]
fn _gattling(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Bluetooth>()?;
    m.add_class::<GATTSService>()?;
    m.add_class::<GATTSCharacteristic>()?;
    m.add_class::<GATTCConnection>()?;
    m.add_class::<GATTCService>()?;
    m.add_class::<GATTCCharacteristic>()?;
    m.add_function(wrap_pyfunction!(_shutdown, m)?)?;
    let atexit = m.py().import_bound("atexit")?;
    atexit.call_method1("register", (m.getattr("_shutdown")?,))?;
    Ok(())
}
