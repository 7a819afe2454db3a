//! `hit_ratio`: replays a synthetic Zipf trace of web objects through eviction policies
//! at the same memory budget, and prints each one's hit ratio and byte hit ratio.
//!
//! The policies: corral's real memory tier (moka's TinyLFU, through the public
//! `corral::Cache` API); a byte-bounded LRU, the policy of nginx's `proxy_cache`
//! (`ngx_http_file_cache_forced_expire` removes the last node of its LRU queue) and of
//! Varnish's storage (`LRU_NukeOne` in `cache_lru.c` nukes the head of its LRU list);
//! SIEVE (Zhang et al., "SIEVE is Simpler than LRU", NSDI '24); and S3-FIFO (Yang et
//! al., "FIFO queues are all you need for cache eviction", SOSP '23). The simulated
//! policies charge every object what corral's tier charges it (body, key, value and
//! `corral::ENTRY_OVERHEAD`), so the budget buys the same objects in each, and only the
//! policy differs.
//!
//! Two more policies put a budget of memory and disk together: `corral-disk`, corral's
//! real memory tier with a tenth of the budget over a simulation of its disk tier
//! (S3-FIFO as `tier/disk/index.rs` runs it: one read to reach the main queue, every
//! object admitted, files charged in 4 KiB blocks with 512 bytes of header) with the
//! rest; and `nginx-disk`, nginx's `proxy_cache`, an LRU of files over the whole budget,
//! charged the same way. (Varnish's `file` storage evicts by the same LRU as its memory
//! storage: `lru`.)
//!
//! ```text
//! hit_ratio [--requests 10000000] [--urls 1000000] [--seed 1] [--alpha 0.9,1.0]
//!           [--budgets 1%,5%,10%,256MiB] [--policies corral,lru,sieve,s3fifo]
//!           [--threads N]
//! ```
//!
//! Each line: `RESULT fig=hitratio alpha=.. budget=.. policy=.. hit_ratio=..
//! byte_hit_ratio=.. requests=.. budget_bytes=..`, over every request of the trace
//! (cold start included).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use corral_bench::Args;

/// Every URL's key has this many bytes (`/obj/` and seven digits), so every object
/// costs corral the same key bytes, and the simulated policies can charge them too.
const KEY_LEN: usize = 12;

/// What corral's tier charges an entry beyond its body: the key, the value's inline
/// size (a `u32`) and the per-entry overhead.
const ENTRY_COST: u32 = (KEY_LEN + size_of::<u32>() + corral::ENTRY_OVERHEAD) as u32;

/// What a file on disk holds beside its body (corral's record header, key and stored
/// head; nginx's cache header, key and response head are of the same order).
const FILE_OVERHEAD: u32 = 512;
/// The file system's block: a file takes whole blocks.
const BLOCK: u32 = 4096;
/// corral's memory tier's share of a budget split between memory and disk.
const MEMORY_SHARE: u64 = 10;

/// Object sizes: lognormal with this median (bytes)...
const SIZE_MEDIAN: f64 = 16.0 * 1024.0;
/// ...and this sigma (of the underlying normal)...
const SIZE_SIGMA: f64 = 2.0;
/// ...clamped to this range.
const SIZE_MIN: f64 = 64.0;
/// The largest object.
const SIZE_MAX: f64 = 4.0 * 1024.0 * 1024.0;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let requests: usize = number(&args, "--requests", 10_000_000)?;
    let urls: usize = number(&args, "--urls", 1_000_000)?;
    let seed: u64 = number(&args, "--seed", 1)?;
    let threads: usize = number(
        &args,
        "--threads",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    )?;
    let alphas = list(&args, "--alpha", "0.9,1.0", |s| s.parse::<f64>().ok())?;
    let budgets = list(&args, "--budgets", "1%,5%,10%,256MiB", Budget::parse)?;
    let policies = list(
        &args,
        "--policies",
        "corral,lru,sieve,s3fifo",
        PolicyKind::parse,
    )?;
    if urls == 0 || urls > 9_999_999 || requests == 0 || threads == 0 {
        return Err("--urls must be 1..=9999999, --requests and --threads at least 1".into());
    }

    let keys: Vec<Box<str>> = (0..urls).map(|id| format!("/obj/{id:07}").into()).collect();
    let catalog = Catalog::generate(urls, seed);
    let mut traces = Vec::new();
    for &alpha in &alphas {
        let started = Instant::now();
        let trace = Trace::generate(&catalog, alpha, requests, seed);
        eprintln!(
            "TRACE alpha={alpha} requests={requests} urls={urls} seed={seed} distinct_urls={} \
             distinct_bytes={} requested_once={:.3} object_size_p50={} p99={} mean={:.0} \
             max={} ({:.1?})",
            trace.distinct_urls,
            trace.distinct_bytes,
            trace.requested_once,
            catalog.size_percentile(50.0),
            catalog.size_percentile(99.0),
            catalog.mean_size(),
            catalog.size_percentile(100.0),
            started.elapsed(),
        );
        traces.push(trace);
    }

    // Grouped by policy in the order given: by default corral's (through moka, the
    // slowest) first, so the threads end together.
    let mut jobs = Vec::new();
    for &policy in &policies {
        for trace in &traces {
            for &budget in &budgets {
                jobs.push(Job {
                    trace,
                    budget,
                    policy,
                });
            }
        }
    }
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; jobs.len()]);
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads.min(jobs.len()) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(index) else {
                        break;
                    };
                    let started = Instant::now();
                    let outcome = job.run(&catalog, &keys);
                    let (alpha, budget, policy) = (job.trace.alpha, job.budget, job.policy.name());
                    match outcome {
                        Ok(outcome) => {
                            eprintln!(
                                "done alpha={alpha} budget={budget} policy={policy} in {:.1?}",
                                started.elapsed()
                            );
                            let mut results = results.lock().unwrap_or_else(|e| e.into_inner());
                            results[index] = Some(outcome);
                        }
                        Err(error) => {
                            eprintln!(
                                "failed alpha={alpha} budget={budget} policy={policy}: {error}"
                            );
                        }
                    }
                }
            });
        }
    });

    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut rows: Vec<(&Job, Outcome)> = jobs
        .iter()
        .zip(results)
        .filter_map(|(job, outcome)| outcome.map(|o| (job, o)))
        .collect();
    rows.sort_by(|(a, _), (b, _)| {
        let order = |j: &Job| {
            (
                alphas.iter().position(|&x| x == j.trace.alpha),
                budgets.iter().position(|&x| x == j.budget),
                policies.iter().position(|&x| x == j.policy),
            )
        };
        order(a).cmp(&order(b))
    });
    for (job, outcome) in rows {
        println!(
            "RESULT fig=hitratio alpha={} budget={} policy={} hit_ratio={:.4} \
             byte_hit_ratio={:.4} requests={} budget_bytes={}",
            job.trace.alpha,
            job.budget,
            job.policy.name(),
            outcome.hits as f64 / outcome.requests as f64,
            outcome.hit_bytes as f64 / outcome.bytes as f64,
            outcome.requests,
            job.budget.bytes(job.trace.distinct_bytes),
        );
    }
    Ok(())
}

/// The value of `--name` parsed, `default` if absent, an error if unparseable.
fn number<T: std::str::FromStr>(
    args: &Args,
    name: &str,
    default: T,
) -> Result<T, Box<dyn std::error::Error>> {
    match args.text(name) {
        None => Ok(default),
        Some(text) => text
            .replace('_', "")
            .parse()
            .map_err(|_| format!("{name}: cannot parse {text:?}").into()),
    }
}

/// The comma-separated values of `--name` (or of `default`), each parsed by `parse`.
fn list<T>(
    args: &Args,
    name: &str,
    default: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, Box<dyn std::error::Error>> {
    args.text(name)
        .unwrap_or(default)
        .split(',')
        .map(|item| {
            parse(item.trim()).ok_or_else(|| format!("{name}: cannot parse {item:?}").into())
        })
        .collect()
}

/// A deterministic generator (SplitMix64, Steele, Lea and Flood, OOPSLA '14): the
/// trace depends on the seed alone.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (1.0 - self.unit(), self.unit());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Ranks `0..n` drawn with probability proportional to `1 / (rank + 1)^alpha`, by
/// inverting the cumulative distribution (a binary search in a table).
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, alpha: f64) -> Zipf {
        let mut sum = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                sum += (k as f64).powf(-alpha);
                sum
            })
            .collect();
        cdf.iter_mut().for_each(|c| *c /= sum);
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

/// The URLs: each one's object size, and the order of popularity (a random permutation
/// of the ids, so popularity and id, and popularity and size, are unrelated).
struct Catalog {
    sizes: Vec<u32>,
    by_rank: Vec<u32>,
}

impl Catalog {
    fn generate(urls: usize, seed: u64) -> Catalog {
        let mut rng = Rng(seed);
        let mu = SIZE_MEDIAN.ln();
        let sizes = (0..urls)
            .map(|_| {
                (mu + SIZE_SIGMA * rng.normal())
                    .exp()
                    .clamp(SIZE_MIN, SIZE_MAX) as u32
            })
            .collect();
        let mut by_rank: Vec<u32> = (0..urls as u32).collect();
        for i in (1..urls).rev() {
            by_rank.swap(i, rng.below(i + 1));
        }
        Catalog { sizes, by_rank }
    }

    fn size_percentile(&self, p: f64) -> u32 {
        let mut sorted = self.sizes.clone();
        sorted.sort_unstable();
        let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
        sorted[rank.min(sorted.len() - 1)]
    }

    fn mean_size(&self) -> f64 {
        self.sizes.iter().map(|&s| f64::from(s)).sum::<f64>() / self.sizes.len() as f64
    }
}

/// A sequence of requests (URL ids) with Zipf(`alpha`) popularity.
struct Trace {
    alpha: f64,
    requests: Vec<u32>,
    /// URLs requested at least once.
    distinct_urls: usize,
    /// The sum of their bodies: what a cache would need to hold them all.
    distinct_bytes: u64,
    /// The share of distinct URLs requested exactly once.
    requested_once: f64,
}

impl Trace {
    fn generate(catalog: &Catalog, alpha: f64, requests: usize, seed: u64) -> Trace {
        let zipf = Zipf::new(catalog.sizes.len(), alpha);
        let mut rng = Rng(seed ^ 0x7261_6E6B_7320_6F66);
        let requests: Vec<u32> = (0..requests)
            .map(|_| catalog.by_rank[zipf.sample(&mut rng)])
            .collect();
        let mut counts = vec![0u32; catalog.sizes.len()];
        for &id in &requests {
            counts[id as usize] += 1;
        }
        let distinct_urls = counts.iter().filter(|&&c| c > 0).count();
        let once = counts.iter().filter(|&&c| c == 1).count();
        let distinct_bytes = counts
            .iter()
            .zip(&catalog.sizes)
            .filter(|(c, _)| **c > 0)
            .map(|(_, &s)| u64::from(s))
            .sum();
        Trace {
            alpha,
            requests,
            distinct_urls,
            distinct_bytes,
            requested_once: once as f64 / distinct_urls.max(1) as f64,
        }
    }
}

/// A memory budget: a share of the trace's distinct bytes, or a number of bytes.
#[derive(Clone, Copy, PartialEq)]
enum Budget {
    Share(f64),
    Bytes(u64),
}

impl Budget {
    fn parse(text: &str) -> Option<Budget> {
        if let Some(percent) = text.strip_suffix('%') {
            let share = percent.parse::<f64>().ok()? / 100.0;
            return (share > 0.0).then_some(Budget::Share(share));
        }
        let units = [
            ("GiB", 1u64 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
            ("", 1),
        ];
        let (number, unit) = units
            .iter()
            .find_map(|&(suffix, unit)| text.strip_suffix(suffix).map(|n| (n, unit)))?;
        let bytes = number.parse::<u64>().ok()?.checked_mul(unit)?;
        (bytes > 0).then_some(Budget::Bytes(bytes))
    }

    fn bytes(self, distinct_bytes: u64) -> u64 {
        match self {
            Budget::Share(share) => ((distinct_bytes as f64 * share) as u64).max(1),
            Budget::Bytes(bytes) => bytes,
        }
    }
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Budget::Share(share) => write!(f, "{}%", share * 100.0),
            Budget::Bytes(bytes) if bytes % (1 << 20) == 0 => write!(f, "{}MiB", bytes >> 20),
            Budget::Bytes(bytes) => write!(f, "{bytes}B"),
        }
    }
}

/// The policies this program replays.
#[derive(Clone, Copy, PartialEq)]
enum PolicyKind {
    Corral,
    Lru,
    Sieve,
    S3Fifo,
    CorralDisk,
    NginxDisk,
}

impl PolicyKind {
    fn parse(text: &str) -> Option<PolicyKind> {
        [
            PolicyKind::Corral,
            PolicyKind::Lru,
            PolicyKind::Sieve,
            PolicyKind::S3Fifo,
            PolicyKind::CorralDisk,
            PolicyKind::NginxDisk,
        ]
        .into_iter()
        .find(|p| p.name() == text)
    }

    fn name(self) -> &'static str {
        match self {
            PolicyKind::Corral => "corral",
            PolicyKind::Lru => "lru",
            PolicyKind::Sieve => "sieve",
            PolicyKind::S3Fifo => "s3fifo",
            PolicyKind::CorralDisk => "corral-disk",
            PolicyKind::NginxDisk => "nginx-disk",
        }
    }

    fn build<'k>(
        self,
        capacity: u64,
        keys: &'k [Box<str>],
    ) -> Result<Box<dyn Policy + 'k>, Box<dyn std::error::Error>> {
        let urls = keys.len();
        Ok(match self {
            PolicyKind::Corral => Box::new(CorralTier::new(capacity, keys)?),
            PolicyKind::Lru => Box::new(Lru::new(capacity, urls, ENTRY_COST)),
            PolicyKind::Sieve => Box::new(Sieve::new(capacity, urls, ENTRY_COST)),
            PolicyKind::S3Fifo => Box::new(S3Fifo::new(capacity, urls, ENTRY_COST)),
            PolicyKind::CorralDisk => Box::new(Tiered {
                memory: CorralTier::new(capacity / MEMORY_SHARE, keys)?,
                disk: S3Fifo::corral_disk(capacity - capacity / MEMORY_SHARE, urls),
            }),
            PolicyKind::NginxDisk => Box::new(Lru::on_disk(capacity, urls)),
        })
    }
}

/// A cache replaying a trace: `access` looks `id` up, stores it on a miss (if the
/// policy admits it), and says whether it was a hit.
trait Policy {
    fn access(&mut self, id: u32, size: u32) -> bool;
}

/// One replay: a trace, a budget, a policy.
struct Job<'t> {
    trace: &'t Trace,
    budget: Budget,
    policy: PolicyKind,
}

/// Requests, hits, and their bytes.
#[derive(Clone, Copy, Default)]
struct Outcome {
    requests: u64,
    hits: u64,
    bytes: u64,
    hit_bytes: u64,
}

impl Job<'_> {
    fn run(&self, catalog: &Catalog, keys: &[Box<str>]) -> Result<Outcome, String> {
        let capacity = self.budget.bytes(self.trace.distinct_bytes);
        let mut policy = self
            .policy
            .build(capacity, keys)
            .map_err(|e| e.to_string())?;
        Ok(replay(&mut *policy, &self.trace.requests, &catalog.sizes))
    }
}

fn replay(policy: &mut dyn Policy, requests: &[u32], sizes: &[u32]) -> Outcome {
    let mut outcome = Outcome::default();
    for &id in requests {
        let size = sizes[id as usize];
        let hit = policy.access(id, size);
        outcome.requests += 1;
        outcome.bytes += u64::from(size);
        if hit {
            outcome.hits += 1;
            outcome.hit_bytes += u64::from(size);
        }
    }
    outcome
}

/// corral's memory tier, through the public API: `get`, and `insert` on a miss.
/// Values are the objects' sizes, weighed as if they were the bodies.
struct CorralTier<'k> {
    cache: corral::Cache<u32>,
    keys: &'k [Box<str>],
    runtime: tokio::runtime::Runtime,
}

impl<'k> CorralTier<'k> {
    fn new(capacity: u64, keys: &'k [Box<str>]) -> Result<Self, Box<dyn std::error::Error>> {
        // Long enough that nothing expires during a replay: only eviction removes.
        let year = Duration::from_secs(365 * 24 * 3600);
        let cache = corral::Cache::builder()
            .max_bytes(capacity)
            .fresh_for(year)
            .ttl(year)
            .weigher(|_key: &str, size: &u32| *size as usize)
            .build()?;
        let runtime = tokio::runtime::Builder::new_current_thread().build()?;
        Ok(CorralTier {
            cache,
            keys,
            runtime,
        })
    }
}

impl Policy for CorralTier<'_> {
    fn access(&mut self, id: u32, size: u32) -> bool {
        let key = &self.keys[id as usize];
        if self.cache.get(key).is_some() {
            return true;
        }
        self.runtime.block_on(self.cache.insert(key, size));
        false
    }
}

/// corral with a disk tier: its real memory tier (a tenth of the budget) over a
/// simulation of its disk tier (the rest); a disk hit is copied into memory.
struct Tiered<'k> {
    memory: CorralTier<'k>,
    disk: S3Fifo,
}

impl Policy for Tiered<'_> {
    fn access(&mut self, id: u32, size: u32) -> bool {
        // A memory miss stores the object in memory, whether disk has it or the
        // origin sends it.
        self.memory.access(id, size) || self.disk.access(id, size)
    }
}

/// No id: the end of a list.
const NIL: u32 = u32::MAX;

/// A doubly linked list of ids `0..n` in two arrays, newest at the head.
struct List {
    newer: Vec<u32>,
    older: Vec<u32>,
    head: u32,
    tail: u32,
}

impl List {
    fn new(n: usize) -> List {
        List {
            newer: vec![NIL; n],
            older: vec![NIL; n],
            head: NIL,
            tail: NIL,
        }
    }

    fn push_head(&mut self, id: u32) {
        let i = id as usize;
        self.newer[i] = NIL;
        self.older[i] = self.head;
        match self.head {
            NIL => self.tail = id,
            head => self.newer[head as usize] = id,
        }
        self.head = id;
    }

    fn remove(&mut self, id: u32) {
        let (newer, older) = (self.newer[id as usize], self.older[id as usize]);
        match newer {
            NIL => self.head = older,
            n => self.older[n as usize] = older,
        }
        match older {
            NIL => self.tail = newer,
            o => self.newer[o as usize] = newer,
        }
    }
}

/// Bytes charged and the bound, shared by the simulated policies.
struct Budgeted {
    capacity: u64,
    used: u64,
    overhead: u32,
    /// Costs are rounded up to whole blocks of this many bytes (files on disk), or
    /// not rounded (0).
    block: u32,
}

impl Budgeted {
    fn cost(&self, size: u32) -> u64 {
        let bytes = u64::from(size) + u64::from(self.overhead);
        match u64::from(self.block) {
            0 => bytes,
            block => bytes.div_ceil(block).max(1) * block,
        }
    }

    fn fits(&self, cost: u64) -> bool {
        self.used + cost <= self.capacity
    }
}

/// Byte-bounded LRU: a hit moves the object to the head; a miss evicts from the tail
/// until the object fits.
struct Lru {
    bytes: Budgeted,
    list: List,
    cost: Vec<u32>,
    resident: Vec<bool>,
}

impl Lru {
    fn new(capacity: u64, urls: usize, overhead: u32) -> Lru {
        Lru::charged(capacity, urls, overhead, 0)
    }

    /// nginx's `proxy_cache`, whose objects are files: each charged its file's blocks.
    fn on_disk(capacity: u64, urls: usize) -> Lru {
        Lru::charged(capacity, urls, FILE_OVERHEAD, BLOCK)
    }

    fn charged(capacity: u64, urls: usize, overhead: u32, block: u32) -> Lru {
        Lru {
            bytes: Budgeted {
                capacity,
                used: 0,
                overhead,
                block,
            },
            list: List::new(urls),
            cost: vec![0; urls],
            resident: vec![false; urls],
        }
    }
}

impl Policy for Lru {
    fn access(&mut self, id: u32, size: u32) -> bool {
        if self.resident[id as usize] {
            self.list.remove(id);
            self.list.push_head(id);
            return true;
        }
        let cost = self.bytes.cost(size);
        if cost > self.bytes.capacity {
            return false;
        }
        while !self.bytes.fits(cost) {
            let victim = self.list.tail;
            self.list.remove(victim);
            self.resident[victim as usize] = false;
            self.bytes.used -= u64::from(self.cost[victim as usize]);
        }
        self.list.push_head(id);
        self.resident[id as usize] = true;
        self.cost[id as usize] = cost as u32;
        self.bytes.used += cost;
        false
    }
}

/// Byte-bounded SIEVE (NSDI '24): a FIFO queue with one visited bit per object; a hit
/// sets the bit; a miss inserts at the head, and to make room a hand walks from the
/// tail towards the head, clearing set bits and evicting the first object whose bit
/// was clear (the hand stays where it stopped, wrapping to the tail at the head).
struct Sieve {
    bytes: Budgeted,
    list: List,
    cost: Vec<u32>,
    resident: Vec<bool>,
    visited: Vec<bool>,
    hand: u32,
}

impl Sieve {
    fn new(capacity: u64, urls: usize, overhead: u32) -> Sieve {
        Sieve {
            bytes: Budgeted {
                capacity,
                used: 0,
                overhead,
                block: 0,
            },
            list: List::new(urls),
            cost: vec![0; urls],
            resident: vec![false; urls],
            visited: vec![false; urls],
            hand: NIL,
        }
    }

    fn evict(&mut self) {
        let mut hand = if self.hand == NIL {
            self.list.tail
        } else {
            self.hand
        };
        while self.visited[hand as usize] {
            self.visited[hand as usize] = false;
            hand = match self.list.newer[hand as usize] {
                NIL => self.list.tail,
                newer => newer,
            };
        }
        self.hand = self.list.newer[hand as usize];
        self.list.remove(hand);
        self.resident[hand as usize] = false;
        self.bytes.used -= u64::from(self.cost[hand as usize]);
    }
}

impl Policy for Sieve {
    fn access(&mut self, id: u32, size: u32) -> bool {
        if self.resident[id as usize] {
            self.visited[id as usize] = true;
            return true;
        }
        let cost = self.bytes.cost(size);
        if cost > self.bytes.capacity {
            return false;
        }
        while !self.bytes.fits(cost) {
            self.evict();
        }
        self.list.push_head(id);
        self.resident[id as usize] = true;
        self.visited[id as usize] = false;
        self.cost[id as usize] = cost as u32;
        self.bytes.used += cost;
        false
    }
}

/// Where an S3-FIFO object is.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Queue {
    Out,
    Small,
    Main,
}

/// Byte-bounded S3-FIFO (SOSP '23), as in the paper's artifact (libCacheSim's
/// `S3FIFOv0`): a small FIFO (10% of the bytes) takes new objects, a main FIFO the
/// rest; a ghost FIFO remembers ids evicted from the small queue (up to 90% of the
/// bytes, counted by their costs). A hit counts up to 3. Evicting from the small
/// queue moves an object hit at least twice to the main queue, and sends the others to
/// the ghost; evicting from the main queue reinserts an object hit since its last
/// pass (counting down), and evicts the others. A miss whose id is in the ghost goes
/// straight to the main queue; other objects larger than the small queue are not
/// admitted.
struct S3Fifo {
    bytes: Budgeted,
    small_capacity: u64,
    small_used: u64,
    small: VecDeque<u32>,
    main: VecDeque<u32>,
    ghost: VecDeque<(u32, u32)>,
    ghost_capacity: u64,
    ghost_used: u64,
    /// The stamp of each id's live ghost entry, 0 for none.
    ghost_stamp: Vec<u32>,
    stamps: u32,
    queue: Vec<Queue>,
    freq: Vec<u8>,
    cost: Vec<u32>,
    /// Hits that move an object from the small queue to the main queue.
    move_to_main: u8,
    /// Whether an object larger than the small queue is admitted.
    admit_large: bool,
}

/// S3-FIFO's small queue: this share of the bytes.
const S3FIFO_SMALL_SHARE: f64 = 0.1;
/// S3-FIFO's ghost: ids whose costs add up to this share of the bytes.
const S3FIFO_GHOST_SHARE: f64 = 0.9;
/// S3-FIFO moves an object from the small queue to the main queue if hit this often.
const S3FIFO_MOVE_TO_MAIN: u8 = 2;

impl S3Fifo {
    fn new(capacity: u64, urls: usize, overhead: u32) -> S3Fifo {
        S3Fifo {
            bytes: Budgeted {
                capacity,
                used: 0,
                overhead,
                block: 0,
            },
            move_to_main: S3FIFO_MOVE_TO_MAIN,
            admit_large: false,
            small_capacity: (capacity as f64 * S3FIFO_SMALL_SHARE) as u64,
            small_used: 0,
            small: VecDeque::new(),
            main: VecDeque::new(),
            ghost: VecDeque::new(),
            ghost_capacity: (capacity as f64 * S3FIFO_GHOST_SHARE) as u64,
            ghost_used: 0,
            ghost_stamp: vec![0; urls],
            stamps: 0,
            queue: vec![Queue::Out; urls],
            freq: vec![0; urls],
            cost: vec![0; urls],
        }
    }

    /// corral's disk tier (`tier/disk/index.rs`): files charged in blocks, every object
    /// that fits admitted, one read enough to leave the small queue for the main one.
    fn corral_disk(capacity: u64, urls: usize) -> S3Fifo {
        let mut disk = S3Fifo::new(capacity, urls, FILE_OVERHEAD);
        disk.bytes.block = BLOCK;
        disk.move_to_main = 1;
        disk.admit_large = true;
        disk
    }

    fn main_used(&self) -> u64 {
        self.bytes.used - self.small_used
    }

    fn evict(&mut self) {
        if self.main_used() > self.bytes.capacity - self.small_capacity || self.small.is_empty() {
            self.evict_main();
        } else {
            self.evict_small();
        }
    }

    fn evict_small(&mut self) {
        while let Some(id) = self.small.pop_front() {
            let cost = u64::from(self.cost[id as usize]);
            self.small_used -= cost;
            if self.freq[id as usize] >= self.move_to_main {
                self.freq[id as usize] = 0;
                self.queue[id as usize] = Queue::Main;
                self.main.push_back(id);
            } else {
                self.queue[id as usize] = Queue::Out;
                self.bytes.used -= cost;
                self.remember(id);
                return;
            }
        }
    }

    fn evict_main(&mut self) {
        while let Some(id) = self.main.pop_front() {
            let freq = &mut self.freq[id as usize];
            if *freq > 0 {
                *freq -= 1;
                self.main.push_back(id);
            } else {
                self.queue[id as usize] = Queue::Out;
                self.bytes.used -= u64::from(self.cost[id as usize]);
                return;
            }
        }
    }

    /// Puts `id` in the ghost, forgetting the oldest ids beyond its capacity.
    fn remember(&mut self, id: u32) {
        self.stamps += 1;
        self.ghost_stamp[id as usize] = self.stamps;
        self.ghost.push_back((id, self.stamps));
        self.ghost_used += u64::from(self.cost[id as usize]);
        while self.ghost_used > self.ghost_capacity {
            let Some((old, stamp)) = self.ghost.pop_front() else {
                break;
            };
            if self.ghost_stamp[old as usize] == stamp {
                self.ghost_stamp[old as usize] = 0;
                self.ghost_used -= u64::from(self.cost[old as usize]);
            }
        }
    }

    /// Takes `id` out of the ghost; says whether it was there.
    fn recall(&mut self, id: u32) -> bool {
        if self.ghost_stamp[id as usize] == 0 {
            return false;
        }
        self.ghost_stamp[id as usize] = 0;
        self.ghost_used -= u64::from(self.cost[id as usize]);
        true
    }
}

impl Policy for S3Fifo {
    fn access(&mut self, id: u32, size: u32) -> bool {
        let i = id as usize;
        if self.queue[i] != Queue::Out {
            self.freq[i] = (self.freq[i] + 1).min(3);
            return true;
        }
        let cost = self.bytes.cost(size);
        let ghost_hit = self.recall(id);
        let too_large = !ghost_hit && !self.admit_large && cost >= self.small_capacity;
        if cost > self.bytes.capacity || too_large {
            return false;
        }
        while !self.bytes.fits(cost) {
            self.evict();
        }
        self.cost[i] = cost as u32;
        self.freq[i] = 0;
        self.bytes.used += cost;
        if ghost_hit {
            self.queue[i] = Queue::Main;
            self.main.push_back(id);
        } else {
            self.queue[i] = Queue::Small;
            self.small.push_back(id);
            self.small_used += cost;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays `ids` (each of size `size`, no overhead) and returns the hits.
    fn hits(policy: &mut dyn Policy, ids: &[u32], size: u32) -> Vec<bool> {
        ids.iter().map(|&id| policy.access(id, size)).collect()
    }

    /// A naive LRU over a `Vec` (oldest first), the reference for `Lru`.
    fn reference_lru(capacity: u64, requests: &[(u32, u32)]) -> Vec<bool> {
        let mut order: Vec<(u32, u64)> = Vec::new();
        requests
            .iter()
            .map(|&(id, size)| {
                if let Some(at) = order.iter().position(|&(x, _)| x == id) {
                    let entry = order.remove(at);
                    order.push(entry);
                    return true;
                }
                let cost = u64::from(size);
                if cost <= capacity {
                    while order.iter().map(|&(_, c)| c).sum::<u64>() + cost > capacity {
                        order.remove(0);
                    }
                    order.push((id, cost));
                }
                false
            })
            .collect()
    }

    /// A naive SIEVE over a `Vec` (oldest first) and a hand index, the reference for
    /// `Sieve`.
    fn reference_sieve(capacity: u64, requests: &[(u32, u32)]) -> Vec<bool> {
        // (id, cost, visited)
        let mut queue: Vec<(u32, u64, bool)> = Vec::new();
        let mut hand: Option<usize> = None;
        requests
            .iter()
            .map(|&(id, size)| {
                if let Some(entry) = queue.iter_mut().find(|e| e.0 == id) {
                    entry.2 = true;
                    return true;
                }
                let cost = u64::from(size);
                if cost > capacity {
                    return false;
                }
                while queue.iter().map(|e| e.1).sum::<u64>() + cost > capacity {
                    let mut at = hand.unwrap_or(0);
                    while queue[at].2 {
                        queue[at].2 = false;
                        at = (at + 1) % queue.len();
                    }
                    queue.remove(at);
                    // The hand now points at the next newer object, if any.
                    hand = (at < queue.len()).then_some(at);
                }
                queue.push((id, cost, false));
                false
            })
            .collect()
    }

    /// A random request sequence over `urls` ids with sizes 1..=9 fixed per id.
    fn random_requests(n: usize, urls: usize, seed: u64) -> Vec<(u32, u32)> {
        let mut rng = Rng(seed);
        let sizes: Vec<u32> = (0..urls).map(|_| 1 + rng.below(9) as u32).collect();
        let zipf = Zipf::new(urls, 0.8);
        (0..n)
            .map(|_| {
                let id = zipf.sample(&mut rng) as u32;
                (id, sizes[id as usize])
            })
            .collect()
    }

    #[test]
    fn zipf_ranks_follow_the_power_law() {
        let zipf = Zipf::new(1000, 1.0);
        let mut rng = Rng(7);
        let mut counts = [0u32; 4];
        for _ in 0..400_000 {
            if let Some(c) = counts.get_mut(zipf.sample(&mut rng)) {
                *c += 1;
            }
        }
        // P(rank k) ∝ 1/k: rank 1 twice as often as rank 2, four times rank 4.
        let ratio = |a: usize, b: usize| f64::from(counts[a]) / f64::from(counts[b]);
        assert!((ratio(0, 1) - 2.0).abs() < 0.08, "{counts:?}");
        assert!((ratio(0, 3) - 4.0).abs() < 0.25, "{counts:?}");
    }

    #[test]
    fn the_trace_depends_on_the_seed_alone() {
        let a = Trace::generate(&Catalog::generate(1000, 3), 0.9, 5000, 3);
        let b = Trace::generate(&Catalog::generate(1000, 3), 0.9, 5000, 3);
        let c = Trace::generate(&Catalog::generate(1000, 4), 0.9, 5000, 4);
        assert_eq!(a.requests, b.requests);
        assert_ne!(a.requests, c.requests);
    }

    #[test]
    fn object_sizes_have_the_stated_median_and_bounds() {
        let catalog = Catalog::generate(100_000, 1);
        let median = f64::from(catalog.size_percentile(50.0));
        assert!((median / SIZE_MEDIAN - 1.0).abs() < 0.05, "median {median}");
        assert!(catalog.size_percentile(0.0) >= SIZE_MIN as u32);
        assert!(catalog.size_percentile(100.0) <= SIZE_MAX as u32);
    }

    #[test]
    fn budgets_parse_as_shares_or_bytes() {
        assert!(Budget::parse("5%") == Some(Budget::Share(0.05)));
        assert!(Budget::parse("256MiB") == Some(Budget::Bytes(256 << 20)));
        assert!(Budget::parse("1000") == Some(Budget::Bytes(1000)));
        assert!(Budget::parse("0%").is_none() && Budget::parse("lots").is_none());
        assert_eq!(Budget::Share(0.05).bytes(1000), 50);
        assert_eq!(
            Budget::parse("256MiB").map(|b| b.to_string()).as_deref(),
            Some("256MiB")
        );
    }

    #[test]
    fn lru_evicts_the_least_recently_used() {
        let mut lru = Lru::new(3, 10, 0);
        // 0 1 2 fill it; 0 is hit, so 3 evicts 1; 0 and 2 are hit, so 1 evicts 3.
        let got = hits(&mut lru, &[0, 1, 2, 0, 3, 0, 2, 1, 2, 3], 1);
        let want = [
            false, false, false, true, false, true, true, false, true, false,
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn lru_agrees_with_a_naive_lru_on_a_random_trace() {
        let requests = random_requests(20_000, 200, 11);
        let mut lru = Lru::new(60, 200, 0);
        let got: Vec<bool> = requests.iter().map(|&(id, s)| lru.access(id, s)).collect();
        assert_eq!(got, reference_lru(60, &requests));
        assert!(lru.bytes.used <= 60);
    }

    #[test]
    fn sieve_keeps_visited_objects_and_its_hand_moves_on() {
        // A B C fill it; A is visited; D sweeps the hand past A (clearing its bit) and
        // evicts B; E evicts C, where the hand stopped.
        let mut sieve = Sieve::new(3, 10, 0);
        let (a, b, c, d, e, f) = (0, 1, 2, 3, 4, 5);
        let got = hits(&mut sieve, &[a, b, c, a, d, e], 1);
        assert_eq!(got, [false, false, false, true, false, false]);
        let resident = |s: &Sieve| (0..6).filter(|&i| s.resident[i]).collect::<Vec<_>>();
        assert_eq!(resident(&sieve), [a, d, e].map(|i| i as usize));
        // F evicts D: the hand goes on from where it stopped, so A, the oldest and
        // no longer visited, stays until the hand wraps around to it.
        hits(&mut sieve, &[f], 1);
        assert_eq!(resident(&sieve), [a, e, f].map(|i| i as usize));
    }

    #[test]
    fn sieve_agrees_with_a_naive_sieve_on_a_random_trace() {
        let requests = random_requests(20_000, 200, 12);
        let mut sieve = Sieve::new(60, 200, 0);
        let got: Vec<bool> = requests
            .iter()
            .map(|&(id, s)| sieve.access(id, s))
            .collect();
        assert_eq!(got, reference_sieve(60, &requests));
        assert!(sieve.bytes.used <= 60);
    }

    #[test]
    fn s3fifo_sends_one_hit_wonders_to_the_ghost_and_ghost_hits_to_main() {
        // 100 bytes: the small queue is 10, objects cost 5.
        let mut s3 = S3Fifo::new(100, 100, 0);
        for id in 0..20 {
            assert!(!s3.access(id, 5));
        }
        assert_eq!(s3.bytes.used, 100);
        // Full: 20 evicts 0 (never hit) from the small queue into the ghost.
        assert!(!s3.access(20, 5));
        assert_eq!(s3.queue[0], Queue::Out);
        assert_ne!(s3.ghost_stamp[0], 0);
        // 0 is back: a miss, admitted straight to the main queue.
        assert!(!s3.access(0, 5));
        assert_eq!(s3.queue[0], Queue::Main);
        assert!(s3.access(0, 5));
    }

    #[test]
    fn s3fifo_moves_objects_hit_twice_to_main() {
        let mut s3 = S3Fifo::new(100, 100, 0);
        for id in 0..20 {
            s3.access(id, 5);
        }
        s3.access(0, 5);
        s3.access(0, 5);
        s3.access(1, 5);
        // 0 (hit twice) moves to main; 1 (hit once) is evicted to the ghost.
        assert!(!s3.access(20, 5));
        assert_eq!(s3.queue[0], Queue::Main);
        assert_eq!(s3.queue[1], Queue::Out);
        assert_ne!(s3.ghost_stamp[1], 0);
    }

    #[test]
    fn s3fifo_stays_within_its_bytes_and_its_ghost_within_its_share() {
        let requests = random_requests(50_000, 500, 13);
        let mut s3 = S3Fifo::new(200, 500, 0);
        let mut hits = 0;
        for &(id, size) in &requests {
            hits += u32::from(s3.access(id, size));
            assert!(s3.bytes.used <= 200 && s3.small_used <= s3.bytes.used);
            assert!(s3.ghost_used <= s3.ghost_capacity);
        }
        let small: u64 = s3
            .small
            .iter()
            .map(|&i| u64::from(s3.cost[i as usize]))
            .sum();
        let main: u64 = s3
            .main
            .iter()
            .map(|&i| u64::from(s3.cost[i as usize]))
            .sum();
        assert_eq!((small, small + main), (s3.small_used, s3.bytes.used));
        assert!(hits > 0);
    }

    #[test]
    fn with_room_for_everything_every_policy_misses_once_per_url() {
        let keys: Vec<Box<str>> = (0..50).map(|id| format!("/obj/{id:07}").into()).collect();
        let requests: Vec<u32> = (0..500).map(|i| (i * 7 % 50) as u32).collect();
        let sizes = vec![1000; 50];
        for kind in [
            PolicyKind::Corral,
            PolicyKind::Lru,
            PolicyKind::Sieve,
            PolicyKind::S3Fifo,
        ] {
            let mut policy = kind.build(10 << 20, &keys).expect("a valid budget");
            let outcome = replay(&mut *policy, &requests, &sizes);
            assert_eq!(outcome.hits, 450, "{}", kind.name());
            assert_eq!(outcome.hit_bytes, 450_000, "{}", kind.name());
        }
    }

    #[test]
    fn files_are_charged_whole_blocks() {
        let mut nginx = Lru::on_disk(10 * u64::from(BLOCK), 100);
        // 1 byte and 3 584 bytes each take one block with the file's header.
        assert_eq!(nginx.bytes.cost(1), u64::from(BLOCK));
        assert_eq!(nginx.bytes.cost(BLOCK - FILE_OVERHEAD), u64::from(BLOCK));
        assert_eq!(nginx.bytes.cost(BLOCK), 2 * u64::from(BLOCK));
        let ids: Vec<u32> = (0..11).chain([0]).collect();
        let got = hits(&mut nginx, &ids, 1);
        assert!(!got[11], "ten blocks hold ten files: the first went");
    }

    #[test]
    fn corral_with_a_disk_tier_hits_on_disk_what_memory_cannot_hold() {
        let keys: Vec<Box<str>> = (0..100).map(|id| format!("/obj/{id:07}").into()).collect();
        let budget = 100 * u64::from(BLOCK);
        let mut tiered = Tiered {
            memory: CorralTier::new(budget / MEMORY_SHARE, &keys).unwrap(),
            disk: S3Fifo::corral_disk(budget - budget / MEMORY_SHARE, keys.len()),
        };
        // Ten objects of 30 KiB: more than memory's 40 KiB, less than the disk's.
        let ids: Vec<u32> = (0..10).collect();
        assert!(hits(&mut tiered, &ids, 30 * 1024).iter().all(|h| !h));
        assert!(
            hits(&mut tiered, &ids, 30 * 1024).iter().all(|h| *h),
            "from disk"
        );
        assert!(
            ids.iter()
                .all(|&id| tiered.disk.queue[id as usize] != Queue::Out)
        );
    }
}
