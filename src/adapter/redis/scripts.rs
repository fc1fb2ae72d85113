//! Lua scripts that decide presence transitions atomically in Redis, so two
//! nodes never both announce, or both miss, a member joining or leaving, and
//! that publish each decision, numbered, in the order they made them.
//!
//! Per channel: `users` (user -> sockets on all nodes), `info` (user ->
//! user_info of the first socket) and one `node` hash per node (user ->
//! sockets on that node), which is what lets survivors subtract a dead
//! node's share and a node rewrite its own after an outage.

use redis::aio::ConnectionManager;
use redis::{RedisResult, Script};

use super::keys::{Keys, PresenceKeys};
use crate::hub::history::{Read, StoredEvent};

/// Shared by the scripts below: each membership change takes the next
/// version and, unless `relay` is '', is published from inside the script,
/// so the relay carries member events in exactly the order Redis decided
/// them, to every node (the deciding one included).
const ANNOUNCE: &str = r#"
local function announce(version_key, relay, origin, app, channel, except, event, data, skip_origin)
  local version = redis.call('INCR', version_key)
  if relay ~= '' then
    local frame = cjson.encode({event = event, channel = channel, data = data})
    redis.call('PUBLISH', relay, cjson.encode({
      origin = origin, app = app, kind = 'member', channel = channel,
      frame = frame, except = except, version = version,
      skip_origin = skip_origin == true}))
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

/// KEYS users, info, node, nodeset, version; ARGV user, user_info, max,
/// nodeset member, relay, origin, app, channel, joining socket. Returns
/// {1 if the user is new | 0 | -1 when full, roster, version of the roster}.
const JOIN: &str = r#"
local users, info, node, nodeset, version_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local user, user_info, max, member = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local relay, origin, app, channel, socket = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
if redis.call('HEXISTS', users, user) == 0 and redis.call('HLEN', users) >= max then
  return {-1, {}, 0}
end
redis.call('HINCRBY', node, user, 1)
redis.call('SADD', nodeset, member)
local added, version = 0, nil
if redis.call('HINCRBY', users, user, 1) == 1 then
  redis.call('HSET', info, user, user_info)
  added = 1
  version = announce(version_key, relay, origin, app, channel, socket,
    'pusher_internal:member_added', added_data(user, user_info))
else
  version = tonumber(redis.call('GET', version_key) or '0')
end
return {added, redis.call('HGETALL', info), version}
"#;

/// KEYS users, info, node, version; ARGV user, relay, origin, app, channel.
/// Returns 1 when the user left the channel.
const LEAVE: &str = r#"
local users, info, node, version_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local user, relay, origin, app, channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local mine = tonumber(redis.call('HGET', node, user) or '0')
if mine <= 0 then return 0 end
if mine == 1 then redis.call('HDEL', node, user) else redis.call('HINCRBY', node, user, -1) end
if redis.call('HINCRBY', users, user, -1) <= 0 then
  redis.call('HDEL', users, user)
  redis.call('HDEL', info, user)
  announce(version_key, relay, origin, app, channel, '',
    'pusher_internal:member_removed', removed_data(user))
  return 1
end
return 0
"#;

/// Replaces one node's share of a channel. KEYS users, info, node, version;
/// ARGV relay, origin, app, channel, skip origin ('1': the origin's own
/// sockets already saw these changes), then triples (user, sockets,
/// user_info). Returns {added users, removed users}.
const REPLACE: &str = r#"
local users, info, node, version_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local relay, origin, app, channel = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local skip = ARGV[5] == '1'
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
      announce(version_key, relay, origin, app, channel, '',
        'pusher_internal:member_removed', removed_data(user), skip)
    end
  elseif before <= 0 then
    redis.call('HSET', info, user, user_info)
    table.insert(added, user)
    announce(version_key, relay, origin, app, channel, '',
      'pusher_internal:member_added', added_data(user, user_info), skip)
  end
end
for i = 6, #ARGV, 3 do
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
/// `relay` empty: decide silently (the online pseudo-channel, a rebuild
/// after a Redis restart).
pub struct Announce<'a> {
    pub relay: &'a str,
    pub origin: &'a str,
    pub app: &'a str,
    pub channel: &'a str,
}

/// The compiled scripts (hashed once, sent with EVALSHA).
pub struct Scripts {
    join: Script,
    leave: Script,
    replace: Script,
    history: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            join: Script::new(&format!("{ANNOUNCE}{JOIN}")),
            leave: Script::new(&format!("{ANNOUNCE}{LEAVE}")),
            replace: Script::new(&format!("{ANNOUNCE}{REPLACE}")),
            history: Script::new(HISTORY),
        }
    }
}

impl Scripts {
    #[allow(clippy::too_many_arguments)]
    pub async fn join(
        &self,
        redis: &mut ConnectionManager,
        keys: &PresenceKeys,
        node_set: &str,
        set_member: &str,
        user: &str,
        user_info: &str,
        max_members: usize,
        announce: &Announce<'_>,
        socket: &str,
    ) -> RedisResult<Joined> {
        let (status, flat, version): (i64, Vec<String>, u64) = self
            .join
            .key(&keys.users)
            .key(&keys.info)
            .key(&keys.node)
            .key(node_set)
            .key(&keys.version)
            .arg(user)
            .arg(user_info)
            .arg(max_members)
            .arg(set_member)
            .arg(announce.relay)
            .arg(announce.origin)
            .arg(announce.app)
            .arg(announce.channel)
            .arg(socket)
            .invoke_async(redis)
            .await?;
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
        redis: &mut ConnectionManager,
        keys: &PresenceKeys,
        user: &str,
        announce: &Announce<'_>,
    ) -> RedisResult<bool> {
        let removed: i64 = self
            .leave
            .key(&keys.users)
            .key(&keys.info)
            .key(&keys.node)
            .key(&keys.version)
            .arg(user)
            .arg(announce.relay)
            .arg(announce.origin)
            .arg(announce.app)
            .arg(announce.channel)
            .invoke_async(redis)
            .await?;
        Ok(removed == 1)
    }

    /// Sets a node's whole share of a channel; returns (added, removed) users.
    pub async fn replace(
        &self,
        redis: &mut ConnectionManager,
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
            .arg(announce.relay)
            .arg(announce.origin)
            .arg(announce.app)
            .arg(announce.channel)
            .arg(if skip_origin { "1" } else { "0" });
        for (user, sockets, info) in members {
            invocation.arg(user).arg(*sockets).arg(info);
        }
        invocation.invoke_async(redis).await
    }

    /// Reads a history stream; `min_id` drops older entries first.
    pub async fn history(
        &self,
        redis: &mut ConnectionManager,
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
