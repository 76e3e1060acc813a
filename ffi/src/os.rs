//! The few libc calls jetwatch needs, behind safe functions.

use std::time::Duration;

/// CPU time (user + system) this process has used.
pub fn process_cpu_time() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a complete `rusage` into the pointer, which points to zeroed
    // storage of the right type; RUSAGE_SELF is always a valid target.
    let ru = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) != 0 {
            return Duration::ZERO;
        }
        ru.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Tries to open the first of `names` with dlopen and closes it again; returns the name that
/// opened. Used to report which vendor libraries a host has.
pub fn find_library(names: &[&str]) -> Option<String> {
    for n in names {
        // SAFETY: opening a shared library runs its initialisers. The libraries probed are
        // NVIDIA's, ONNX Runtime's and libc, whose initialisers only set up internal state;
        // the handle is dropped (dlclose) at once and no symbol is used.
        if unsafe { libloading::Library::new(*n) }.is_ok() {
            return Some((*n).to_string());
        }
    }
    None
}

/// Installs `handler` for SIGINT and SIGTERM. The handler must be async-signal-safe (store
/// to an atomic, nothing else).
pub fn on_terminate(handler: extern "C" fn(libc::c_int)) {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `sigaction` is given a zero-initialised struct with a valid handler address
        // and an empty mask; the handler only touches atomics (documented requirement).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}
