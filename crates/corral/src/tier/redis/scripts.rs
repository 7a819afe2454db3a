//! The Lua scripts the Redis tier runs, each one atomic step on a key's records: end a
//! load (store its outcome only while it holds the lock), renew a lock's lease, delete a
//! key's records. Each also publishes its event, so the step and its news are one.

/// If the lock is still ours, stores a value or shares an error and releases the
/// lock; then wakes the waiters of every server, in one step. A lock that is no
/// longer ours was deleted by an invalidation (or its lease ran out and another server
/// took over): this load's outcome is stale and is not stored.
const FINISH: &str = r#"
if redis.call("GET", KEYS[2]) == ARGV[1] then
  if ARGV[2] == "value" then
    redis.call("SET", KEYS[1], ARGV[3], "PX", ARGV[4])
    redis.call("DEL", KEYS[3])
  elseif ARGV[2] == "error" then
    redis.call("SET", KEYS[3], ARGV[3], "PX", ARGV[4])
  end
  redis.call("DEL", KEYS[2])
end
redis.call("PUBLISH", ARGV[5], ARGV[6])
return 1
"#;

/// Extends the lock's lease if it is still ours.
const RENEW: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0
"#;

/// Deletes a key's value, error and lock (so a load running for it stores nothing),
/// and tells every server.
const INVALIDATE: &str = r#"
redis.call("DEL", KEYS[1], KEYS[2], KEYS[3])
redis.call("PUBLISH", ARGV[1], ARGV[2])
return 1
"#;

/// The scripts, loaded once per tier (`EVALSHA`, falling back to `EVAL` once).
pub(crate) struct Scripts {
    /// [`FINISH`]: `KEYS` value, lock, error; `ARGV` token, mode (`value`, `error` or
    /// `none`), payload, PX, channel, message.
    pub(crate) finish: redis::Script,
    /// [`RENEW`]: `KEYS` lock; `ARGV` token, lease in ms.
    pub(crate) renew: redis::Script,
    /// [`INVALIDATE`]: `KEYS` value, error, lock; `ARGV` channel, message.
    pub(crate) invalidate: redis::Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            finish: redis::Script::new(FINISH),
            renew: redis::Script::new(RENEW),
            invalidate: redis::Script::new(INVALIDATE),
        }
    }
}
