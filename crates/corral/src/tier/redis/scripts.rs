//! The Lua scripts the Redis tier runs, each one atomic step on a key's records: end a
//! load (store its outcome only while it holds the lock), renew a lock's lease, delete a
//! key's records, make a key's value stale, purge a tag. Each also publishes its event,
//! so the step and its news are one.

/// If the lock is still ours, stores a value or shares an error and releases the
/// lock; then wakes the waiters of every server, in one step. A lock that is no
/// longer ours was deleted by an invalidation (or its lease ran out and another server
/// took over): this load's outcome is stale and is not stored. Returns whether the
/// lock was still ours.
const FINISH: &str = r#"
local ours = redis.call("GET", KEYS[2]) == ARGV[1]
if ours then
  if ARGV[2] == "value" then
    redis.call("SET", KEYS[1], ARGV[3], "PX", ARGV[4])
    redis.call("DEL", KEYS[3])
  elseif ARGV[2] == "error" then
    redis.call("SET", KEYS[3], ARGV[3], "PX", ARGV[4])
  end
  redis.call("DEL", KEYS[2])
end
redis.call("PUBLISH", ARGV[5], ARGV[6])
if ours then return 1 end
return 0
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

/// Purges a tag: ticks the cache's tag clock and notes the tick as the tag's latest
/// purge (hard, or soft with its instant), and tells every server. The clock runs on
/// Redis's own time in milliseconds (one more than the last tick at least), so that
/// should its key be lost (evicted, flushed) it starts again above every tick noted
/// before.
const PURGE_TAG: &str = r#"
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tick = math.max(tonumber(redis.call("GET", KEYS[1]) or "0") + 1, now)
local text = string.format("%.0f", tick)
redis.call("SET", KEYS[1], text)
if ARGV[1] == "soft" then
  redis.call("HSET", KEYS[2], "s:" .. ARGV[2], text .. " " .. ARGV[3])
else
  redis.call("HSET", KEYS[2], "h:" .. ARGV[2], text)
end
redis.call("PUBLISH", ARGV[4], ARGV[5])
return tick
"#;

/// The tag clock now, for a load that begins: the last tick (the next purge ticks
/// past it). Without one (no tag purged yet, or the key lost), Redis's time less a
/// millisecond: the next purge ticks to Redis's time at least, past it.
const TICK: &str = r#"
local tick = redis.call("GET", KEYS[1])
if tick then
  return tonumber(tick)
end
local t = redis.call("TIME")
return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - 1
"#;

/// Makes a key's value stale from an instant on (a soft purge): writes the instant
/// into its record (version 3; an older record is deleted), unless it was softened
/// earlier. Deletes the key's lock (a load running for it stores nothing) and, given a
/// channel, tells every server.
const SOFTEN: &str = r#"
local function ms(s, at)
  local n = 0
  for i = at, at + 7 do n = n * 256 + string.byte(s, i) end
  return n
end
local v = redis.call("GET", KEYS[1])
if v then
  if string.byte(v, 1) == 3 and string.len(v) >= 50 then
    local before = ms(v, 39)
    if before == 0 or ms(ARGV[1], 1) < before then
      redis.call("SET", KEYS[1], string.sub(v, 1, 38) .. ARGV[1] .. string.sub(v, 47), "KEEPTTL")
    end
  else
    redis.call("DEL", KEYS[1])
  end
end
redis.call("DEL", KEYS[2])
if ARGV[2] ~= "" then
  redis.call("PUBLISH", ARGV[2], ARGV[3])
end
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
    /// [`PURGE_TAG`]: `KEYS` tick, tags; `ARGV` `soft` or `hard`, tag, Unix ms, channel,
    /// message.
    pub(crate) purge_tag: redis::Script,
    /// [`SOFTEN`]: `KEYS` value, lock; `ARGV` Unix ms (8 bytes, big-endian), channel
    /// (empty: tell nobody), message.
    pub(crate) soften: redis::Script,
    /// [`TICK`]: `KEYS` tick.
    pub(crate) tick: redis::Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            finish: redis::Script::new(FINISH),
            renew: redis::Script::new(RENEW),
            invalidate: redis::Script::new(INVALIDATE),
            purge_tag: redis::Script::new(PURGE_TAG),
            soften: redis::Script::new(SOFTEN),
            tick: redis::Script::new(TICK),
        }
    }
}
