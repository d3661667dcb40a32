//! The built-in virtual controller on tokio: in-process radios shared by name (transport
//! `virtual` / `virtual:NAME`), and a TCP server that gives every client a fresh controller on
//! one radio, speaking H4 like rootcanal's HCI port.
//!
//! The radio's clock is tokio's: under a paused test clock (`tokio::time::pause`) supervision
//! timeouts and other timers run in virtual time without waiting.

pub use gattling_controller::{ControllerConfig, ControllerId, Fault};
use gattling_controller::{Radio, Relay};
use gattling_proto::gap::BdAddr;
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;

/// What a controller has for its host, with a lock of its own: the host's reads take only this
/// one, never the radio's.
#[derive(Default)]
struct Port {
    /// The host end is closed: its reads end, its writes fail.
    closed: AtomicBool,
    out: Mutex<PortOut>,
}

#[derive(Default)]
struct PortOut {
    waker: Option<Waker>,
    /// H4 bytes for the host: `pending[start..]` not yet read.
    pending: Vec<u8>,
    start: usize,
}

impl Port {
    fn lock(&self) -> MutexGuard<'_, PortOut> {
        self.out.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PortOut {
    /// Drops the bytes already read when all of them were (the buffer keeps its room).
    fn compact(&mut self) {
        if self.start == self.pending.len() {
            self.pending.clear();
            self.start = 0;
        }
    }
}

type Ports = crate::driver::IdMap<ControllerId, Arc<Port>>;

/// The radio's time source for one step, read at most once and only when asked.
struct Clock<'a> {
    epoch: &'a Instant,
    now: Option<u64>,
}

impl Clock<'_> {
    /// Brings the radio's time up to now, running the timers due by then.
    fn advance(&mut self, radio: &mut Radio) {
        let epoch = self.epoch;
        let now = *self.now.get_or_insert_with(|| epoch.elapsed().as_micros() as u64);
        radio.advance(now);
    }
}

/// Readers to wake once the radio is unlocked: usually one or two (the peer, the sender's
/// completions), without allocating.
#[derive(Default)]
struct Wakes {
    few: [Option<Waker>; 2],
    more: Vec<Waker>,
}

impl Wakes {
    fn push(&mut self, w: Waker) {
        match self.few.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some(w),
            None => self.more.push(w),
        }
    }

    fn wake(self) {
        for w in self.few.into_iter().flatten().chain(self.more) {
            w.wake();
        }
    }
}

struct State {
    radio: Radio,
    ports: Ports,
    /// Reused by every radio step for the controllers that have output.
    touched: Vec<ControllerId>,
}

/// A simulated radio with virtual LE controllers on it.
pub struct VirtualRadio {
    state: Mutex<State>,
    timers_changed: Notify,
    timer_running: AtomicBool,
    epoch: Instant,
    name: String,
}

impl std::fmt::Debug for VirtualRadio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualRadio").field("name", &self.name).finish()
    }
}

fn registry() -> &'static Mutex<HashMap<String, Arc<VirtualRadio>>> {
    static R: OnceLock<Mutex<HashMap<String, Arc<VirtualRadio>>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(HashMap::new()))
}

impl VirtualRadio {
    /// A new radio, not registered under any name.
    pub fn new(name: impl Into<String>) -> Arc<VirtualRadio> {
        Arc::new(VirtualRadio {
            state: Mutex::new(State { radio: Radio::default(), ports: Default::default(), touched: Vec::new() }),
            timers_changed: Notify::new(),
            timer_running: AtomicBool::new(false),
            epoch: Instant::now(),
            name: name.into(),
        })
    }

    /// The in-process radio registered under `name` (created on first use). The empty name is
    /// the default radio of the `virtual` transport.
    pub fn named(name: &str) -> Arc<VirtualRadio> {
        let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        reg.entry(name.to_string()).or_insert_with(|| VirtualRadio::new(name)).clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Attaches a new controller and returns the host's end of its HCI transport.
    pub fn attach(self: &Arc<Self>, config: ControllerConfig) -> VirtualController {
        let (id, port) = {
            let mut st = self.lock();
            let id = st.radio.attach(config);
            let port = Arc::new(Port::default());
            st.ports.insert(id, port.clone());
            (id, port)
        };
        self.ensure_timer_task();
        VirtualController { radio: self.clone(), id, port }
    }

    /// Starts the task that runs the radio's timers, if none is running in a live runtime.
    fn ensure_timer_task(self: &Arc<Self>) {
        if self.timer_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.timer_running.store(false, Ordering::Release);
            return;
        };
        rt.spawn(async move {
            struct Running(std::sync::Weak<VirtualRadio>);
            impl Drop for Running {
                fn drop(&mut self) {
                    if let Some(r) = self.0.upgrade() {
                        r.timer_running.store(false, Ordering::Release);
                    }
                }
            }
            let _guard = Running(weak.clone());
            loop {
                let Some(radio) = weak.upgrade() else { return };
                let changed = radio.timers_changed.notified();
                let next = {
                    let st = radio.lock();
                    let next = st.radio.next_timer();
                    if next.is_none() && st.radio.controllers() == 0 {
                        // Nothing to run and nobody attached: stop (decided under the lock that
                        // `attach` takes, so an attach after this point starts a new task).
                        radio.timer_running.store(false, Ordering::Release);
                        return;
                    }
                    next
                };
                match next {
                    Some(us) => {
                        let deadline = radio.epoch + std::time::Duration::from_micros(us);
                        tokio::select! {
                            _ = tokio::time::sleep_until(deadline) => {}
                            _ = changed => {}
                        }
                    }
                    None => changed.await,
                }
                radio.with_radio(|_| {});
            }
        });
    }

    /// Runs `f` on the radio after bringing its clock up to date, then hands every output to
    /// the ports and wakes their readers.
    fn with_radio<T>(&self, f: impl FnOnce(&mut Radio) -> T) -> T {
        self.step(None, |r, _, _, clock| {
            clock.advance(r);
            f(r)
        })
        .unwrap_or_else(|| unreachable!("a step without a port check always runs"))
    }

    /// One step of the radio: `f` runs on it (with the ports, to write to one directly, the
    /// readers to wake, and the clock to bring the radio's time up to date with when what it
    /// does depends on time); then every output goes to its port and the readers are woken.
    /// `None`, without running `f`, when `port` is given and its host end is closed or gone.
    fn step<T>(
        &self,
        port: Option<ControllerId>,
        f: impl FnOnce(&mut Radio, &Ports, &mut Wakes, &mut Clock<'_>) -> T,
    ) -> Option<T> {
        let mut wakes = Wakes::default();
        let result = {
            let mut st = self.lock();
            let State { radio, ports, touched } = &mut *st;
            if port.is_some_and(|id| ports.get(&id).is_none_or(|p| p.closed.load(Ordering::Acquire))) {
                return None;
            }
            let before = radio.next_timer();
            let mut clock = Clock { epoch: &self.epoch, now: None };
            let result = f(radio, ports, &mut wakes, &mut clock);
            if let Some(now) = clock.now {
                if radio.next_timer().is_some_and(|t| t <= now) {
                    radio.advance(now);
                }
            }
            radio.drain_touched(touched);
            for &id in touched.iter() {
                let Some(port) = ports.get(&id) else { continue };
                let mut port = port.lock();
                port.compact();
                radio.take_output_into(id, &mut port.pending);
                if let Some(w) = port.waker.take() {
                    wakes.push(w);
                }
            }
            if radio.has_notes() {
                for (id, what) in radio.take_log() {
                    tracing::debug!(radio = %self.name, controller = id.0, "{what}");
                }
            }
            if radio.next_timer() != before {
                self.timers_changed.notify_one();
            }
            result
        };
        wakes.wake();
        Some(result)
    }

    /// Injects a fault into later ACL traffic.
    pub fn set_fault(&self, fault: Fault) {
        self.with_radio(|r| r.set_fault(fault));
    }

    /// Drops a link as if the radio lost it: both sides see reason 0x08.
    pub fn drop_link(&self, controller: ControllerId, handle: u16) -> bool {
        self.with_radio(|r| r.drop_link(controller, handle))
    }

    /// Makes a controller disappear: its host's transport reads end-of-file and its peers see a
    /// supervision timeout.
    pub fn vanish(&self, controller: ControllerId) {
        let waker = {
            let st = self.lock();
            st.ports.get(&controller).and_then(|p| {
                // Closed before the reader's lock is taken: a read that looks after this sees
                // it, one that looked before left the waker taken here.
                p.closed.store(true, Ordering::Release);
                p.lock().waker.take()
            })
        };
        self.with_radio(|r| r.detach(controller));
        self.wake_timer_if_empty();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Makes every controller on the radio disappear (a controller server going away).
    pub fn shutdown(&self) {
        let ids: Vec<ControllerId> = self.lock().ports.keys().copied().collect();
        for id in ids {
            self.vanish(id);
        }
    }

    /// The controller whose public address is `addr`.
    pub fn controller_by_address(&self, addr: BdAddr) -> Option<ControllerId> {
        let st = self.lock();
        st.ports.keys().copied().find(|id| st.radio.public_address(*id) == Some(addr))
    }

    /// Number of controllers and of live links on the radio.
    pub fn counts(&self) -> (usize, usize) {
        let st = self.lock();
        (st.radio.controllers(), st.radio.links())
    }

    fn detach(&self, id: ControllerId) {
        {
            let mut st = self.lock();
            st.ports.remove(&id);
        }
        self.with_radio(|r| r.detach(id));
        self.wake_timer_if_empty();
    }

    /// Lets the timer task see that the last controller is gone, so it ends.
    fn wake_timer_if_empty(&self) {
        if self.lock().radio.controllers() == 0 {
            self.timers_changed.notify_one();
        }
    }
}

/// The host's end of a virtual controller: an H4 byte stream. Dropping it detaches the
/// controller (its peers then see a supervision timeout).
pub struct VirtualController {
    radio: Arc<VirtualRadio>,
    id: ControllerId,
    port: Arc<Port>,
}

impl VirtualController {
    /// This controller's id on its radio.
    pub fn id(&self) -> ControllerId {
        self.id
    }

    /// The radio it is on.
    pub fn radio(&self) -> &Arc<VirtualRadio> {
        &self.radio
    }
}

impl Drop for VirtualController {
    fn drop(&mut self) {
        self.radio.detach(self.id);
    }
}

impl VirtualController {
    /// The host's transport over this controller: a reader and a writer sharing it (no lock
    /// between them beyond the radio's own); the controller leaves the radio when both are
    /// dropped.
    pub fn into_transport(self, description: impl Into<String>) -> crate::Transport {
        let shared = Arc::new(self);
        crate::Transport::new(VirtualHalf(shared.clone()), VirtualHalf(shared), description)
    }

    fn poll_read_from(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut port = self.port.lock();
        let ready = port.pending.get(port.start..).unwrap_or(&[]);
        if ready.is_empty() {
            if self.port.closed.load(Ordering::Acquire) {
                return Poll::Ready(Ok(()));
            }
            match &mut port.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        let n = buf.remaining().min(ready.len());
        buf.put_slice(&ready[..n]);
        port.start += n;
        if port.start == port.pending.len() {
            port.pending.clear();
            port.start = 0;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_write_to(&self, buf: &[u8]) -> Poll<io::Result<usize>> {
        let id = self.id;
        // A relayed packet needs no clock: the radio's timers run at the next step that reads
        // it or from the timer task, on time either way.
        let taken = self.radio.step(Some(id), |radio, ports, wakes, clock| match radio.relay_acl(id, buf) {
            Relay::General => {
                clock.advance(radio);
                radio.receive(id, buf)
            }
            Relay::Done => {}
            Relay::Deliver { to, header } => {
                // Straight into the peer host's stream, after what the radio queued for it.
                let Some(port) = ports.get(&to) else { return };
                let mut port = port.lock();
                port.compact();
                radio.write_relayed(to, header, buf, &mut port.pending);
                if let Some(w) = port.waker.take() {
                    wakes.push(w);
                }
            }
        });
        match taken {
            Some(()) => Poll::Ready(Ok(buf.len())),
            None => Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "virtual controller is gone"))),
        }
    }
}

impl AsyncRead for VirtualController {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.poll_read_from(cx, buf)
    }
}

impl AsyncWrite for VirtualController {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_to(buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// One end (reader or writer) of [`VirtualController::into_transport`].
struct VirtualHalf(Arc<VirtualController>);

impl AsyncRead for VirtualHalf {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.0.poll_read_from(cx, buf)
    }
}

impl AsyncWrite for VirtualHalf {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.0.poll_write_to(buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Serves virtual controllers over TCP: every client that connects gets a fresh controller on
/// one shared radio and speaks H4 to it, like rootcanal's HCI port. Runs until the listener fails.
pub async fn serve(listener: TcpListener, radio: Arc<VirtualRadio>, config: ControllerConfig) -> io::Result<()> {
    serve_capturing(listener, radio, config, None).await
}

/// Like [`serve`], writing the HCI traffic of each attached host to its own btsnoop file in
/// `btsnoop_dir` (`host-N.btsnoop`, N counting from 1 in the order hosts attach).
pub async fn serve_capturing(
    listener: TcpListener,
    radio: Arc<VirtualRadio>,
    config: ControllerConfig,
    btsnoop_dir: Option<std::path::PathBuf>,
) -> io::Result<()> {
    use crate::btsnoop::{Btsnoop, CaptureRead, Direction};
    let mut attached = 0u32;
    loop {
        let (stream, peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        attached += 1;
        let snoop = match &btsnoop_dir {
            Some(dir) => {
                let path = dir.join(format!("host-{attached}.btsnoop"));
                match Btsnoop::create(&path) {
                    Ok(s) => {
                        tracing::info!(%peer, path = %path.display(), "capturing");
                        Some(s)
                    }
                    Err(e) => {
                        tracing::warn!(%peer, "cannot create {}: {e}", path.display());
                        None
                    }
                }
            }
            None => None,
        };
        let ctrl = radio.attach(config);
        tracing::info!(%peer, controller = ctrl.id().0, "host connected to a virtual controller");
        tokio::spawn(async move {
            let id = ctrl.id().0;
            let (ctrl_r, mut ctrl_w) = tokio::io::split(ctrl);
            let (sock_r, mut sock_w) = stream.into_split();
            let (mut from_host, mut from_ctrl): (
                Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                Box<dyn tokio::io::AsyncRead + Send + Unpin>,
            ) = match &snoop {
                Some(s) => (
                    Box::new(CaptureRead::new(sock_r, s.clone(), Direction::Sent)),
                    Box::new(CaptureRead::new(ctrl_r, s.clone(), Direction::Received)),
                ),
                None => (Box::new(sock_r), Box::new(ctrl_r)),
            };
            let up = tokio::io::copy(&mut from_host, &mut ctrl_w);
            let down = tokio::io::copy(&mut from_ctrl, &mut sock_w);
            // Either direction ending means the host is gone: drop the controller.
            tokio::select! {
                r = up => tracing::info!(%peer, controller = id, "host disconnected ({r:?})"),
                r = down => tracing::info!(%peer, controller = id, "controller closed ({r:?})"),
            }
            if let Some(s) = snoop {
                s.close();
            }
        });
    }
}
