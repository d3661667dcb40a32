//! The machinery under the Python API: one background tokio runtime, one Python callback
//! thread, and blocking calls that release the GIL and honour Ctrl-C.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
static RUNTIME_INIT: Mutex<()> = Mutex::new(());

/// The background runtime (two worker threads named `gattling-rt`), started on first use.
pub fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let _guard = lock(&RUNTIME_INIT);
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("gattling-rt")
        .enable_all()
        .build()
        .map_err(|e| PyOSError::new_err(format!("cannot start the Bluetooth runtime: {e}")))?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Locks a mutex, recovering it if a thread panicked while holding it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Work for the Python callback thread.
pub type Job = Box<dyn FnOnce(Python<'_>) + Send>;

static CALLBACKS: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
/// Set at interpreter exit: the callback thread then takes no more jobs (it must not take the GIL
/// of a finalising interpreter).
pub static SHUTDOWN: AtomicBool = AtomicBool::new(false);

/// Queues `job` for the one callback thread; jobs run in the order they were queued.
pub fn dispatch(job: Job) {
    if SHUTDOWN.load(Ordering::SeqCst) {
        return;
    }
    let tx = CALLBACKS.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new().name("gattling-callbacks".into()).spawn(move || {
            for job in rx {
                if SHUTDOWN.load(Ordering::SeqCst) {
                    break;
                }
                Python::with_gil(|py| {
                    // A panic in a job must not take the thread (and every later callback) down.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(py)));
                });
            }
        });
        if let Err(e) = spawned {
            eprintln!("gattling: cannot start the callback thread: {e}");
        }
        Mutex::new(tx)
    });
    let _ = lock(tx).send(job);
}

/// Runs `fut` on the runtime and waits for it with the GIL released, checking for signals
/// (Ctrl-C raises KeyboardInterrupt and cancels the operation) every 50 ms.
pub fn block_on<T, F>(py: Python<'_>, fut: F) -> PyResult<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let rt = runtime()?;
    let (tx, rx) = mpsc::sync_channel(1);
    let task = rt.spawn(async move {
        let _ = tx.send(fut.await);
    });
    let rx = Mutex::new(rx);
    loop {
        match py.allow_threads(|| lock(&rx).recv_timeout(Duration::from_millis(50))) {
            Ok(v) => return Ok(v),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Err(e) = py.check_signals() {
                    // Cancel the operation and wait (briefly, without the GIL) until its future
                    // is dropped: the runtime's cancellation (e.g. of a connection attempt)
                    // has then started before the next call.
                    task.abort();
                    py.allow_threads(|| {
                        rt.block_on(async move {
                            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
                        })
                    });
                    return Err(e);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(PyOSError::new_err("the Bluetooth runtime stopped during the call"))
            }
        }
    }
}

/// The Python exception for a runtime error: TimeoutError for timeouts, ValueError for
/// arguments the stack refused, OSError otherwise.
pub fn py_err(e: gattling::Error) -> PyErr {
    match e {
        gattling::Error::Timeout(_) => PyTimeoutError::new_err("timed out"),
        gattling::Error::Busy(_) => PyOSError::new_err("operation already in progress"),
        gattling::Error::InvalidArgument(m) => PyValueError::new_err(m),
        other => PyOSError::new_err(other.to_string()),
    }
}

/// Calls a handler as `handler(arg)` or `handler(arg, (event, data))`; a raising handler has its
/// traceback printed and yields `None`.
pub fn call_handler(
    py: Python<'_>,
    handler: &PyObject,
    two_args: bool,
    arg: &PyObject,
    event: u32,
    data: Option<Vec<u8>>,
) -> Option<PyObject> {
    let result = if two_args {
        let data: PyObject = match data {
            Some(d) => pyo3::types::PyBytes::new_bound(py, &d).into_any().unbind(),
            None => py.None(),
        };
        handler.call1(py, (arg.clone_ref(py), (event, data)))
    } else {
        handler.call1(py, (arg.clone_ref(py),))
    };
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            e.print(py);
            None
        }
    }
}

/// Whether a handler accepts two positional arguments (later firmware's `(arg, (event, value))`)
/// rather than one (the seed's form). Decided once, at registration.
pub fn takes_two_args(py: Python<'_>, handler: &Bound<'_, PyAny>) -> bool {
    let attempt = || -> PyResult<bool> {
        let inspect = py.import_bound("inspect")?;
        let sig = inspect.call_method1("signature", (handler,))?;
        Ok(sig.call_method1("bind", (py.None(), py.None())).is_ok())
    };
    attempt().unwrap_or(false)
}
