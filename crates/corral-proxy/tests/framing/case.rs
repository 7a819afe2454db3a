//! One case, drawn from (seed, index) alone: the proxy's options, the connections a
//! client opens to it with the requests it writes on each, and the framings the
//! origin answers with.

use std::collections::BTreeMap;
use std::fmt;

use fastrand::Rng;

/// Everything one case does.
/// Where a case's proxy options name the directory of its disk tier.
pub(crate) const DISK: &str = "{disk}";

/// Mixed into a case's seed for its own draw of whether it runs over TLS.
const TLS_DRAW: u64 = 0x7115_7115_7115_7115;

pub(crate) struct Case {
    pub index: u64,
    /// The proxy's options besides its upstream, as TOML.
    pub proxy_options: String,
    /// The client's connections; the last one replays every target (plain GETs) once
    /// the others are done, to see what the cache kept.
    pub connections: Vec<Connection>,
    /// Whether the connections before the replay run at the same time.
    pub concurrent: bool,
    /// Whether the proxy's listener speaks TLS (and every connection with it).
    pub tls: bool,
    /// By target, the answers to its first, second, … request at the origin (the last
    /// one again for any later request).
    pub plans: BTreeMap<String, Vec<Plan>>,
}

/// One connection to the proxy.
pub(crate) struct Connection {
    pub protocol: Protocol,
    pub requests: Vec<Request>,
}

/// How a connection talks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// HTTP/1.1 over a raw socket: all requests written at once, or each after the
    /// previous response.
    Http1 { pipelined: bool },
    /// HTTP/2 with prior knowledge: streams all at once, or one after another.
    H2c { concurrent: bool },
}

/// One request as the client writes it.
pub(crate) struct Request {
    /// Sent as `x-framing-tag`, so the origin can tell which client request it got.
    pub tag: String,
    pub method: String,
    pub target: String,
    pub body: Body,
    pub expect_continue: bool,
    /// `Connection: close`.
    pub close: bool,
    /// A GET's `Range: bytes=first-last`.
    pub range: Option<(u64, u64)>,
}

/// A request body and how it is framed on the wire.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// No body, no framing fields.
    None,
    /// `Content-Length: 0`.
    ZeroLength,
    /// `Content-Length` and the bytes.
    Length(Vec<u8>),
    /// `Transfer-Encoding: chunked` (on HTTP/2: data frames without a length).
    Chunked {
        chunks: Vec<Vec<u8>>,
        extensions: bool,
        trailers: bool,
    },
    /// Both `Content-Length: declared` and `Transfer-Encoding: chunked` (the chunked
    /// body is the real one).
    LengthAndChunked {
        chunks: Vec<Vec<u8>>,
        declared: usize,
        length_first: bool,
    },
    /// `Transfer-Encoding: chunked` followed by these bytes, which are not a valid
    /// chunked body.
    MalformedChunked(Vec<u8>),
}

impl Body {
    /// The content the client means, or `None` when the framing is broken.
    pub(crate) fn content(&self) -> Option<Vec<u8>> {
        match self {
            Body::None | Body::ZeroLength => Some(Vec::new()),
            Body::Length(bytes) => Some(bytes.clone()),
            Body::Chunked { chunks, .. } | Body::LengthAndChunked { chunks, .. } => {
                Some(chunks.concat())
            }
            Body::MalformedChunked(_) => None,
        }
    }

    /// Whether the request carries content (so no cache may answer it, and the origin
    /// must get it).
    pub(crate) fn has_content(&self) -> bool {
        self.content().is_none_or(|c| !c.is_empty())
    }

    /// Whether the server must close the connection after answering (RFC 9112 §6.1:
    /// both lengths; §6.3: a chunked body it cannot read).
    pub(crate) fn demands_close(&self) -> bool {
        matches!(
            self,
            Body::LengthAndChunked { .. } | Body::MalformedChunked(_)
        )
    }
}

impl Request {
    /// The `Range` field's value, if it asks for one.
    pub(crate) fn range_field(&self) -> Option<String> {
        self.range
            .map(|(first, last)| format!("bytes={first}-{last}"))
    }

    /// Whether the server must close the connection after answering this request.
    pub(crate) fn demands_close(&self) -> bool {
        self.close || self.body.demands_close()
    }

    /// Whether only the origin's answer to this very request may answer it: other
    /// methods than GET and HEAD are never served from the cache, nor are requests
    /// with content, nor malformed ones.
    pub(crate) fn answered_only_by_itself(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD") || self.body.has_content()
    }
}

/// How the origin answers one request.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub status: u16,
    pub framing: Framing,
    /// Interim responses sent first (100, 103).
    pub interim: Vec<u16>,
    pub cache_control: Option<&'static str>,
    /// An `ETag`; a conditional request for the target then gets a 304.
    pub etag: bool,
    /// `Age` field lines the origin sends (none, one, two, or one that is no number):
    /// a stored response served from the cache states its own age, once.
    pub age: &'static [&'static str],
    /// Bytes of filler after the id in the body.
    pub padding: usize,
    /// Where chunk boundaries fall.
    pub chunk_seed: u64,
    pub after_body: AfterBody,
    pub then: Then,
    /// A tags field (name, value): a tagged response is stored with its tags (on disk,
    /// in a record with a tags section).
    pub tags: Option<(&'static str, &'static str)>,
}

/// How a response body is framed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Framing {
    Length,
    Chunked {
        extensions: bool,
        trailers: bool,
    },
    /// `Transfer-Encoding: chunked` and a `Content-Length` that disagrees with the
    /// chunked body.
    LengthAndChunked {
        declared: Declared,
        length_first: bool,
    },
    /// No length: the body ends when the origin closes the connection.
    UntilClose,
}

/// The disagreeing `Content-Length` of a response that also says chunked.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Declared {
    Zero,
    Half,
    Over,
}

impl Declared {
    pub(crate) fn of(self, len: usize) -> usize {
        match self {
            Declared::Zero => 0,
            Declared::Half => len / 2,
            Declared::Over => len + 17,
        }
    }
}

/// What the origin writes right after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterBody {
    Nothing,
    /// A line of junk.
    Junk,
    /// A complete second response, which no request asked for.
    SmuggledResponse,
}

/// What the origin does with the connection after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    KeepAlive,
    /// Says `Connection: close`, then closes.
    Close,
    /// Closes without saying so.
    SilentClose,
}

/// The methods requests use: the usual ones and two the proxy cannot know.
const METHODS: [(u32, &str); 9] = [
    (30, "GET"),
    (12, "HEAD"),
    (14, "POST"),
    (7, "PUT"),
    (6, "DELETE"),
    (5, "OPTIONS"),
    (6, "PATCH"),
    (4, "PURGEX"),
    (4, "FOO"),
];

/// Picks one of `choices` with the weights given.
fn pick<T: Copy>(rng: &mut Rng, choices: &[(u32, T)]) -> T {
    let total: u32 = choices.iter().map(|(w, _)| w).sum();
    let mut roll = rng.u32(0..total);
    for &(weight, choice) in choices {
        if roll < weight {
            return choice;
        }
        roll -= weight;
    }
    choices[choices.len() - 1].1
}

impl Case {
    /// The case of this index under this seed.
    pub(crate) fn generate(seed: u64, index: u64) -> Case {
        let mut rng = Rng::with_seed(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let prefix = format!("/f{index}");
        let targets: Vec<String> = (0..3)
            .map(|t| {
                if rng.u32(0..5) == 0 {
                    format!("{prefix}/t{t}?q={}", rng.u32(0..100))
                } else {
                    format!("{prefix}/t{t}")
                }
            })
            .collect();
        // A quarter of the cases store only small bodies; another quarter keep almost
        // nothing in memory, so that stored responses are answered from the disk tier
        // (the runner puts the case's own directory in place of `{disk}`), and half of
        // those hold no body over 64 bytes in memory: a longer one of stated length is
        // written to disk as it arrives and served from there while it does.
        let proxy_options = match rng.u32(0..4) {
            0 => "max-body-bytes = \"1KiB\"\n".to_owned(),
            1 if rng.bool() => {
                format!("max-bytes = \"1KiB\"\nmax-body-bytes = \"64B\"\ndisk = \"{DISK}\"\n")
            }
            1 => format!("max-bytes = \"1KiB\"\ndisk = \"{DISK}\"\n"),
            _ => String::new(),
        };
        let count = pick(&mut rng, &[(50, 1), (35, 2), (15, 3)]);
        let mut connections: Vec<Connection> = (0..count)
            .map(|c| {
                let protocol = if rng.u32(0..5) == 0 {
                    Protocol::H2c {
                        concurrent: rng.bool(),
                    }
                } else {
                    Protocol::Http1 {
                        pipelined: rng.u32(0..5) < 2,
                    }
                };
                let requests = (0..rng.usize(1..=4))
                    .map(|r| {
                        let target = targets[rng.usize(0..targets.len())].clone();
                        Request::generate(&mut rng, format!("{index}.{c}.{r}"), target, protocol)
                    })
                    .collect();
                Connection { protocol, requests }
            })
            .collect();
        let mut arrivals: BTreeMap<String, usize> = BTreeMap::new();
        for request in connections.iter().flat_map(|c| &c.requests) {
            *arrivals.entry(request.target.clone()).or_default() += 1;
        }
        let replay = Connection {
            protocol: Protocol::Http1 { pipelined: false },
            requests: arrivals
                .keys()
                .enumerate()
                .map(|(r, target)| Request {
                    tag: format!("{index}.replay.{r}"),
                    method: "GET".into(),
                    target: target.clone(),
                    body: Body::None,
                    expect_continue: false,
                    close: false,
                    range: None,
                })
                .collect(),
        };
        connections.push(replay);
        let plans = arrivals
            .into_iter()
            .map(|(target, n)| {
                let plans = (0..n + 2).map(|_| Plan::generate(&mut rng)).collect();
                (target, plans)
            })
            .collect();
        Case {
            index,
            proxy_options,
            concurrent: count > 1 && rng.u32(0..4) == 0,
            // Drawn apart, so that a seed's cases are otherwise what they were before.
            tls: Rng::with_seed(seed ^ index ^ TLS_DRAW).u32(0..4) == 0,
            connections,
            plans,
        }
    }

    /// The connections before the replay, and the replay.
    pub(crate) fn split_replay(&self) -> (&[Connection], &Connection) {
        let (replay, rest) = self
            .connections
            .split_last()
            .expect("every case has a replay");
        (rest, replay)
    }
}

impl Request {
    fn generate(rng: &mut Rng, tag: String, target: String, protocol: Protocol) -> Request {
        let method = pick(rng, &METHODS).to_owned();
        let h1 = matches!(protocol, Protocol::Http1 { .. });
        let body = if h1 {
            match pick(rng, &[(45, 0), (8, 1), (17, 2), (14, 3), (8, 4), (4, 5)]) {
                0 => Body::None,
                1 => Body::ZeroLength,
                2 => Body::Length(content(rng)),
                3 => Body::Chunked {
                    chunks: chunked_content(rng),
                    extensions: rng.u32(0..4) == 0,
                    trailers: rng.u32(0..4) == 0,
                },
                4 => {
                    let chunks = chunked_content(rng);
                    let real = chunks.iter().map(Vec::len).sum::<usize>();
                    Body::LengthAndChunked {
                        declared: pick(rng, &[(1, 0), (1, real), (1, real / 2 + 1), (1, real + 5)]),
                        chunks,
                        length_first: rng.bool(),
                    }
                }
                _ => Body::MalformedChunked(
                    if rng.bool() {
                        b"zz\r\nabc\r\n0\r\n\r\n".as_slice()
                    } else {
                        b"3\r\nabcdef\r\n0\r\n\r\n".as_slice()
                    }
                    .to_vec(),
                ),
            }
        } else {
            match pick(rng, &[(50, 0), (10, 1), (25, 2), (15, 3)]) {
                0 => Body::None,
                1 => Body::ZeroLength,
                2 => Body::Length(content(rng)),
                _ => Body::Chunked {
                    chunks: chunked_content(rng),
                    extensions: false,
                    trailers: false,
                },
            }
        };
        let expect_continue = h1 && rng.u32(0..10) == 0;
        let close = h1 && rng.u32(0..12) == 0;
        // Ranges that fall inside a body, past its end, and across it.
        let range = (method == "GET" && rng.u32(0..5) == 0).then(|| {
            let first = rng.u64(0..64);
            (first, first + rng.u64(0..64))
        });
        Request {
            tag,
            method,
            target,
            body,
            expect_continue,
            close,
            range,
        }
    }
}

/// Request content: text, sometimes long, sometimes a request line meant to be
/// smuggled.
fn content(rng: &mut Rng) -> Vec<u8> {
    match pick(rng, &[(70, 0), (15, 1), (15, 2)]) {
        0 => {
            let len = rng.usize(1..48);
            filler(rng, len)
        }
        1 => {
            let len = rng.usize(1000..3000);
            filler(rng, len)
        }
        _ => {
            b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: fuzz.test\r\nx-framing-tag: smuggled\r\n\r\n"
                .to_vec()
        }
    }
}

/// Request content cut into chunks.
fn chunked_content(rng: &mut Rng) -> Vec<Vec<u8>> {
    let content = content(rng);
    chunks(rng, content)
}

/// `len` bytes of letters and digits.
pub(crate) fn filler(rng: &mut Rng, len: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[rng.usize(0..ALPHABET.len())])
        .collect()
}

/// `content` cut into up to four non-empty chunks.
pub(crate) fn chunks(rng: &mut Rng, content: Vec<u8>) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let mut rest = content.as_slice();
    while !rest.is_empty() {
        let take = if chunks.len() == 3 {
            rest.len()
        } else {
            rng.usize(1..=rest.len())
        };
        chunks.push(rest[..take].to_vec());
        rest = &rest[take..];
    }
    chunks
}

impl Plan {
    fn generate(rng: &mut Rng) -> Plan {
        let status = pick(
            rng,
            &[
                (60, 200),
                (3, 203),
                (6, 404),
                (5, 500),
                (7, 204),
                (5, 304),
                (4, 101),
            ],
        );
        let framing = match pick(rng, &[(35, 0), (30, 1), (15, 2), (20, 3)]) {
            0 => Framing::Length,
            1 => Framing::Chunked {
                extensions: rng.u32(0..4) == 0,
                trailers: rng.u32(0..4) == 0,
            },
            2 => Framing::LengthAndChunked {
                declared: pick(
                    rng,
                    &[
                        (2, Declared::Zero),
                        (1, Declared::Half),
                        (1, Declared::Over),
                    ],
                ),
                length_first: rng.bool(),
            },
            _ => Framing::UntilClose,
        };
        let (cache_control, etag) = pick(
            rng,
            &[
                (40, (Some("max-age=60"), false)),
                (20, (Some("no-store"), false)),
                (30, (None, false)),
                (10, (Some("max-age=0, must-revalidate"), true)),
            ],
        );
        Plan {
            status,
            framing,
            interim: pick(
                rng,
                &[
                    (75, [].as_slice()),
                    (10, &[100]),
                    (10, &[103]),
                    (5, &[100, 103]),
                ],
            )
            .to_vec(),
            cache_control,
            etag,
            age: pick(
                rng,
                &[
                    (80, [].as_slice()),
                    (10, &["100"]),
                    (5, &["100", "7"]),
                    (5, &["soon"]),
                ],
            ),
            padding: if rng.u32(0..5) == 0 {
                rng.usize(1000..5000)
            } else {
                rng.usize(0..64)
            },
            chunk_seed: rng.u64(..),
            after_body: pick(
                rng,
                &[
                    (75, AfterBody::Nothing),
                    (10, AfterBody::Junk),
                    (15, AfterBody::SmuggledResponse),
                ],
            ),
            then: pick(
                rng,
                &[
                    (70, Then::KeepAlive),
                    (15, Then::Close),
                    (15, Then::SilentClose),
                ],
            ),
            tags: pick(
                rng,
                &[
                    (70, None),
                    (15, Some(("surrogate-key", "t1 t2"))),
                    (10, Some(("cache-tag", "t1, t3"))),
                    (5, Some(("cache-groups", "\"g1\", \"t2\""))),
                ],
            ),
        }
    }

    /// The answer to a request whose target has no plan (one the client never sent).
    pub(crate) fn plain() -> Plan {
        Plan {
            status: 200,
            framing: Framing::Length,
            interim: Vec::new(),
            cache_control: Some("no-store"),
            etag: false,
            age: &[],
            padding: 0,
            chunk_seed: 0,
            after_body: AfterBody::Nothing,
            then: Then::KeepAlive,
            tags: None,
        }
    }
}

impl fmt::Display for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::None => write!(f, "no body"),
            Body::ZeroLength => write!(f, "Content-Length: 0"),
            Body::Length(bytes) => write!(f, "Content-Length: {}", bytes.len()),
            Body::Chunked {
                chunks,
                extensions,
                trailers,
            } => write!(
                f,
                "chunked {:?}{}{}",
                chunks.iter().map(Vec::len).collect::<Vec<_>>(),
                if *extensions { " +extensions" } else { "" },
                if *trailers { " +trailers" } else { "" }
            ),
            Body::LengthAndChunked {
                chunks,
                declared,
                length_first,
            } => write!(
                f,
                "Content-Length: {declared} and chunked {:?} ({} first)",
                chunks.iter().map(Vec::len).collect::<Vec<_>>(),
                if *length_first { "length" } else { "chunked" }
            ),
            Body::MalformedChunked(bytes) => {
                write!(f, "malformed chunked {:?}", String::from_utf8_lossy(bytes))
            }
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] {} {} ({}){}{}{}",
            self.tag,
            self.method,
            self.target,
            self.body,
            if self.expect_continue {
                " Expect: 100-continue"
            } else {
                ""
            },
            if self.close { " Connection: close" } else { "" },
            self.range
                .map(|(first, last)| format!(" Range: bytes={first}-{last}"))
                .unwrap_or_default()
        )
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for status in &self.interim {
            write!(f, "{status}+")?;
        }
        write!(f, "{} {:?}", self.status, self.framing)?;
        if let Some(cache_control) = self.cache_control {
            write!(f, " cache-control: {cache_control}")?;
        }
        if self.etag {
            write!(f, " +etag")?;
        }
        if let Some((name, value)) = self.tags {
            write!(f, " {name}: {value}")?;
        }
        for age in self.age {
            write!(f, " age: {age}")?;
        }
        write!(
            f,
            " padding {}, then {:?}, {:?}",
            self.padding, self.after_body, self.then
        )
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (connections, replay) = self.split_replay();
        writeln!(
            f,
            "proxy options: {:?}{}; {} connection(s){}, then a replay of every target",
            self.proxy_options,
            if self.tls { ", over TLS" } else { "" },
            connections.len(),
            if self.concurrent {
                " at the same time"
            } else {
                " one after another"
            }
        )?;
        for (c, connection) in self.connections.iter().enumerate() {
            let role = if std::ptr::eq(connection, replay) {
                " (replay)"
            } else {
                ""
            };
            writeln!(f, "  connection {c}{role}: {:?}", connection.protocol)?;
            for request in &connection.requests {
                writeln!(f, "    {request}")?;
            }
        }
        writeln!(f, "  origin answers, by target and arrival:")?;
        for (target, plans) in &self.plans {
            writeln!(f, "    {target}:")?;
            for (n, plan) in plans.iter().enumerate() {
                writeln!(f, "      #{n}: {plan}")?;
            }
        }
        Ok(())
    }
}
