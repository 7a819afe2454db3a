//! Panics during a case, told apart by case: each case runs on one thread (its
//! runtime is single-threaded), which the panic hook reads.

use std::cell::Cell;
use std::sync::{Mutex, Once};

thread_local! {
    static CASE: Cell<Option<u64>> = const { Cell::new(None) };
}

static CAUGHT: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());

/// Routes the panics of threads running a case to that case (others go on to the
/// hook there was).
pub(crate) fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| match CASE.get() {
            Some(case) => {
                let payload = info.payload();
                let message = payload
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("a panic without a message");
                let place = info
                    .location()
                    .map_or("an unknown place".into(), |l| l.to_string());
                CAUGHT
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push((case, format!("{message} (at {place})")));
            }
            None => previous(info),
        }));
    });
}

/// Runs `run` on this thread as case `case`, and returns what it returned with the
/// panics it caused.
pub(crate) fn during<T>(case: u64, run: impl FnOnce() -> T) -> (T, Vec<String>) {
    CASE.set(Some(case));
    let out = run();
    CASE.set(None);
    let mut caught = CAUGHT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (mine, others) = caught.drain(..).partition(|(c, _)| *c == case);
    *caught = others;
    (out, mine.into_iter().map(|(_, message)| message).collect())
}
