//! Lua scripts that decide presence transitions atomically in Redis, so two
//! nodes never both announce, or both miss, a member joining or leaving, and
//! that publish each decision, numbered, in the order they made them.
//!
//! Per channel: `users` (user -> sockets on all nodes), `info` (user ->
//! user_info of the first socket) and one `node` hash per node (user ->
//! sockets on that node), which is what lets survivors subtract a dead
//! node's share and a node rewrite its own after an outage.

use std::sync::Arc;

use redis::{RedisResult, Script};

use super::connection::{publish_command, Redis};
use super::keys::{Keys, PresenceKeys};
use crate::hub::history::{Read, StoredEvent};

/// Shared by the scripts below: each membership change takes the next
/// version and, unless `topic` is '', is published from inside the script
/// to the channel's topic (in the relay's format, see `relay`), so member
/// events reach every node serving the channel (the deciding one included)
/// in exactly the order Redis decided them.
const ANNOUNCE: &str = r#"
local function announce(version_key, topic, origin, app, channel, except, event, data, skip_origin)
  local version = redis.call('INCR', version_key)
  if topic ~= '' then
    local frame = cjson.encode({event = event, channel = channel, data = data})
    local kind = 'M'
    if skip_origin == true then kind = 'R' end
    redis.call('$PUBLISH', topic, kind .. '\n' .. origin .. '\n' .. app .. '\n' .. channel
      .. '\n' .. except .. '\n' .. version .. '\n' .. frame)
  end
  return version
end
local function added_data(user, user_info)
  return '{"user_id":' .. cjson.encode(user) .. ',"user_info":' .. user_info .. '}'
end
local function removed_data(user)
  return '{"user_id":' .. cjson.encode(user) .. '}'
end
"#;

/// Shared by the scripts that decide occupancy or membership: the webhooks
/// those decisions imply go into the app's outbox stream, once for the
/// whole cluster. A departure (`channel_vacated`, `member_removed`) is held
/// in a sorted set until its due time (see [`PROMOTE`]); the arrival that
/// undoes it in time removes it and is not sent either. Only the event
/// types some URL of the app takes are written (`kinds`, the bits of
/// `webhooks::Kind`: occupied 1, vacated 2, added 4, removed 8). Hooks `h`
/// come from five arguments (stream, held set, debounce ms, stream length,
/// kinds); stream '' means the app has no webhooks.
const HOOKS: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local OCCUPIED, VACATED, ADDED, REMOVED = 1, 2, 4, 8
local function hooks_at(i)
  return {stream = ARGV[i], held = ARGV[i + 1], debounce = tonumber(ARGV[i + 2]) or 0,
          max_len = ARGV[i + 3], kinds = tonumber(ARGV[i + 4]) or 0}
end
local function wants(h, kind)
  return h.stream ~= '' and bit.band(h.kinds, kind) ~= 0
end
local function hook_now(h, json)
  redis.call('XADD', h.stream, 'MAXLEN', '~', h.max_len, '*', 'e', json)
end
-- An arrival first cancels the departure it undoes (held only when that
-- departure is wanted), and is written when its own type is wanted.
local function hook_arrival(h, json, kind, departure, departure_kind)
  if wants(h, departure_kind) and redis.call('ZREM', h.held, departure) == 1 then return end
  if wants(h, kind) then hook_now(h, json) end
end
local function hook_departure(h, json, kind)
  if not wants(h, kind) then return end
  if h.debounce <= 0 then hook_now(h, json) return end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', h.held, now + h.debounce, json)
end
local function member_hook(name, channel, user)
  return '{"name":"' .. name .. '","channel":' .. cjson.encode(channel) ..
    ',"user_id":' .. cjson.encode(user) .. '}'
end
local function channel_hook(name, channel)
  return '{"name":"' .. name .. '","channel":' .. cjson.encode(channel) .. '}'
end
local function member_arrived(h, channel, user)
  hook_arrival(h, member_hook('member_added', channel, user), ADDED,
    member_hook('member_removed', channel, user), REMOVED)
end
local function member_departed(h, channel, user)
  hook_departure(h, member_hook('member_removed', channel, user), REMOVED)
end
-- A node's subscriber count of a channel becomes `count`; the cluster-wide
-- total (kept in `totals`) decides occupancy.
local function set_count(node_subs, totals, channel, count, h)
  local old = tonumber(redis.call('HGET', node_subs, channel) or '0')
  if count > 0 then
    redis.call('HSET', node_subs, channel, count)
  else
    redis.call('HDEL', node_subs, channel)
  end
  local delta = count - old
  if delta == 0 then return end
  local total = redis.call('HINCRBY', totals, channel, delta)
  if total <= 0 then redis.call('HDEL', totals, channel) end
  local before = total - delta
  if before <= 0 and total > 0 then
    hook_arrival(h, channel_hook('channel_occupied', channel), OCCUPIED,
      channel_hook('channel_vacated', channel), VACATED)
  elseif before > 0 and total <= 0 then
    hook_departure(h, channel_hook('channel_vacated', channel), VACATED)
  end
end
"#;

/// KEYS node counts, totals; ARGV channel, count, hooks.
const COUNT: &str = r#"
set_count(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), hooks_at(3))
return 0
"#;

/// Replaces a node's whole count hash. KEYS node counts, totals; ARGV
/// hooks, then pairs (channel, count).
const COUNTS: &str = r#"
local h = hooks_at(1)
local old = {}
local flat = redis.call('HGETALL', KEYS[1])
for i = 1, #flat, 2 do old[flat[i]] = true end
for i = 6, #ARGV, 2 do
  set_count(KEYS[1], KEYS[2], ARGV[i], tonumber(ARGV[i + 1]), h)
  old[ARGV[i]] = nil
end
for channel in pairs(old) do set_count(KEYS[1], KEYS[2], channel, 0, h) end
return 0
"#;

/// Moves the held departures that are due into the outbox. KEYS held,
/// stream; ARGV stream length. Atomic, so however many nodes run it, each
/// departure is sent once.
const PROMOTE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 100)
for _, json in ipairs(due) do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'e', json)
  redis.call('ZREM', KEYS[1], json)
end
return #due
"#;

/// KEYS users, info, node, nodeset, version; ARGV user, user_info, max,
/// nodeset member, topic, origin, app, channel, joining socket, hooks. Returns
/// {1 if the user is new | 0 | -1 when full, roster, version of the roster}.
const JOIN: &str = r#"
local users, info, node, nodeset, version_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local user, user_info, max, member = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local topic, origin, app, channel, socket = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
if redis.call('HEXISTS', users, user) == 0 and redis.call('HLEN', users) >= max then
  return {-1, {}, 0}
end
redis.call('HINCRBY', node, user, 1)
redis.call('SADD', nodeset, member)
local added, version = 0, nil
if redis.call('HINCRBY', users, user, 1) == 1 then
  redis.call('HSET', info, user, user_info)
  added = 1
  version = announce(version_key, topic, origin, app, channel, socket,
    'pusher_internal:member_added', added_data(user, user_info))
  member_arrived(hooks_at(10), channel, user)
else
  version = tonumber(redis.call('GET', version_key) or '0')
end
return {added, redis.call('HGETALL', info), version}
"#;

/// KEYS users, info, node, version; ARGV user, topic, origin, app, channel,
/// hooks. Returns 1 when the user left the channel.
const LEAVE: &str = r#"
local users, info, node, version_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local user, topic, origin, app, channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local mine = tonumber(redis.call('HGET', node, user) or '0')
if mine <= 0 then return 0 end
if mine == 1 then redis.call('HDEL', node, user) else redis.call('HINCRBY', node, user, -1) end
if redis.call('HINCRBY', users, user, -1) <= 0 then
  redis.call('HDEL', users, user)
  redis.call('HDEL', info, user)
  announce(version_key, topic, origin, app, channel, '',
    'pusher_internal:member_removed', removed_data(user))
  member_departed(hooks_at(6), channel, user)
  return 1
end
return 0
"#;

/// Replaces one node's share of a channel. KEYS users, info, node, version;
/// ARGV topic, origin, app, channel, skip origin ('1': the origin's own
/// sockets already saw these changes), hooks, then triples (user, sockets,
/// user_info). Returns {added users, removed users}.
const REPLACE: &str = r#"
local users, info, node, version_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local topic, origin, app, channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local skip = ARGV[5] == '1'
local h = hooks_at(6)
local old = {}
local flat = redis.call('HGETALL', node)
for i = 1, #flat, 2 do old[flat[i]] = tonumber(flat[i + 1]) end
redis.call('DEL', node)
local added, removed = {}, {}
local function apply(user, delta, user_info)
  if delta == 0 then return end
  local before = tonumber(redis.call('HGET', users, user) or '0')
  local after = redis.call('HINCRBY', users, user, delta)
  if after <= 0 then
    redis.call('HDEL', users, user)
    redis.call('HDEL', info, user)
    if before > 0 then
      table.insert(removed, user)
      announce(version_key, topic, origin, app, channel, '',
        'pusher_internal:member_removed', removed_data(user), skip)
      member_departed(h, channel, user)
    end
  elseif before <= 0 then
    redis.call('HSET', info, user, user_info)
    table.insert(added, user)
    announce(version_key, topic, origin, app, channel, '',
      'pusher_internal:member_added', added_data(user, user_info), skip)
    member_arrived(h, channel, user)
  end
end
for i = 11, #ARGV, 3 do
  local user, n = ARGV[i], tonumber(ARGV[i + 1])
  redis.call('HSET', node, user, n)
  apply(user, n - (old[user] or 0), ARGV[i + 2])
  old[user] = nil
end
for user, n in pairs(old) do apply(user, -n, 'null') end
return {added, removed}
"#;

/// Reads a history stream after a cursor, first dropping entries older than
/// the age limit. Returns {'ok'|'old', last id, id, event, data, id, ...}.
/// A cursor below the highest trimmed id (Redis 7's max-deleted-entry-id)
/// or above the last id is 'old'. Ids are `{epoch}.{stream id}`: the epoch
/// (a companion key set when the stream starts) changes when a stream
/// expired and started again, so a cursor of its earlier life is 'old'.
const HISTORY: &str = r#"
local key, epoch_key = KEYS[1], KEYS[2]
local min_id, cursor, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('EXISTS', key) == 0 then
  if cursor ~= '' and cursor ~= '0' then return {'old', '0'} end
  return {'ok', '0'}
end
local epoch = redis.call('GET', epoch_key) or '0'
redis.call('XTRIM', key, 'MINID', min_id)
local info = redis.call('XINFO', 'STREAM', key)
local last, deleted = '0-0', '0-0'
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then last = info[i + 1] end
  if info[i] == 'max-deleted-entry-id' then deleted = info[i + 1] end
end
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  if not ms then return nil end
  return {tonumber(ms), tonumber(seq)}
end
local function less(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end
local start = '-'
if cursor == '0' then
  if deleted ~= '0-0' then return {'old', epoch .. '.' .. last} end
elseif cursor ~= '' then
  local cursor_epoch, id = string.match(cursor, '^(%x+)%.(%d+%-%d+)$')
  if cursor_epoch ~= epoch then return {'old', epoch .. '.' .. last} end
  local c = parse(id)
  if c == nil or less(parse(last), c) or less(c, parse(deleted)) then
    return {'old', epoch .. '.' .. last}
  end
  start = '(' .. id
end
local out = {'ok', epoch .. '.' .. last}
for _, entry in ipairs(redis.call('XRANGE', key, start, '+', 'COUNT', limit)) do
  local fields, event, data = entry[2], '', ''
  for i = 1, #fields, 2 do
    if fields[i] == 'event' then event = fields[i + 1] elseif fields[i] == 'data' then data = fields[i + 1] end
  end
  table.insert(out, epoch .. '.' .. entry[1])
  table.insert(out, event)
  table.insert(out, data)
end
return out
"#;

/// The outcome of a join.
pub enum Joined {
    /// The channel is full of other users.
    Full,
    /// Joined; `added` when this is the user's first socket anywhere.
    /// `members` are (user_id, user_info JSON) of everyone on the channel,
    /// as of membership version `version`.
    Ok {
        added: bool,
        members: Vec<(String, String)>,
        version: u64,
    },
}

/// Where a script announces the member events it decides, and as whom.
/// `topic` empty: decide silently (the online pseudo-channel, a rebuild
/// after a Redis restart).
pub struct Announce<'a> {
    /// The channel's relay topic (`Keys::topic`).
    pub topic: &'a str,
    pub origin: &'a str,
    pub app: &'a str,
    pub channel: &'a str,
    pub hooks: Arc<Hooks>,
}

/// Where the scripts put the webhooks they decide (see [`HOOKS`]).
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    /// The outbox stream; empty: the app has no webhooks.
    pub stream: String,
    pub held: String,
    pub debounce_ms: u64,
    pub max_len: usize,
    /// The occupancy and membership types some URL takes (`KindSet` bits).
    pub kinds: u8,
}

/// No webhooks (also for changes that were reported before, replayed into
/// a restarted Redis).
pub fn no_hooks() -> Arc<Hooks> {
    static NONE: std::sync::LazyLock<Arc<Hooks>> = std::sync::LazyLock::new(Arc::default);
    NONE.clone()
}

impl Hooks {
    fn args(&self, invocation: &mut redis::ScriptInvocation<'_>) {
        invocation
            .arg(&self.stream)
            .arg(&self.held)
            .arg(self.debounce_ms)
            .arg(self.max_len)
            .arg(self.kinds);
    }
}

/// The compiled scripts (hashed once, sent with EVALSHA).
pub struct Scripts {
    join: Script,
    leave: Script,
    replace: Script,
    history: Script,
    pub count: Script,
    counts: Script,
    promote: Script,
}

impl Scripts {
    /// The scripts for one Redis (`cluster` false) or a Redis Cluster,
    /// where member events go out with `SPUBLISH` (to the channel's topic,
    /// in the slot of the script's keys, see `keys`).
    pub fn new(cluster: bool) -> Self {
        let announce = ANNOUNCE.replace("$PUBLISH", publish_command(cluster));
        Scripts {
            join: Script::new(&format!("{HOOKS}{announce}{JOIN}")),
            leave: Script::new(&format!("{HOOKS}{announce}{LEAVE}")),
            replace: Script::new(&format!("{HOOKS}{announce}{REPLACE}")),
            history: Script::new(HISTORY),
            count: Script::new(&format!("{HOOKS}{COUNT}")),
            counts: Script::new(&format!("{HOOKS}{COUNTS}")),
            promote: Script::new(PROMOTE),
        }
    }
}

impl Scripts {
    #[allow(clippy::too_many_arguments)]
    pub async fn join(
        &self,
        redis: &mut Redis,
        keys: &PresenceKeys,
        node_set: &str,
        set_member: &str,
        user: &str,
        user_info: &str,
        max_members: usize,
        announce: &Announce<'_>,
        socket: &str,
    ) -> RedisResult<Joined> {
        let mut invocation = self.join.key(&keys.users);
        invocation
            .key(&keys.info)
            .key(&keys.node)
            .key(node_set)
            .key(&keys.version)
            .arg(user)
            .arg(user_info)
            .arg(max_members)
            .arg(set_member)
            .arg(announce.topic)
            .arg(announce.origin)
            .arg(announce.app)
            .arg(announce.channel)
            .arg(socket);
        announce.hooks.args(&mut invocation);
        let (status, flat, version): (i64, Vec<String>, u64) =
            invocation.invoke_async(redis).await?;
        if status < 0 {
            return Ok(Joined::Full);
        }
        let members = flat
            .chunks_exact(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect();
        Ok(Joined::Ok {
            added: status == 1,
            members,
            version,
        })
    }

    /// Removes one socket of `user`; true when the user left the channel.
    pub async fn leave(
        &self,
        redis: &mut Redis,
        keys: &PresenceKeys,
        user: &str,
        announce: &Announce<'_>,
    ) -> RedisResult<bool> {
        let mut invocation = self.leave.key(&keys.users);
        invocation
            .key(&keys.info)
            .key(&keys.node)
            .key(&keys.version)
            .arg(user)
            .arg(announce.topic)
            .arg(announce.origin)
            .arg(announce.app)
            .arg(announce.channel);
        announce.hooks.args(&mut invocation);
        let removed: i64 = invocation.invoke_async(redis).await?;
        Ok(removed == 1)
    }

    /// Sets a node's whole share of a channel; returns (added, removed) users.
    pub async fn replace(
        &self,
        redis: &mut Redis,
        keys: &PresenceKeys,
        members: &[(String, u32, String)],
        announce: &Announce<'_>,
        skip_origin: bool,
    ) -> RedisResult<(Vec<String>, Vec<String>)> {
        let mut invocation = self.replace.key(&keys.users);
        invocation
            .key(&keys.info)
            .key(&keys.node)
            .key(&keys.version)
            .arg(announce.topic)
            .arg(announce.origin)
            .arg(announce.app)
            .arg(announce.channel)
            .arg(if skip_origin { "1" } else { "0" });
        announce.hooks.args(&mut invocation);
        for (user, sockets, info) in members {
            invocation.arg(user).arg(*sockets).arg(info);
        }
        invocation.invoke_async(redis).await
    }

    /// Sets this node's subscriber count of one channel, in a pipeline
    /// (the caller loads the script first, see [`Scripts::count`]).
    pub fn set_count(
        &self,
        pipe: &mut redis::Pipeline,
        node_counts: &str,
        totals: &str,
        channel: &str,
        count: usize,
        hooks: &Hooks,
    ) {
        let mut invocation = self.count.key(node_counts);
        invocation.key(totals).arg(channel).arg(count);
        hooks.args(&mut invocation);
        pipe.invoke_script(&invocation).ignore();
    }

    /// Replaces this node's (or a dead node's) whole count hash.
    pub async fn replace_counts(
        &self,
        redis: &mut Redis,
        node_counts: &str,
        totals: &str,
        counts: &[(String, usize)],
        hooks: &Hooks,
    ) -> RedisResult<()> {
        let mut invocation = self.counts.key(node_counts);
        invocation.key(totals);
        hooks.args(&mut invocation);
        for (channel, count) in counts {
            invocation.arg(channel).arg(*count);
        }
        invocation.invoke_async(redis).await
    }

    /// Moves due departures into the outbox; returns how many.
    pub async fn promote(&self, redis: &mut Redis, hooks: &Hooks) -> RedisResult<usize> {
        self.promote
            .key(&hooks.held)
            .key(&hooks.stream)
            .arg(hooks.max_len)
            .invoke_async(redis)
            .await
    }

    /// Reads a history stream; `min_id` drops older entries first.
    pub async fn history(
        &self,
        redis: &mut Redis,
        key: &str,
        channel: &str,
        min_id: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> RedisResult<Read> {
        let flat: Vec<String> = self
            .history
            .key(key)
            .key(Keys::history_epoch(key))
            .arg(min_id)
            .arg(cursor.unwrap_or(""))
            .arg(limit)
            .invoke_async(redis)
            .await?;
        let last_id = flat.get(1).cloned().unwrap_or_else(|| "0".into());
        if flat.first().map(String::as_str) == Some("old") {
            return Ok(Read::TooOld { last_id });
        }
        let events = flat
            .get(2..)
            .unwrap_or_default()
            .chunks_exact(3)
            .map(|e| StoredEvent {
                id: e[0].clone(),
                channel: channel.to_owned(),
                event: e[1].clone(),
                data: e[2].clone(),
            })
            .collect();
        Ok(Read::Events { events, last_id })
    }
}
