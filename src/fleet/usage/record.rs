//! Writing one folded record: the script that counts a client's calls on one endpoint and
//! places the client under the fleet's cap, atomically, whichever replica runs it.
//!
//! The cap follows the rule of [`crate::observe::metrics::eviction`], the local table's own:
//! the labels that name no client are written into the script from the same constants, and the
//! rule's table of cases is run on the script by `tests/it/shared_rules.rs` ([`testing`]).

use std::sync::LazyLock;

use redis::Script;
use redis::aio::ConnectionLike;

use super::{Folded, RECORD_TTL};
use crate::legacy::route::LegacyRoute;
use crate::observe::metrics::OTHER_CLIENTS;
use crate::observe::metrics::eviction::NOT_CLIENTS;
use crate::observe::usage::buckets::{self, Buckets};

/// KEYS: clients set, records set, unverified set, unverified order (sorted set). ARGV: key
/// prefix, client, endpoint, count, first seen, last seen, last user_group_id ("" for none),
/// the client cap, the label past the cap, refused, accepted (1 or 0), the keys' TTL
/// (seconds), the start of the oldest hourly and of the oldest daily bucket kept (Unix
/// seconds), how many legacy endpoints follow, every legacy endpoint (to drop a displaced
/// client's records), then bucket fields (`h:<start>`, `d:<start>`) each followed by its
/// calls. Returns `{label, displaced}`: where the calls were counted, and the client whose
/// place was taken ("" for none).
///
/// The unverified set says who was never accepted (replicas of every version keep it); the
/// order, who of them was placed first: each one's score is one more than the last placed. A
/// never-accepted client without a score (placed by a replica that kept no order) counts as
/// placed before all others, by name.
const RECORD_LUA: &str = r"
local not_clients = NOT_CLIENTS
local client = ARGV[2]
local other = ARGV[9]
local accepted = tonumber(ARGV[11]) > 0
local ttl = tonumber(ARGV[12])
local oldest = {h = tonumber(ARGV[13]), d = tonumber(ARGV[14])}
local endpoints_end = 15 + tonumber(ARGV[15])
local displaced = false

local function first_placed_never_accepted()
  local first, first_rank
  for _, member in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    if not not_clients[member] then
      local rank = tonumber(redis.call('ZSCORE', KEYS[4], member) or '0')
      if not first or rank < first_rank or (rank == first_rank and member < first) then
        first, first_rank = member, rank
      end
    end
  end
  return first
end

if not_clients[client] then
  -- A label, not a client: it takes no place (and gives back one an older replica gave it).
  redis.call('SREM', KEYS[1], client)
  redis.call('SREM', KEYS[3], client)
  redis.call('ZREM', KEYS[4], client)
elseif redis.call('SISMEMBER', KEYS[1], client) == 1 then
  if accepted then
    redis.call('SREM', KEYS[3], client)
    redis.call('ZREM', KEYS[4], client)
  end
else
  if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[8]) then
    -- Full: an accepted client takes the place of the never-accepted one placed first, else
    -- it is counted as `other`.
    displaced = accepted and first_placed_never_accepted()
    if displaced then
      redis.call('SREM', KEYS[3], displaced)
      redis.call('ZREM', KEYS[4], displaced)
      redis.call('SREM', KEYS[1], displaced)
      for i = 16, endpoints_end do
        redis.call('SREM', KEYS[2], displaced .. ' ' .. ARGV[i])
        redis.call('DEL', ARGV[1] .. 'usage:record:' .. displaced .. ':' .. ARGV[i])
      end
    else
      client = other
    end
  end
  if client ~= other then
    redis.call('SADD', KEYS[1], client)
    if not accepted then
      local last = redis.call('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')
      redis.call('SADD', KEYS[3], client)
      redis.call('ZADD', KEYS[4], tonumber(last[2] or '0') + 1, client)
    end
  end
end
redis.call('SADD', KEYS[2], client .. ' ' .. ARGV[3])
local record = ARGV[1] .. 'usage:record:' .. client .. ':' .. ARGV[3]
redis.call('HINCRBY', record, 'count', ARGV[4])
if tonumber(ARGV[10]) > 0 then
  redis.call('HINCRBY', record, 'refused', ARGV[10])
end
local first = tonumber(redis.call('HGET', record, 'first_seen') or '0')
if first == 0 or tonumber(ARGV[5]) < first then
  redis.call('HSET', record, 'first_seen', ARGV[5])
end
local last = tonumber(redis.call('HGET', record, 'last_seen') or '0')
if tonumber(ARGV[6]) >= last then
  redis.call('HSET', record, 'last_seen', ARGV[6])
  if ARGV[7] ~= '' then
    redis.call('HSET', record, 'last_user_group_id', ARGV[7])
  end
end
for i = endpoints_end + 1, #ARGV, 2 do
  redis.call('HINCRBY', record, ARGV[i], ARGV[i + 1])
end
-- Buckets that left the window go (a record not written for a while keeps them until the next
-- write; readers skip them).
for _, field in ipairs(redis.call('HKEYS', record)) do
  local kind, start = string.match(field, '^([hd]):(%d+)$')
  if kind and tonumber(start) < oldest[kind] then
    redis.call('HDEL', record, field)
  end
end
for _, key in ipairs({record, KEYS[1], KEYS[2], KEYS[3], KEYS[4]}) do
  redis.call('EXPIRE', key, ttl)
end
return {client, displaced or ''}
";

/// [`RECORD_LUA`] with the labels that name no client written in as a Lua set
/// (`{['anonymous'] = true, ...}`); they are plain words, nothing to escape.
fn record_lua() -> String {
    let labels: Vec<String> = NOT_CLIENTS
        .iter()
        .map(|label| format!("['{label}'] = true"))
        .collect();
    RECORD_LUA.replacen("NOT_CLIENTS", &format!("{{{}}}", labels.join(", ")), 1)
}

static RECORD: LazyLock<Script> = LazyLock::new(|| Script::new(&record_lua()));

/// Where a record's calls were counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    /// The client, or `other`.
    pub label: String,
    /// The never-accepted client whose place the client took.
    pub displaced: Option<String>,
}

/// The bucket fields of `folded` still in the window at `now` (Unix seconds), each followed by
/// its calls: `h:<hour start>`, then `d:<day start>`, oldest first.
pub(super) fn bucket_fields(buckets: &Buckets, now: u64) -> Vec<(String, u32)> {
    let hours = buckets
        .hourly(now)
        .map(|(start, calls)| (format!("h:{start}"), calls));
    let days = buckets
        .daily(now)
        .map(|(start, calls)| (format!("d:{start}"), calls));
    hours.chain(days).collect()
}

/// Writes `folded`, the calls of `client` on `endpoint`, under the keys that start with
/// `prefix`, with at most `cap` clients, as of `now` (Unix seconds).
pub(super) async fn write_record(
    connection: &mut impl ConnectionLike,
    (prefix, cap): (&str, u64),
    (client, endpoint): (&str, &str),
    folded: &Folded,
    now: u64,
) -> redis::RedisResult<Counted> {
    let key = |name: &str| format!("{prefix}{name}");
    let mut invocation = RECORD.key(key("usage:clients"));
    invocation
        .key(key("usage:records"))
        .key(key("usage:unverified"))
        .key(key("usage:unverified_order"))
        .arg(prefix)
        .arg(client)
        .arg(endpoint)
        .arg(folded.count)
        .arg(folded.first_seen)
        .arg(folded.last_seen)
        .arg(folded.last_user_group_id.as_deref().unwrap_or_default())
        .arg(cap)
        .arg(OTHER_CLIENTS)
        .arg(folded.refused)
        .arg(u8::from(folded.accepted))
        .arg(RECORD_TTL.as_secs())
        .arg(buckets::oldest_hour_kept(now))
        .arg(buckets::oldest_day_kept(now))
        .arg(LegacyRoute::ALL.len());
    for route in LegacyRoute::ALL {
        invocation.arg(route.legacy_endpoint());
    }
    for (field, calls) in bucket_fields(&folded.buckets, now) {
        invocation.arg(field).arg(calls);
    }
    let (label, displaced): (String, String) = invocation.invoke_async(connection).await?;
    Ok(Counted {
        label,
        displaced: Some(displaced).filter(|client| !client.is_empty()),
    })
}

/// One call written as the writer writes it, for `tests/it/shared_rules.rs`, which runs the
/// eviction rule's cases on the script in a real Redis. Not an API.
pub mod testing {
    use super::*;

    /// One call by `client` on the first legacy endpoint, under the keys that start with
    /// `prefix`, with at most `cap` clients.
    pub async fn record_call(
        connection: &mut impl ConnectionLike,
        (prefix, cap): (&str, u64),
        client: &str,
        accepted: bool,
    ) -> redis::RedisResult<Counted> {
        let now = 1_796_379_600;
        let mut buckets = Buckets::default();
        buckets.record(now, 1);
        let folded = Folded {
            count: 1,
            refused: u64::from(!accepted),
            first_seen: now,
            last_seen: now,
            last_user_group_id: None,
            accepted,
            buckets,
        };
        let endpoint = LegacyRoute::ALL[0].legacy_endpoint();
        write_record(connection, (prefix, cap), (client, endpoint), &folded, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-04T10:20:00Z.
    const NOW: u64 = 1_796_379_600;

    #[test]
    fn the_fields_written_leave_out_what_left_the_window() {
        let mut buckets = Buckets::default();
        buckets.record(NOW - 49 * 3600, 1);
        let fields = bucket_fields(&buckets, NOW);
        // Its day (2026-12-02) is still in the window; its hour is not.
        assert_eq!(fields, [("d:1796169600".to_owned(), 1)]);
    }

    #[test]
    fn the_labels_that_name_no_client_are_written_into_the_script() {
        assert!(
            record_lua().contains("local not_clients = {['anonymous'] = true, ['other'] = true}\n")
        );
        for label in NOT_CLIENTS {
            assert!(
                label.bytes().all(|byte| byte.is_ascii_lowercase()),
                "{label}"
            );
        }
    }
}
