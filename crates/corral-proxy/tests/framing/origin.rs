//! The origin: a raw-socket HTTP/1.1 server on 127.0.0.1 that reads each request
//! strictly, keeps every byte each connection brought, every request, every answer
//! and every framing violation, and answers with the case's planned framings.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::answer::{Answering, ETAG, Rendered, render};
use crate::case::Plan;
use crate::wire::{
    Framing, Inbound, Malformed, RequestHead, Stop, chunked_body, exactly, request_framing,
    request_head,
};

/// How long the origin waits for the rest of a message once its first byte came: on
/// loopback, bytes that take longer are bytes the proxy never sends.
pub(crate) const PATIENCE: Duration = Duration::from_secs(1);

/// A running origin.
pub(crate) struct Origin {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Log>>,
    /// Connections in the middle of a request.
    busy: Arc<AtomicUsize>,
}

/// What the origin saw and said.
#[derive(Default)]
pub(crate) struct Log {
    /// The bytes each connection brought, by connection (in order of acceptance).
    pub received: Vec<Vec<u8>>,
    pub arrivals: Vec<Arrival>,
    /// Every response written, by id.
    pub answers: HashMap<String, Answer>,
    pub violations: Vec<Violation>,
    /// Requests so far, by target (which plan answers the next one).
    counts: HashMap<String, usize>,
}

/// One request as the origin read it.
pub(crate) struct Arrival {
    pub connection: usize,
    /// Its `x-framing-tag`: which client request it claims to be.
    pub tag: Option<String>,
    pub method: String,
    pub target: String,
    pub content_length: Option<String>,
    pub chunked: bool,
    pub expect_continue: bool,
    /// Its `Range`.
    pub range: Option<String>,
    /// The body, decoded (what was read of it, if it was cut short).
    pub body: Vec<u8>,
    pub state: State,
}

/// How far a request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// Its body is still being read.
    Reading,
    /// Read whole and answered with this id.
    Answered(String),
    /// Its body never came whole.
    CutShort(CutShort),
}

/// Why a request's body never came whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CutShort {
    /// The proxy closed the connection.
    Closed,
    /// The proxy sent nothing more for [`PATIENCE`].
    Silent,
    /// Its framing broke.
    Malformed(String),
}

/// One response the origin wrote.
pub(crate) struct Answer {
    /// The request it answers (by index into the arrivals), or `None` for a response
    /// written after another one, answering nothing.
    pub arrival: Option<usize>,
    pub target: String,
    pub status: u16,
    pub body: Vec<u8>,
}

/// A request the origin received that no correct proxy sends.
pub(crate) struct Violation {
    pub connection: usize,
    pub what: String,
}

impl Log {
    /// The request that an answer answers.
    pub(crate) fn arrival_of(&self, answer: &Answer) -> Option<&Arrival> {
        answer.arrival.and_then(|a| self.arrivals.get(a))
    }
}

/// Counts a connection as busy while it lives.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn enter(count: &Arc<AtomicUsize>) -> Busy {
        count.fetch_add(1, Ordering::SeqCst);
        Busy(count.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What every connection of one origin shares.
#[derive(Clone)]
struct Shared {
    case: u64,
    plans: Arc<BTreeMap<String, Vec<Plan>>>,
    log: Arc<Mutex<Log>>,
    busy: Arc<AtomicUsize>,
}

impl Origin {
    /// Starts an origin for case `case`, answering by `plans`.
    pub(crate) async fn start(case: u64, plans: BTreeMap<String, Vec<Plan>>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the origin");
        let addr = listener.local_addr().expect("the origin's address");
        let shared = Shared {
            case,
            plans: Arc::new(plans),
            log: Arc::default(),
            busy: Arc::default(),
        };
        let origin = Origin {
            addr,
            log: shared.log.clone(),
            busy: shared.busy.clone(),
        };
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let connection = {
                    let mut log = shared.log.lock().unwrap();
                    log.received.push(Vec::new());
                    log.received.len() - 1
                };
                tokio::spawn(serve(stream, connection, shared.clone()));
            }
        });
        origin
    }

    /// Waits until no connection is in the middle of a request (at most a little
    /// longer than the origin's patience).
    pub(crate) async fn settled(&self) {
        let give_up = Instant::now() + PATIENCE * 2;
        while self.busy.load(Ordering::SeqCst) > 0 && Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Reads requests off one connection and answers them, until either side closes.
async fn serve(stream: TcpStream, connection: usize, shared: Shared) {
    let (read, mut write) = stream.into_split();
    let tap = {
        let log = shared.log.clone();
        Box::new(move |bytes: &[u8]| {
            log.lock().unwrap().received[connection].extend_from_slice(bytes)
        })
    };
    let mut inbound = Inbound::new(read, Some(tap));
    loop {
        if !matches!(inbound.await_bytes(None).await, Ok(true)) {
            return;
        }
        let busy = Busy::enter(&shared.busy);
        let Some((index, head)) = read_request(&mut inbound, connection, &shared).await else {
            return;
        };
        let rendered = answer(&shared, index, &head);
        if write.write_all(&rendered.wire).await.is_err() {
            return;
        }
        drop(busy);
        if rendered.closes {
            let _ = write.shutdown().await;
            inbound.drain(PATIENCE).await;
            return;
        }
    }
}

/// Reads one request whole and logs it as an arrival (its index, and its head); or
/// logs why it could not, and gives up on the connection.
async fn read_request(
    inbound: &mut Inbound,
    connection: usize,
    shared: &Shared,
) -> Option<(usize, RequestHead)> {
    let violation = |what: String| {
        shared
            .log
            .lock()
            .unwrap()
            .violations
            .push(Violation { connection, what })
    };
    let deadline = Some(Instant::now() + PATIENCE);
    let head = match inbound.parse(deadline, request_head).await {
        Ok(head) => head,
        Err(stop) => {
            violation(match stop {
                Stop::Malformed(Malformed(why)) => format!("bytes that are not a request: {why}"),
                Stop::Closed => "a request head cut off by the connection's end".into(),
                Stop::TimedOut => format!("a request head left unfinished for {PATIENCE:?}"),
            });
            return None;
        }
    };
    let fields = &head.fields;
    let index = {
        let mut log = shared.log.lock().unwrap();
        log.arrivals.push(Arrival {
            connection,
            tag: fields.get("x-framing-tag"),
            method: head.method.clone(),
            target: head.target.clone(),
            content_length: fields.get("content-length"),
            chunked: fields.all("transfer-encoding").next().is_some(),
            expect_continue: fields.lists("expect", "100-continue"),
            range: fields.get("range"),
            body: Vec::new(),
            state: State::Reading,
        });
        log.arrivals.len() - 1
    };
    let request = format!("`{} {}`", head.method, head.target);
    let body = match request_framing(fields) {
        Ok(Framing::Empty | Framing::UntilClose) => Ok(Vec::new()),
        Ok(Framing::Length(n)) => inbound.parse(deadline, exactly(n)).await,
        Ok(Framing::Chunked) => inbound.parse(deadline, chunked_body).await,
        Err(malformed) => Err(Stop::Malformed(malformed)),
    };
    let cut_short = match body {
        Ok(body) => {
            shared.log.lock().unwrap().arrivals[index].body = body;
            return Some((index, head));
        }
        Err(Stop::Malformed(Malformed(why))) => {
            violation(format!("{request}: {why}"));
            CutShort::Malformed(why)
        }
        Err(Stop::Closed) => CutShort::Closed,
        Err(Stop::TimedOut) => CutShort::Silent,
    };
    let mut log = shared.log.lock().unwrap();
    let arrival = &mut log.arrivals[index];
    arrival.body = inbound.buf.clone();
    arrival.state = State::CutShort(cut_short);
    None
}

/// The answer to arrival `index` by its target's plan, logged under a new id.
fn answer(shared: &Shared, index: usize, head: &RequestHead) -> Rendered {
    let mut log = shared.log.lock().unwrap();
    let count = log.counts.entry(head.target.clone()).or_default();
    let plan = shared
        .plans
        .get(&head.target)
        .map(|plans| plans[(*count).min(plans.len() - 1)].clone())
        .unwrap_or_else(Plan::plain);
    *count += 1;
    let id = format!("{}-{}", shared.case, log.answers.len());
    let smuggled_id = format!("{id}s");
    let rendered = render(
        &plan,
        &Answering {
            id: &id,
            smuggled_id: &smuggled_id,
            target: &head.target,
            to_head: head.method == "HEAD",
            matches_etag: head.fields.lists("if-none-match", ETAG),
        },
    );
    let target = &head.target;
    log.answers.insert(
        id.clone(),
        Answer {
            arrival: Some(index),
            target: target.clone(),
            status: rendered.status,
            body: rendered.body.clone(),
        },
    );
    if let Some((smuggled_id, body)) = &rendered.smuggled {
        let answers_nothing = Answer {
            arrival: None,
            target: target.clone(),
            status: 200,
            body: body.clone(),
        };
        log.answers.insert(smuggled_id.clone(), answers_nothing);
    }
    log.arrivals[index].state = State::Answered(id);
    rendered
}
